"""The DICOM node: pynetdicom handlers that parse, call the pacs operations, commit, then answer.

Each association runs in its own thread with its own database session per message. C-STORE answers
0x0000 only after the file is fsynced and its index row committed (by the process's `store.Indexer`,
which commits the instances of all associations in batches); every failure is a DIMSE status with an
ErrorComment, and the node goes on serving other associations.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, build_context, evt
from pynetdicom.sop_class import (
    ModalityPerformedProcedureStep,
    ModalityWorklistInformationFind,
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelGet,
    PatientRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)
from pynetdicom.transport import ThreadedAssociationServer
from sqlalchemy import select

from core import audit
from core.audit import Actor
from pacs import part10, query, store, worklist
from pacs.charset import assume_utf8
from pacs.models import Instance, RemoteAE
from pacs.transport import Handler, Server, quiet_protocol_logging

log = logging.getLogger("vnhis.pacs")
PENDING, CANCEL, SUCCESS = 0xFF00, 0xFE00, 0x0000
UNABLE_TO_PROCESS = 0xC000
IDENTIFIER_MISMATCH = 0xA900
MAX_ASSOCIATIONS = 32
NOBODY = "VNHIS-NOBODY"  # an allow-list entry no caller has: AE checking on with no remote AE known
QR_FIND = (PatientRootQueryRetrieveInformationModelFind, StudyRootQueryRetrieveInformationModelFind)
QR_MOVE = (PatientRootQueryRetrieveInformationModelMove, StudyRootQueryRetrieveInformationModelMove)
QR_GET = (PatientRootQueryRetrieveInformationModelGet, StudyRootQueryRetrieveInformationModelGet)
UNCOMPRESSED = (ExplicitVRLittleEndian, ImplicitVRLittleEndian)


def _status(code: int, comment: str | None = None) -> Dataset:
    ds = Dataset()
    ds.Status = code
    if comment:
        ds.ErrorComment = comment[:64]
    return ds


def _keys(identifier: Dataset) -> dict[str, str]:
    keys = {}
    for elem in identifier:
        if not elem.keyword or elem.keyword in ("QueryRetrieveLevel", "SpecificCharacterSet"):
            continue
        value = elem.value
        if elem.VR == "SQ":
            keys[elem.keyword] = ""
        elif isinstance(value, MultiValue):
            keys[elem.keyword] = "\\".join(str(v) for v in value)
        else:
            keys[elem.keyword] = "" if value is None else str(value)
    return keys


def answer_dataset(level: str, identifier: Dataset, answer: dict, retrieve_ae: str) -> Dataset:
    """A C-FIND response: every key asked for, with its value or empty, in UTF-8."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.QueryRetrieveLevel = level
    for elem in identifier:
        if elem.keyword in ("QueryRetrieveLevel", "SpecificCharacterSet") or not elem.keyword:
            continue
        value = answer.get(elem.keyword)
        ds.add_new(elem.tag, elem.VR, None if value in (None, "") else
                   (str(value) if elem.VR in ("IS", "DS") else value))
    for keyword, value in answer.items():
        if keyword not in ds and value not in (None, ""):
            setattr(ds, keyword, value)
    ds.RetrieveAETitle = retrieve_ae
    return ds


