"""Storing one received instance: the bytes as they arrived, durably, then its index rows.

`store_instance` writes the file to a temporary name, fsyncs it, links it into place and fsyncs the
directory, then adds (and flushes) the index rows. The caller commits and only then answers success;
if the commit fails it calls `Stored.discard()` so no file is left without its index row.

Policy for a SOP Instance UID already stored: the first copy is kept, the sender gets success, and
the repeat is written to the audit trail with both checksums (so a re-sent corrected image is known).
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import shutil
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom.dataelem import RawDataElement
from pydicom.errors import InvalidDicomError
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from core import audit
from core.audit import Actor
from core.db import utcnow
from his.models.patients import Patient
from his.text import fold
from pacs.models import Instance, Series, Study, WorklistItem

# DIMSE statuses of C-STORE (PS3.4 Table B.2-1).
SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700
DATASET_MISMATCH = 0xA900
CANNOT_UNDERSTAND = 0xC000
UNDEFINED_LENGTH = 0xFFFFFFFF


class StoreError(Exception):
    """An instance that is not stored; `status` is the DIMSE status, `comment` the ErrorComment."""

    def __init__(self, status: int, comment: str):
        super().__init__(comment)
        self.status, self.comment = status, comment[:64]


@dataclass
class Stored:
    instance: Instance
    duplicate: bool
    file: Path | None  # the file this store created (None for a duplicate)

    def discard(self) -> None:
        """The index transaction failed: remove the file it would have described."""
        if self.file is not None:
            self.file.unlink(missing_ok=True)


def _hash(uid: str) -> str:
    return hashlib.sha256(uid.encode("ascii")).hexdigest()[:16]


def _text(ds, keyword: str, limit: int) -> str:
    value = ds.get(keyword)
    if value is None:
        return ""
    if isinstance(value, pydicom.multival.MultiValue):
        value = "\\".join(str(v) for v in value)
    return str(value).strip()[:limit]


def _int(ds, keyword: str) -> int | None:
    try:
        value = ds.get(keyword)
        return None if value in (None, "") else int(value)
    except (TypeError, ValueError):
        return None


def parse(raw: bytes) -> pydicom.Dataset:
    """The data set of a Part 10 byte string, refusing what cannot be read or is cut short."""
    try:
        ds = pydicom.dcmread(io.BytesIO(raw))
        for elem in ds._dict.values():  # pydicom reads a short last value without complaint
            if (isinstance(elem, RawDataElement) and elem.length != UNDEFINED_LENGTH and elem.value is not None
                    and len(elem.value) != elem.length):
                raise StoreError(CANNOT_UNDERSTAND, f"data set truncated in element {elem.tag}")
        ds.get("SOPInstanceUID")  # decode the header elements now, inside this try
        ds.get("PatientName")
    except StoreError:
        raise
    except (InvalidDicomError, EOFError, ValueError, KeyError, TypeError, OverflowError, NotImplementedError) as exc:
        raise StoreError(CANNOT_UNDERSTAND, f"cannot parse data set: {type(exc).__name__}") from None
    return ds


def check(ds: pydicom.Dataset, sop_class_uid: str | None, sop_instance_uid: str | None) -> None:
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID"):
        if not _text(ds, keyword, 64):
            raise StoreError(DATASET_MISMATCH, f"missing {keyword}")
    if sop_class_uid and _text(ds, "SOPClassUID", 64) != sop_class_uid:
        raise StoreError(DATASET_MISMATCH, "SOP Class UID differs from the request's")
    if sop_instance_uid and _text(ds, "SOPInstanceUID", 64) != sop_instance_uid:
        raise StoreError(DATASET_MISMATCH, "SOP Instance UID differs from the request's")


def check_space(root: Path, min_free_bytes: int) -> None:
    root.mkdir(parents=True, exist_ok=True)
    if shutil.disk_usage(root).free < min_free_bytes:
        raise StoreError(OUT_OF_RESOURCES, "storage full")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _os_error(exc: OSError) -> StoreError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return StoreError(OUT_OF_RESOURCES, "storage full")
    return StoreError(OUT_OF_RESOURCES, f"cannot write file: {exc.strerror}")


def write_temp(folder: Path, raw: bytes) -> Path:
    """`raw` in a new temporary file of `folder`, fsynced."""
    tmp = folder / f".tmp-{uuid.uuid4().hex}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
        try:
            view = memoryview(raw)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise _os_error(exc) from None
    return tmp


def place(tmp: Path, target: Path, digest: str) -> tuple[Path, bool]:
    """Link the fsynced `tmp` into place and fsync the folder: (its path, whether this call created it).

    No file is ever replaced: a file already at `target` (left by a store that died before its commit,
    or being stored by another association right now) is kept; if its bytes differ, ours get a name of
    their own, so removing ours after a failed commit can never remove another store's file.
    """
    try:
        for candidate in (target, target.with_name(f"{target.stem}-{digest[:12]}{target.suffix}")):
            try:
                os.link(tmp, candidate)
            except FileExistsError:
                if hashlib.sha256(candidate.read_bytes()).hexdigest() == digest:
                    return candidate, False
                continue
            _fsync_dir(target.parent)
            return candidate, True
        raise StoreError(OUT_OF_RESOURCES, "cannot place file")
    except OSError as exc:
        raise _os_error(exc) from None
    finally:
        tmp.unlink(missing_ok=True)


def _new_study(session: Session, ds, uid: str, modality: str) -> Study:
    name = _text(ds, "PatientName", 200)
    accession = _text(ds, "AccessionNumber", 16)
    patient_dicom_id = _text(ds, "PatientID", 64)
    item = session.scalar(select(WorklistItem).where(WorklistItem.accession_number == accession)) if accession else None
    patient_id = item.patient_id if item else None
    if patient_id is None and patient_dicom_id:
        patient_id = session.scalar(select(Patient.id).where(Patient.code == patient_dicom_id))
    study = Study(study_uid=uid, patient_dicom_id=patient_dicom_id, patient_name=name,
                  patient_name_folded=fold_pn(name), patient_birth_date=_text(ds, "PatientBirthDate", 8),
                  patient_sex=_text(ds, "PatientSex", 16), study_date=_text(ds, "StudyDate", 8),
                  study_time=_text(ds, "StudyTime", 16), accession_number=accession,
                  study_id=_text(ds, "StudyID", 16), study_description=_text(ds, "StudyDescription", 200),
                  referring_physician=_text(ds, "ReferringPhysicianName", 200),
                  modalities=f",{modality}," if modality else ",",
                  patient_id=patient_id, order_id=item.order_id if item else None)
    session.add(study)
    session.flush()
    return study


def fold_pn(name: str) -> str:
    """A person name folded for matching: component groups and '^' kept, case and accents dropped."""
    return "^".join(fold(part) for part in name.split("^"))


def _new_series(session: Session, ds, uid: str, study_pk: int, modality: str, study_is_new: bool) -> Series:
    series = Series(study_pk=study_pk, series_uid=uid, modality=modality, series_number=_int(ds, "SeriesNumber"),
                    series_description=_text(ds, "SeriesDescription", 200), body_part=_text(ds, "BodyPartExamined", 64))
    session.add(series)
    session.flush()
    if modality and not study_is_new:
        session.execute(update(Study).where(Study.id == study_pk, ~Study.modalities.contains(f",{modality},"))
                        .values(modalities=Study.modalities + f"{modality},"))
    return series


def _lookup(session: Session, sop_uid: str, study_uid: str, series_uid: str):
    """The ids already indexed for this instance, its study (and the study's patient) and series: one query."""
    def first(column, where):
        return select(column).where(where).scalar_subquery()

    return session.execute(select(
        first(Instance.id, Instance.sop_instance_uid == sop_uid), first(Study.id, Study.study_uid == study_uid),
        first(Study.patient_id, Study.study_uid == study_uid), first(Series.id, Series.series_uid == series_uid))).one()


class _Writer(threading.Thread):
    """Writes and fsyncs the temporary file while the index is looked up and the rows are prepared
    (the write and fsync release the GIL)."""

    def __init__(self, folder: Path, raw: bytes):
        super().__init__(name="vnhis-pacs-write", daemon=True)
        self.folder, self.raw, self.tmp, self.error = folder, raw, None, None
        self.start()

    def run(self) -> None:
        try:
            self.tmp = write_temp(self.folder, self.raw)
        except StoreError as exc:
            self.error = exc

    def result(self) -> Path:
        self.join()
        if self.error is not None:
            raise self.error
        return self.tmp

    def discard(self) -> None:
        self.join()
        if self.tmp is not None:
            self.tmp.unlink(missing_ok=True)


def store_instance(session: Session, actor: Actor, root: Path, raw: bytes, *, calling_ae: str = "",
                   sop_class_uid: str | None = None, sop_instance_uid: str | None = None,
                   min_free_bytes: int = 0) -> Stored:
    """Store the Part 10 bytes `raw` (file meta + data set) under `root` and index them (flushed)."""
    ds = parse(raw)
    check(ds, sop_class_uid, sop_instance_uid)
    sop_uid = _text(ds, "SOPInstanceUID", 64)
    digest = hashlib.sha256(raw).hexdigest()
    study_uid, series_uid = _text(ds, "StudyInstanceUID", 64), _text(ds, "SeriesInstanceUID", 64)
    check_space(root, min_free_bytes)
    now = utcnow()
    relative = Path(f"{now:%Y/%m/%d}", _hash(study_uid), _hash(series_uid), f"{_hash(sop_uid)}.dcm")
    writer = _Writer((root / relative).parent, raw)
    final, created = None, False
    try:
        instance_pk, study_pk, patient_id, series_pk = _lookup(session, sop_uid, study_uid, series_uid)
        if instance_pk is not None:
            writer.discard()
            existing = session.get(Instance, instance_pk)
            audit.record(session, actor, "pacs.instance.duplicate", existing,
                         {"sop_instance_uid": sop_uid, "stored_sha256": existing.sha256, "received_sha256": digest,
                          "calling_ae": calling_ae})
            return Stored(existing, True, None)
        modality = _text(ds, "Modality", 16)
        study_is_new = study_pk is None
        if study_is_new:
            study = _new_study(session, ds, study_uid, modality)
            study_pk, patient_id = study.id, study.patient_id
        if series_pk is None:
            series_pk = _new_series(session, ds, series_uid, study_pk, modality, study_is_new).id
        instance = Instance(series_pk=series_pk, study_pk=study_pk, sop_instance_uid=sop_uid,
                            sop_class_uid=_text(ds, "SOPClassUID", 64), instance_number=_int(ds, "InstanceNumber"),
                            transfer_syntax=str(ds.file_meta.TransferSyntaxUID), rows=_int(ds, "Rows"),
                            columns=_int(ds, "Columns"), frames=_int(ds, "NumberOfFrames"), path=str(relative),
                            size=len(raw), sha256=digest, calling_ae=calling_ae[:16], received_at=now)
        # The file is durable in its place before anyone may commit its row.
        final, created = place(writer.result(), root / relative, digest)
        instance.path = str(final.relative_to(root))
        session.add(instance)
        session.flush()
    except BaseException:
        writer.discard()
        if created:
            final.unlink(missing_ok=True)
        raise
    audit.record(session, actor, "pacs.instance.store", instance,
                 {"sop_instance_uid": sop_uid, "study_uid": study_uid, "patient_id": patient_id,
                  "calling_ae": calling_ae, "size": len(raw)})
    return Stored(instance, False, final if created else None)
