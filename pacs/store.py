"""Storing received instances: the bytes as they arrived, durably, then their index rows.

`receive` checks the bytes while a writer thread writes them to a temporary file, fsyncs it and links it
into its folder. `index` adds the index rows and audit events of a batch of received instances with a
few statements whatever the batch's size (none to look up studies and series already known), and
flushes, while those files are still being written; the caller then `settle`s (waits until the files
are durable), commits, and only then answers success. `Indexer` is that caller
for the DICOM node: group commit of the instances all associations of one process received meanwhile,
one transaction (one WAL flush) per batch, each handler answered with its own instance's outcome.
`store_instance` does all of it for one instance inside the caller's transaction (STOW-RS, tests).

Policy for a SOP Instance UID already stored: the first copy is kept, the sender gets success, and
the repeat is written to the audit trail with both checksums (so a re-sent corrected image is known).
A file whose index transaction failed stays where it is (a re-send reuses it): removing it could remove
the file of an identical instance another association is committing at that moment.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import io
import logging
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
from pydicom.dataelem import RawDataElement
from pydicom.errors import InvalidDicomError
from sqlalchemy import BigInteger, cast, literal, null, select, union_all, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from core import audit
from core.audit import Actor
from core.db import insert_rows, utcnow
from his.models.patients import Patient
from his.text import fold
from pacs.models import Instance, Series, Study, WorklistItem

log = logging.getLogger("vnhis.pacs")
INCOMING = ".incoming"  # the temporary files being written, under the storage root
_WRITERS = ThreadPoolExecutor(8, thread_name_prefix="vnhis-pacs-write")

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


@dataclass(eq=False)
class Received:
    """One checked instance, not indexed, whose file a writer thread is making durable under `planned`.

    `settle` waits for that file: written, fsynced, linked into its folder and the folder fsynced; it sets
    `file` (which differs from `planned`, and the instance's path with it, if other bytes were already
    there) and `created` (this store made the file, else the same bytes were already there).
    """

    study: dict  # pacs_studies columns, used if the study is new
    series: dict  # pacs_series columns but study_pk, used if the series is new
    instance: dict  # pacs_instances columns but the pks; its path is `planned`'s until settled
    planned: Path
    root: Path
    writing: Future = field(repr=False)
    file: Path | None = None
    created: bool = False

    @property
    def sop_uid(self) -> str:
        return self.instance["sop_instance_uid"]

    def settle(self) -> bool:
        """Wait until the file is durable in its folder (StoreError if it cannot be); whether it is not at
        `planned`. Can be called again."""
        self.file, self.created = self.writing.result()
        self.instance["path"] = str(self.file.relative_to(self.root))
        return self.file != self.planned


@dataclass(frozen=True)
class Indexed:
    instance_pk: int
    duplicate: bool


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


PUSH_BYTES = 8 << 20  # an incoming file's pages are pushed to the disk every this many bytes
DEFER_BYTES = 64 * 1024  # values this long are not read when parsing a received file (pixel data)


def parse(source: bytes | Path) -> pydicom.Dataset:
    """The data set of a Part 10 byte string or file, refusing what cannot be read or is cut short (of a
    file, long values are left unread, their length checked against the file's)."""
    try:
        if isinstance(source, Path):
            size = source.stat().st_size
            ds = pydicom.dcmread(source, defer_size=DEFER_BYTES)
            if ds.file_meta.TransferSyntaxUID.is_deflated:  # positions are in the inflated data: read it all
                return parse(source.read_bytes())
        else:
            size = len(source)
            ds = pydicom.dcmread(io.BytesIO(source))
        for elem in ds._dict.values():  # pydicom reads a short last value without complaint
            if not isinstance(elem, RawDataElement) or elem.length == UNDEFINED_LENGTH:
                continue
            if (elem.value_tell + elem.length > size) if elem.value is None else len(elem.value) != elem.length:
                raise StoreError(CANNOT_UNDERSTAND, f"data set truncated in element {elem.tag}")
        ds.get("SOPInstanceUID")  # decode the header elements now, inside this try
        ds.get("PatientName")
    except StoreError:
        raise
    except (InvalidDicomError, EOFError, ValueError, KeyError, TypeError, OverflowError, NotImplementedError,
            OSError) as exc:
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


def _fsync(path: Path) -> None:
    """fsync a file or a folder by its name."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _new_temp(folder: Path) -> tuple[Path, int]:
    """A new temporary file of `folder` (created if missing), open for writing."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f".tmp-{uuid.uuid4().hex}"
    return path, os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)