@dataclass
class Node:
    """One DICOM application entity backed by the vnhis database and storage directory."""

    session_factory: object
    storage_root: Path
    ae_title: str = "VNHIS"
    tz: object = None
    check_calling_ae: bool = False
    min_free_bytes: int = 0
    indexer: store.Indexer | None = field(default=None, init=False, repr=False)  # made with the server

    # --- setting up ----------------------------------------------------------------------------

    def build_ae(self) -> AE:
        quiet_protocol_logging()
        ae = AE(ae_title=self.ae_title)
        ae.maximum_pdu_size = 0  # no limit: fewer PDUs for large images
        ae.maximum_associations = MAX_ASSOCIATIONS
        ae.network_timeout = ae.acse_timeout = ae.dimse_timeout = 60
        ae.add_supported_context(Verification, ALL_TRANSFER_SYNTAXES)
        for cx in AllStoragePresentationContexts:
            # scp_role for C-STORE in; also the SCU side of C-GET, which the caller asks for by role selection
            ae.add_supported_context(cx.abstract_syntax, ALL_TRANSFER_SYNTAXES, scp_role=True, scu_role=False)
        for uid in (*QR_FIND, *QR_MOVE, *QR_GET, ModalityWorklistInformationFind, ModalityPerformedProcedureStep):
            ae.add_supported_context(uid, ALL_TRANSFER_SYNTAXES)
        return ae

    def handlers(self) -> list:
        return [(evt.EVT_C_ECHO, lambda _event: SUCCESS), (evt.EVT_C_STORE, self.handle_store),
                (evt.EVT_C_FIND, self.handle_find), (evt.EVT_C_MOVE, self.handle_move),
                (evt.EVT_C_GET, self.handle_get), (evt.EVT_N_CREATE, self.handle_n_create),
                (evt.EVT_N_SET, self.handle_n_set), (evt.EVT_CONN_OPEN, self._refresh_callers)]

    def make_server(self, host: str, port: int, ae: AE | None = None) -> ThreadedAssociationServer:
        ae = ae or self.build_ae()
        self._ae = ae
        self._refresh_callers(None)
        if swept := store.sweep_incoming(self.storage_root):
            log.warning("removed %d temporary file(s) left in %s by an earlier crash", swept, store.INCOMING)
        self.indexer = store.Indexer(self.session_factory)
        server = ae.make_server((host, port), evt_handlers=self.handlers(), server_class=Server,
                                request_handler=Handler)
        server.dataset_file = self._dataset_file
        return server

    def _refresh_callers(self, _event) -> None:
        """With AE checking on, only the remote AEs in the table may associate (re-read per connection)."""
        if not self.check_calling_ae:
            return
        with self.session_factory() as session:
            titles = list(session.scalars(select(RemoteAE.ae_title)))
        self._ae.require_calling_aet = titles or [NOBODY]

    # --- helpers -------------------------------------------------------------------------------

    @staticmethod
    def _actor(event) -> Actor:
        requestor = event.assoc.requestor
        return Actor(id=None, name=f"dicom:{requestor.ae_title.strip()}", ip=requestor.address)

    def file(self, instance: Instance) -> Path:
        return self.storage_root / instance.path

    # --- C-STORE -------------------------------------------------------------------------------

    def _dataset_file(self, sop_class: str, sop_instance: str, transfer_syntax: str, calling: str
                      ) -> store.IncomingFile:
        """Where a large data set is written as it arrives (called in pynetdicom's thread: never raises)."""
        try:
            header = _header(sop_class, sop_instance, transfer_syntax, calling.strip())
        except store.StoreError as exc:
            return store.IncomingFile(None, b"", error=exc)
        return store.IncomingFile(self.storage_root / store.INCOMING, header)

    def handle_store(self, event) -> Dataset:
        calling = event.assoc.requestor.ae_title.strip()
        request = event.request
        try:
            received = getattr(request.DataSet, "file", None)  # a large data set, already in its file
            if received is None:
                received = _header(str(request.AffectedSOPClassUID or ""), str(request.AffectedSOPInstanceUID or ""),
                                   event.context.transfer_syntax, calling) + request.DataSet.getvalue()
            item = store.receive(self.storage_root, received, calling_ae=calling,
                                 sop_class_uid=request.AffectedSOPClassUID,
                                 sop_instance_uid=request.AffectedSOPInstanceUID, min_free_bytes=self.min_free_bytes)
        except store.StoreError as exc:
            log.warning("C-STORE from %s refused 0x%04X: %s", calling, exc.status, exc.comment)
            return _status(exc.status, exc.comment)
        except Exception:  # the node must keep serving; the sender learns it failed
            log.exception("C-STORE from %s failed", calling)
            return _status(UNABLE_TO_PROCESS, "unexpected error")
        # Committed with whatever the other associations of this process stored meanwhile.
        outcome = self.indexer.submit(self._actor(event), item)
        return _status(outcome.status, outcome.comment or None)

    # --- C-FIND --------------------------------------------------------------------------------

    def handle_find(self, event) -> Iterator:
        try:
            identifier = assume_utf8(event.identifier)
            sop_class = event.request.AffectedSOPClassUID
        except Exception:
            yield _status(UNABLE_TO_PROCESS, "cannot decode identifier"), None
            return
        if sop_class == ModalityWorklistInformationFind:
            yield from self._find_worklist(event, identifier)
            return
        level = str(identifier.get("QueryRetrieveLevel", "")).strip()
        if level == "PATIENT" and sop_class == StudyRootQueryRetrieveInformationModelFind:
            yield _status(IDENTIFIER_MISMATCH, "PATIENT level is not in Study Root"), None
            return
        with self.session_factory() as session:
            try:
                answers = list(query.find(session, level, _keys(identifier)))
            except query.QueryError as exc:
                yield _status(IDENTIFIER_MISMATCH, str(exc)), None
                return
            audit.record(session, self._actor(event), "pacs.query", None,
                         {"level": level, "count": len(answers), "keys": sorted(_keys(identifier))})
            session.commit()
        for answer in answers:
            if event.is_cancelled:
                yield CANCEL, None
                return
            yield PENDING, answer_dataset(level, identifier, answer, self.ae_title)

    def _find_worklist(self, event, identifier: Dataset) -> Iterator:
        with self.session_factory() as session:
            try:
                answers = worklist.find(session, self._actor(event), identifier, self.tz)
            except (ValueError, AttributeError, IndexError) as exc:
                yield _status(IDENTIFIER_MISMATCH, f"bad worklist query: {type(exc).__name__}"), None
                return
            session.commit()
        for answer in answers:
            if event.is_cancelled:
                yield CANCEL, None
                return
            yield PENDING, answer

    # --- C-MOVE and C-GET ----------------------------------------------------------------------

    def _retrieve_set(self, event, action: str) -> list[Instance] | Dataset:
        identifier = assume_utf8(event.identifier)
        level = str(identifier.get("QueryRetrieveLevel", "")).strip()
        with self.session_factory() as session:
            try:
                found = query.instances(session, level, _keys(identifier))
            except query.QueryError as exc:
                return _status(IDENTIFIER_MISMATCH, str(exc))
            audit.record(session, self._actor(event), action, None,
                         {"level": level, "instances": [i.sop_instance_uid for i in found][:1000],
                          "count": len(found), "study_pks": sorted({i.study_pk for i in found})})
            session.commit()
        return found

    def handle_move(self, event) -> Iterator:
        with self.session_factory() as session:
            dest = session.scalar(select(RemoteAE).where(RemoteAE.ae_title == event.move_destination.strip()))
        if dest is None:
            yield None, None  # pynetdicom answers 0xA801, move destination unknown
            return
        found = self._retrieve_set(event, "pacs.retrieve.move")
        if isinstance(found, Dataset):  # a bad identifier: one failed sub-operation, then its status
            yield dest.host, dest.port
            yield 1
            yield found.Status, None
            return
        accepted: set = set()  # what the destination took, learnt once pynetdicom's sub-association is up

        def _learn(sub_event) -> None:
            accepted.update(_pairs(sub_event.assoc.accepted_contexts))

        yield dest.host, dest.port, {"contexts": _contexts_for(found),
                                     "evt_handlers": [(evt.EVT_CONN_OPEN, _no_delay), (evt.EVT_ACCEPTED, _learn)]}
        yield len(found)
        for instance in found:
            if event.is_cancelled:
                yield CANCEL, None
                return
            yield PENDING, self._for_peer(instance, accepted)

    def handle_get(self, event) -> Iterator:
        found = self._retrieve_set(event, "pacs.retrieve.get")
        if isinstance(found, Dataset):
            yield 1
            yield found.Status, None
            return
        yield len(found)
        accepted = _pairs(event.assoc.accepted_contexts)
        for instance in found:
            if event.is_cancelled:
                yield CANCEL, None
                return
            yield PENDING, self._for_peer(instance, accepted)

    def _for_peer(self, instance: Instance, accepted: set) -> Dataset:
        """The stored instance, decompressed if the peer did not accept its stored transfer syntax."""
        ds = pydicom.dcmread(self.file(instance))
        ts = UID(instance.transfer_syntax)
        if (instance.sop_class_uid, ts) not in accepted and ts.is_compressed:
            try:
                ds.decompress(generate_instance_uid=False)  # the same image, only its encoding differs
            except (NotImplementedError, RuntimeError, ValueError):  # sent as stored: that sub-operation fails
                log.warning("cannot decompress %s from %s for the peer", instance.sop_instance_uid, ts.name)
        return ds

    # --- MPPS ----------------------------------------------------------------------------------

    def handle_n_create(self, event):
        if event.request.AffectedSOPClassUID != ModalityPerformedProcedureStep:
            return 0x0122, None  # SOP class not supported
        calling = event.assoc.requestor.ae_title.strip()
        with self.session_factory() as session:
            try:
                worklist.mpps_create(session, self._actor(event), event.request.AffectedSOPInstanceUID,
                                     event.attribute_list, calling)
                session.commit()
            except worklist.MppsError as exc:
                session.rollback()
                return _status(exc.status, exc.comment), None
            except Exception:
                session.rollback()
                log.exception("MPPS N-CREATE from %s failed", calling)
                return _status(0x0110, "processing failure"), None
        return SUCCESS, event.attribute_list

    def handle_n_set(self, event):
        with self.session_factory() as session:
            try:
                worklist.mpps_set(session, self._actor(event), event.request.RequestedSOPInstanceUID,
                                  event.modification_list)
                session.commit()
            except worklist.MppsError as exc:
                session.rollback()
                return _status(exc.status, exc.comment), None
            except Exception:
                session.rollback()
                log.exception("MPPS N-SET failed")
                return _status(0x0110, "processing failure"), None
        return SUCCESS, event.modification_list