def _write_all(fd: int, data) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _os_error(exc: OSError) -> StoreError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return StoreError(OUT_OF_RESOURCES, "storage full")
    return StoreError(OUT_OF_RESOURCES, f"cannot write file: {exc.strerror}")


STALE_SECONDS = 24 * 3600


def sweep_incoming(root: Path, older_than: float = STALE_SECONDS) -> int:
    """Remove the temporary files a crash left in `INCOMING` (none of them was ever indexed: a row is
    committed only after its file was linked into place); those younger than `older_than` seconds may be
    another node process's transfer under way, and stay. Returns how many were removed."""
    removed, limit = 0, time.time() - older_than
    with contextlib.suppress(FileNotFoundError):
        for path in (root / INCOMING).glob(".tmp-*"):
            with contextlib.suppress(FileNotFoundError):
                if path.stat().st_mtime < limit:
                    path.unlink()
                    removed += 1
    return removed


def write_temp(folder: Path, raw: bytes) -> Path:
    """`raw` in a new temporary file of `folder`, fsynced."""
    tmp = None
    try:
        tmp, fd = _new_temp(folder)
        try:
            _write_all(fd, raw)
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        raise _os_error(exc) from None
    return tmp


def _ensure_folder(folder: Path) -> None:
    """Create `folder` and its missing parents, each new name fsynced into its parent."""
    if folder.is_dir():
        return
    _ensure_folder(folder.parent)
    try:
        folder.mkdir()
    except FileExistsError:
        return
    _fsync(folder.parent)


def place(tmp: Path, target: Path, digest: str) -> tuple[Path, bool]:
    """Link the fsynced `tmp` into place and fsync the folder: (its path, whether this call created it).

    No file is ever replaced: a file already at `target` (left by a store that died before its commit,
    or being stored by another association right now) is kept; if its bytes differ, ours get a name of
    their own, so removing ours after a failed commit can never remove another store's file. The folder
    is fsynced in every case: a file found there may have been linked a moment ago, not durably yet.
    """
    try:
        _ensure_folder(target.parent)
        for candidate in (target, target.with_name(f"{target.stem}-{digest[:12]}{target.suffix}")):
            try:
                os.link(tmp, candidate)
                created = True
            except FileExistsError:
                if hashlib.sha256(candidate.read_bytes()).hexdigest() != digest:
                    continue
                created = False
            _fsync(target.parent)
            return candidate, created
        raise StoreError(OUT_OF_RESOURCES, "cannot place file")
    except OSError as exc:
        raise _os_error(exc) from None
    finally:
        tmp.unlink(missing_ok=True)


def fold_pn(name: str) -> str:
    """A person name folded for matching: component groups and '^' kept, case and accents dropped."""
    return "^".join(fold(part) for part in name.split("^"))


def _rows(ds: pydicom.Dataset, size: int, digest: str, calling_ae: str, now) -> tuple[dict, dict, dict]:
    """The study, series and instance columns of a received data set (the instance's path to be set)."""
    name, modality = _text(ds, "PatientName", 200), _text(ds, "Modality", 16)
    study = {"study_uid": _text(ds, "StudyInstanceUID", 64), "patient_dicom_id": _text(ds, "PatientID", 64),
             "patient_name": name, "patient_name_folded": fold_pn(name),
             "patient_birth_date": _text(ds, "PatientBirthDate", 8), "patient_sex": _text(ds, "PatientSex", 16),
             "study_date": _text(ds, "StudyDate", 8), "study_time": _text(ds, "StudyTime", 16),
             "accession_number": _text(ds, "AccessionNumber", 16), "study_id": _text(ds, "StudyID", 16),
             "study_description": _text(ds, "StudyDescription", 200),
             "referring_physician": _text(ds, "ReferringPhysicianName", 200), "created_at": now}
    series = {"series_uid": _text(ds, "SeriesInstanceUID", 64), "modality": modality,
              "series_number": _int(ds, "SeriesNumber"), "series_description": _text(ds, "SeriesDescription", 200),
              "body_part": _text(ds, "BodyPartExamined", 64), "created_at": now}
    instance = {"sop_instance_uid": _text(ds, "SOPInstanceUID", 64), "sop_class_uid": _text(ds, "SOPClassUID", 64),
                "instance_number": _int(ds, "InstanceNumber"), "transfer_syntax": str(ds.file_meta.TransferSyntaxUID),
                "rows": _int(ds, "Rows"), "columns": _int(ds, "Columns"), "frames": _int(ds, "NumberOfFrames"),
                "path": None, "size": size, "sha256": digest,
                "calling_ae": calling_ae[:16], "received_at": now}
    return study, series, instance


class IncomingFile:
    """A received data set being written, as it arrives, to a temporary file of the storage's `INCOMING`
    folder after its Part 10 `header` (see `pacs.transport.SpooledDataSet`), hashed as it is written. A
    write error is kept for the C-STORE handler (raised in pynetdicom's thread, it would abort the
    association); a file never handed to `receive` (the association broke) is removed with its object."""

    def __init__(self, folder: Path | None, header: bytes, *, error: StoreError | None = None):
        """folder None with an `error`: a sink that keeps nothing and reports that error."""
        self.path: Path | None = None
        self._fd = -1
        self.size = 0
        self.error = error
        self._sha = hashlib.sha256()
        if error is None:
            try:
                self.path, self._fd = _new_temp(folder)
            except OSError as exc:
                self.error = _os_error(exc)
        self.write(header)

    def write(self, data) -> int:
        if self.error is None:
            self._sha.update(data)
            try:
                _write_all(self._fd, data)
                if self.size // PUSH_BYTES != (self.size + len(data)) // PUSH_BYTES:
                    # Have the kernel start writing what is there now, so the fsync after the last fragment
                    # waits for the tail only (DONTNEED starts writeback of the dirty pages, then drops the
                    # clean ones: the parse reads the head of the file, the rest is read back only to send).
                    os.posix_fadvise(self._fd, 0, 0, os.POSIX_FADV_DONTNEED)
            except OSError as exc:
                self.error = _os_error(exc)
            self.size += len(data)
        return len(data)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def hexdigest(self) -> str:
        return self._sha.hexdigest()

    def __del__(self) -> None:
        if self._fd >= 0:  # never received: an association that broke off mid-transfer
            self.close()
            with contextlib.suppress(OSError):
                os.unlink(self.path)


def _durable(path: Path) -> Path:
    try:
        _fsync(path)
    except OSError as exc:
        raise _os_error(exc) from None
    return path


def _then_place(make_temp: Callable[[], Path], target: Future) -> tuple[Path, bool]:
    """A writer thread's part of receiving: the temporary file made durable, then linked where the parsed
    data set says (`target`: (path, sha256), or the parse's exception: the file is removed)."""
    tmp = make_temp()
    try:
        planned, digest = target.result()
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return place(tmp, planned, digest)


def receive(root: Path, raw: bytes | IncomingFile, *, calling_ae: str = "", sop_class_uid: str | None = None,
            sop_instance_uid: str | None = None, min_free_bytes: int = 0) -> Received:
    """Check a received Part 10 instance -- bytes (file meta + data set) or a file written as it arrived --
    and have it put, fsynced, in its place under `root` (see `Received.settle`).

    A writer thread writes the bytes (or takes the file) and fsyncs them into `INCOMING` under `root` while
    they are parsed here, then links them into their folder (same file system) once the parse named it,
    while the caller goes on (the node sends the index rows meanwhile).
    """
    if isinstance(raw, IncomingFile):
        raw.close()
        try:
            if raw.error is not None:
                raise raw.error
            check_space(root, min_free_bytes)
        except StoreError:
            if raw.path is not None:
                raw.path.unlink(missing_ok=True)
            raise
        source, size, digest = raw.path, raw.size, raw.hexdigest()
        make_temp = functools.partial(_durable, source)
    else:
        check_space(root, min_free_bytes)
        source, size, digest = raw, len(raw), None  # hashed here while the writer writes
        make_temp = functools.partial(write_temp, root / INCOMING, raw)
    target: Future = Future()
    writing = _WRITERS.submit(_then_place, make_temp, target)
    now = utcnow()
    try:
        ds = parse(source)
        check(ds, sop_class_uid, sop_instance_uid)
        study, series, instance = _rows(ds, size, digest or hashlib.sha256(source).hexdigest(), calling_ae, now)
    except BaseException as exc:
        target.set_exception(exc)
        with contextlib.suppress(BaseException):
            writing.result()  # the temporary file is gone before the failure is answered
        raise
    planned = (root / f"{now:%Y/%m/%d}" / _hash(study["study_uid"]) / _hash(series["series_uid"])
               / f"{_hash(instance['sop_instance_uid'])}.dcm")
    target.set_result((planned, instance["sha256"]))
    instance["path"] = str(planned.relative_to(root))
    return Received(study, series, instance, planned, root, writing)