def _header(sop_class: str, sop_instance: str, transfer_syntax: str, calling: str) -> bytes:
    try:
        return part10.header(sop_class, sop_instance, transfer_syntax, calling)
    except ValueError:
        raise store.StoreError(store.DATASET_MISMATCH, "invalid UID in the C-STORE request") from None


def _no_delay(event) -> None:
    """Nagle off on a sub-association's connection too: each small C-STORE would wait for a delayed ACK."""
    event.assoc.dul.socket.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _pairs(contexts) -> set[tuple[str, str]]:
    return {(cx.abstract_syntax, cx.transfer_syntax[0]) for cx in contexts}


def _contexts_for(instances: list[Instance]) -> list:
    """Presentation contexts for a C-MOVE sub-association: each class in its stored syntax, plus
    uncompressed as a separate context (at most 128 contexts in all)."""
    pairs = []
    for instance in instances:
        for pair in ((instance.sop_class_uid, instance.transfer_syntax),
                     (instance.sop_class_uid, None)):
            if pair not in pairs:
                pairs.append(pair)
    contexts = []
    for sop_class, ts in pairs[:128]:
        syntaxes = list(UNCOMPRESSED) if ts is None else [ts]
        if ts is not None and ts in UNCOMPRESSED:
            continue
        contexts.append(build_context(sop_class, syntaxes))
    return contexts