def _insert_new(session: Session, model, rows: list[dict], unique: str) -> dict[str, int]:
    """Insert `rows`, skipping those whose `unique` value is already indexed (or being indexed by another
    transaction, which is waited for): {unique value: id} of the rows inserted. One statement."""
    return {key: pk for pk, key in insert_rows(session, model.__table__, rows, skip_conflicts_on=unique,
                                               returning=("id", unique))}


@dataclass
class Known:
    """Studies and series known to be indexed (rows are never deleted nor their ids and patient changed):
    {study_uid: (pk, patient_id)} and {series_uid: pk}."""

    studies: dict[str, tuple[int, int | None]] = field(default_factory=dict)
    series: dict[str, int] = field(default_factory=dict)
    limit: int = 2000

    def learn(self, other: Known) -> None:
        if len(self.studies) + len(other.studies) > self.limit or len(self.series) + len(other.series) > self.limit:
            self.studies.clear()
            self.series.clear()
        self.studies.update(other.studies)
        self.series.update(other.series)


def _lookup(session: Session, studies: set, series: set) -> Known:
    """The studies and series among these UIDs that are indexed, in one query."""
    found = Known()
    if not studies and not series:
        return found
    parts = [select(literal("s").label("kind"), Study.study_uid.label("uid"), Study.id.label("pk"),
                    cast(Study.patient_id, BigInteger).label("patient_id")).where(Study.study_uid.in_(studies)),
             select(literal("r"), Series.series_uid, Series.id, cast(null(), BigInteger))
             .where(Series.series_uid.in_(series))]
    for kind, uid, pk, patient_id in session.execute(union_all(*parts)):
        if kind == "s":
            found.studies[uid] = (pk, patient_id)
        else:
            found.series[uid] = pk
    return found


def _patient_links(session: Session, studies: list[dict]) -> dict[str, tuple[int | None, int | None]]:
    """{study_uid: (patient_id, order_id)} of new studies: the imaging order by accession number, else the
    his patient whose code is the PatientID."""
    accessions = {s["accession_number"] for s in studies if s["accession_number"]}
    codes = {s["patient_dicom_id"] for s in studies if s["patient_dicom_id"]}
    orders = {a: (p, o) for a, p, o in session.execute(
        select(WorklistItem.accession_number, WorklistItem.patient_id, WorklistItem.order_id)
        .where(WorklistItem.accession_number.in_(accessions)))} if accessions else {}
    patients = dict(session.execute(select(Patient.code, Patient.id).where(Patient.code.in_(codes))).all()
                    ) if codes else {}
    return {s["study_uid"]: orders.get(s["accession_number"]) or (patients.get(s["patient_dicom_id"]), None)
            for s in studies}


def _studies(session: Session, new: list[Received], known: Known) -> set[int]:
    """Index the studies of `new` not in `known` (adding them to it); the pks of the studies created."""
    rows: dict[str, dict] = {}
    for item in new:
        if item.study["study_uid"] not in known.studies:
            row = rows.setdefault(item.study["study_uid"], {**item.study, "modalities": ","})
            if item.series["modality"] and f",{item.series['modality']}," not in row["modalities"]:
                row["modalities"] += f"{item.series['modality']},"
    if not rows:
        return set()
    for uid, link in _patient_links(session, list(rows.values())).items():
        rows[uid]["patient_id"], rows[uid]["order_id"] = link
    created = _insert_new(session, Study, list(rows.values()), "study_uid")
    known.studies.update((uid, (pk, rows[uid]["patient_id"])) for uid, pk in created.items())
    if missing := set(rows) - set(created):  # created meanwhile by another transaction
        known.studies.update((uid, (pk, patient)) for uid, pk, patient in session.execute(
            select(Study.study_uid, Study.id, Study.patient_id).where(Study.study_uid.in_(missing))))
    return set(created.values())


def _series(session: Session, new: list[Received], known: Known, new_studies: set[int]) -> None:
    """Index the series of `new` not in `known` (adding them to it); a new series in a study indexed
    before adds its modality to the study's."""
    rows: dict[str, dict] = {}
    for item in new:
        if item.series["series_uid"] not in known.series:
            rows.setdefault(item.series["series_uid"],
                            {**item.series, "study_pk": known.studies[item.study["study_uid"]][0]})
    created = _insert_new(session, Series, list(rows.values()), "series_uid")
    known.series.update(created)
    if missing := set(rows) - set(created):
        known.series.update(session.execute(select(Series.series_uid, Series.id)
                                            .where(Series.series_uid.in_(missing))).all())
    for uid in created:
        row = rows[uid]
        if row["modality"] and row["study_pk"] not in new_studies:
            session.execute(update(Study).where(Study.id == row["study_pk"],
                                                ~Study.modalities.contains(f",{row['modality']},"))
                            .values(modalities=Study.modalities + f"{row['modality']},"))


def index(session: Session, batch: Sequence[tuple[Actor, Received]], known: Known | None = None
          ) -> tuple[list[Indexed], Known]:
    """Index the received instances of `batch` (each with the actor that sent it) and audit each store or
    repeat; flushed, not committed. The first of several copies of one SOP Instance UID is the one kept.

    `known` (not changed) spares looking up studies and series indexed before; the second value returned
    is what this call found or created, to be learnt once the transaction has committed.
    """
    items = [item for _actor, item in batch]
    first: dict[str, Received] = {}
    for item in items:
        first.setdefault(item.sop_uid, item)
    new = list(first.values())
    known = known or Known()
    found = _lookup(session, {i.study["study_uid"] for i in new} - set(known.studies),
                    {i.series["series_uid"] for i in new} - set(known.series))
    found.studies.update((i.study["study_uid"], known.studies[i.study["study_uid"]])
                         for i in new if i.study["study_uid"] in known.studies)
    found.series.update((i.series["series_uid"], known.series[i.series["series_uid"]])
                        for i in new if i.series["series_uid"] in known.series)
    _series(session, new, found, _studies(session, new, found))

    created = _insert_new(session, Instance, [
        {**item.instance, "series_pk": found.series[item.series["series_uid"]],
         "study_pk": found.studies[item.study["study_uid"]][0]} for item in new], "sop_instance_uid")
    stored: dict[str, tuple[int, str]] = {}  # the repeats: {sop: (pk, sha256 kept)}
    if missing := set(first) - set(created):  # indexed before (or meanwhile by another transaction)
        stored.update((uid, (pk, sha)) for uid, pk, sha in session.execute(
            select(Instance.sop_instance_uid, Instance.id, Instance.sha256)
            .where(Instance.sop_instance_uid.in_(missing))))
    stored.update((uid, (pk, first[uid].instance["sha256"])) for uid, pk in created.items())

    results = []
    for actor, item in batch:
        ae = item.instance["calling_ae"]
        if first[item.sop_uid] is item and item.sop_uid in created:
            pk = created[item.sop_uid]
            audit.record(session, actor, "pacs.instance.store", (Instance.__tablename__, pk),
                         {"sop_instance_uid": item.sop_uid, "study_uid": item.study["study_uid"],
                          "patient_id": found.studies[item.study["study_uid"]][1], "calling_ae": ae,
                          "size": item.instance["size"]})
            results.append(Indexed(pk, False))
            continue
        pk, kept_sha = stored[item.sop_uid]
        audit.record(session, actor, "pacs.instance.duplicate", (Instance.__tablename__, pk),
                     {"sop_instance_uid": item.sop_uid, "stored_sha256": kept_sha,
                      "received_sha256": item.instance["sha256"], "calling_ae": ae})
        results.append(Indexed(pk, True))
    return results, found


def settle(session: Session, batch: Sequence[Received], results: Sequence[Indexed]) -> None:
    """Wait until the files of the indexed `batch` are durable in their folders (StoreError if one cannot
    be); a row whose file found other bytes at its planned name gets the file's own name."""
    for item, result in zip(batch, results, strict=True):
        if item.settle() and not result.duplicate:
            session.execute(update(Instance).where(Instance.id == result.instance_pk)
                            .values(path=item.instance["path"]))


def discard_repeats(batch: Sequence[Received], results: Sequence[Indexed]) -> None:
    """Remove the files repeats created (another copy of their instance is indexed)."""
    kept = {item.file for item, result in zip(batch, results, strict=True) if not result.duplicate}
    for item, result in zip(batch, results, strict=True):
        if result.duplicate and item.created and item.file not in kept:
            item.file.unlink(missing_ok=True)


def store_instance(session: Session, actor: Actor, root: Path, raw: bytes, *, calling_ae: str = "",
                   sop_class_uid: str | None = None, sop_instance_uid: str | None = None,
                   min_free_bytes: int = 0) -> Stored:
    """Store the Part 10 bytes `raw` under `root` and index them (flushed) in the caller's transaction."""
    item = receive(root, raw, calling_ae=calling_ae, sop_class_uid=sop_class_uid, sop_instance_uid=sop_instance_uid,
                   min_free_bytes=min_free_bytes)
    result = index(session, [(actor, item)])[0][0]
    settle(session, [item], [result])
    discard_repeats([item], [result])
    created = item.created and not result.duplicate
    return Stored(session.get(Instance, result.instance_pk), result.duplicate, item.file if created else None)


# --- group commit for the DICOM node ---------------------------------------------------------------

MAX_BATCH = 64
WAIT_SECONDS = 120


@dataclass(frozen=True)
class Outcome:
    status: int
    comment: str = ""
    duplicate: bool = False


@dataclass(eq=False)
class _Job:
    actor: Actor
    item: Received
    outcome: Outcome | None = None


def _failure(exc: BaseException) -> Outcome:
    if isinstance(exc, StoreError):
        return Outcome(exc.status, exc.comment)
    if isinstance(exc, SQLAlchemyError):
        log.error("index not written: %s", str(exc).splitlines()[0])
        return Outcome(OUT_OF_RESOURCES, "index database unavailable")
    log.error("index not written", exc_info=exc)
    return Outcome(CANNOT_UNDERSTAND, "unexpected error")


class Indexer:
    """Indexes received instances for the association threads of one process, a batch per transaction.

    Group commit, leader and followers: a handler whose instance is waiting and finds no commit under
    way commits, in its own thread, everything waiting (the instances the other associations handed in
    while the previous batch was committing): one transaction and one fsync per folder for all of them,
    and neither a hand-over to another thread nor any waiting when the node is quiet. Each handler gets
    its own instance's outcome, success only once the transaction holding its row has committed after
    its folder was fsynced. A batch that fails is retried instance by instance, so one bad instance
    fails alone and none is answered success without its own committed row.
    """

    def __init__(self, session_factory: Callable[[], Session], max_batch: int = MAX_BATCH):
        self.session_factory, self.max_batch = session_factory, max_batch
        self._known = Known()  # used by the leader only
        self._cond = threading.Condition()
        self._pending: list[_Job] = []
        self._leading = False

    def submit(self, actor: Actor, item: Received) -> Outcome:
        """Index `item` with the next batch; returns once that batch committed (or failed)."""
        job = _Job(actor, item)
        deadline = time.monotonic() + WAIT_SECONDS
        with self._cond:
            self._pending.append(job)
        while True:
            with self._cond:
                while job.outcome is None and self._leading:
                    if (remaining := deadline - time.monotonic()) <= 0:
                        self._pending = [waiting for waiting in self._pending if waiting is not job]
                        return Outcome(OUT_OF_RESOURCES, "index not written in time")
                    self._cond.wait(remaining)
                if job.outcome is not None:
                    return job.outcome
                self._leading = True
                batch, self._pending = self._pending[:self.max_batch], self._pending[self.max_batch:]
            try:
                self._process(batch)
            finally:
                with self._cond:
                    self._leading = False
                    self._cond.notify_all()

    def waiting(self) -> int:
        """How many instances wait for the next batch."""
        with self._cond:
            return len(self._pending)

    def _process(self, batch: list[_Job]) -> None:
        try:
            try:
                self._commit(batch)
            except Exception as exc:
                self._known = Known()  # in case what it knew is what failed
                if len(batch) == 1:
                    batch[0].outcome = _failure(exc)
                else:
                    log.warning("index batch of %d failed (%s); indexing them one by one", len(batch),
                                type(exc).__name__)
                    for job in batch:
                        try:
                            self._commit([job])
                        except Exception as single:
                            job.outcome = _failure(single)
        finally:
            for job in batch:
                if job.outcome is None:  # not committed (e.g. the thread was interrupted): never success
                    job.outcome = Outcome(OUT_OF_RESOURCES, "index not written")
                if job.outcome.status != SUCCESS:
                    log.warning("C-STORE of %s not indexed: 0x%04X %s", job.item.sop_uid, job.outcome.status,
                                job.outcome.comment)

    def _commit(self, batch: list[_Job]) -> None:
        with self.session_factory() as session:
            # The rows are sent while the files are being written; they are durable before the commit.
            results, found = index(session, [(job.actor, job.item) for job in batch], self._known)
            settle(session, [job.item for job in batch], results)
            session.commit()
        self._known.learn(found)
        discard_repeats([job.item for job in batch], results)
        for job, result in zip(batch, results, strict=True):
            job.outcome = Outcome(SUCCESS, duplicate=result.duplicate)
