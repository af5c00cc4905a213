"""Group commit of C-STORE: instances of several associations share one transaction, yet each sender
gets success only for its own committed instance, a failed batch answers failure for every instance in
it (or retries them one by one), and repeats inside one batch are recognised."""

from __future__ import annotations

import io
import threading
import time

import pydicom
import pytest
from pydicom.uid import generate_uid
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage, MRImageStorage
from sqlalchemy import func, select, text

from core.audit import Actor
from core.models import AuditEvent
from pacs import store
from pacs.models import Instance, Series, Study
from tests.pacs.conftest import sample_file

ACTOR = Actor(id=None, name="dicom:TESTSCU", ip="127.0.0.1")


def _raw(study_uid: str, series_uid: str, sop_uid: str | None = None, *, modality: str = "CT",
         description: str = "") -> bytes:
    ds = pydicom.dcmread(sample_file("CT_small.dcm"))
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.Modality = study_uid, series_uid, modality
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = sop_uid or generate_uid()
    ds.SeriesDescription = description
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _counts(session) -> list[int]:
    return [session.scalar(select(func.count()).select_from(m)) for m in (Study, Series, Instance)]


def _actions(session) -> list[str]:
    return sorted(session.scalars(select(AuditEvent.action).where(AuditEvent.action.startswith("pacs.instance."))))


def _send(port: int, raws: list[bytes], statuses: list, calling: str = "TESTSCU") -> None:
    ae = AE(ae_title=calling)
    ae.add_requested_context(CTImageStorage)
    ae.add_requested_context(MRImageStorage)
    assoc = ae.associate("127.0.0.1", port, ae_title="VNHIS")
    assert assoc.is_established
    for raw in raws:
        reply = assoc.send_c_store(pydicom.dcmread(io.BytesIO(raw)))
        statuses.append((reply.Status, reply.get("ErrorComment")))
    assoc.release()


def _in_parallel(jobs) -> None:
    threads = [threading.Thread(target=job) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)


def test_concurrent_associations_on_two_nodes_index_each_instance_once(start_node, pacs_sessions):
    """Four associations on two nodes (two indexers, as two worker processes) race to create one study:
    every instance is answered success and indexed once, the study and each series once, all audited."""
    first, second = start_node(), start_node()
    study_uid, series_uids = generate_uid(), [generate_uid(), generate_uid()]
    sends = [[_raw(study_uid, series_uids[(a + i) % 2], modality=("CT", "MR")[(a + i) % 2]) for i in range(6)]
             for a in range(4)]
    statuses: list = []
    _in_parallel([lambda raws=raws, port=(first, second)[a % 2].port: _send(port, raws, statuses)
                  for a, raws in enumerate(sends)])
    assert statuses == [(0x0000, None)] * 24
    with pacs_sessions() as session:
        assert _counts(session) == [1, 2, 24]
        assert session.scalar(select(Study.modalities)) in (",CT,MR,", ",MR,CT,")
        assert _actions(session) == ["pacs.instance.store"] * 24
        indexed = set(session.scalars(select(Instance.sop_instance_uid)))
    assert indexed == {pydicom.dcmread(io.BytesIO(raw)).SOPInstanceUID for raws in sends for raw in raws}


def _wait_queued(indexer: store.Indexer, count: int) -> None:
    deadline = time.monotonic() + 30
    while indexer.waiting() < count:  # the test holds the first batch until the rest wait
        assert time.monotonic() < deadline, "submissions did not reach the indexer"
        time.sleep(0.01)


class _HeldFirstBatch:
    """A session factory whose first session waits for `release`, so the submissions queued meanwhile
    form one batch; `inserted` records how many instance rows each INSERT carried."""

    def __init__(self, factory, monkeypatch):
        self.factory, self.release, self.calls, self.inserted = factory, threading.Event(), 0, []
        real = store.insert_rows

        def _seen(session, table, rows, **options):
            if table is Instance.__table__:
                self.inserted.append(len(rows))
            return real(session, table, rows, **options)

        monkeypatch.setattr(store, "insert_rows", _seen)

    def __call__(self):
        self.calls += 1
        if self.calls == 1:
            assert self.release.wait(30)
        return self.factory()


@pytest.fixture
def held(pacs_sessions, monkeypatch):
    return _HeldFirstBatch(pacs_sessions, monkeypatch)


def _submit_all(indexer: store.Indexer, held: _HeldFirstBatch, items: list) -> list[store.Outcome]:
    outcomes: list = [None] * len(items)

    def submit(index: int) -> None:
        outcomes[index] = indexer.submit(ACTOR, items[index])

    threads = [threading.Thread(target=submit, args=(0,))]
    threads[0].start()
    while held.calls == 0:  # the first batch (the first item alone) is being committed
        time.sleep(0.01)
    threads += [threading.Thread(target=submit, args=(i,)) for i in range(1, len(items))]
    for thread in threads[1:]:
        thread.start()
    _wait_queued(indexer, len(items) - 1)
    held.release.set()
    for thread in threads:
        thread.join(60)
    return outcomes


def test_repeats_inside_one_batch_keep_the_first_copy(held, pacs_sessions, tmp_path):
    root = tmp_path / "dicom"
    study_uid, series_uid, sop = generate_uid(), generate_uid(), generate_uid()
    raws = [_raw(study_uid, series_uid), _raw(study_uid, series_uid, sop),
            _raw(study_uid, series_uid, sop, description="corrected"), _raw(study_uid, series_uid, sop),
            _raw(study_uid, series_uid)]
    items = [store.receive(root, raw, calling_ae="TESTSCU") for raw in raws]
    outcomes = _submit_all(store.Indexer(held), held, items)
    assert held.inserted == [1, 2]  # the first alone, then one batch of the rest with the repeats folded
    assert outcomes == [store.Outcome(0x0000), store.Outcome(0x0000), store.Outcome(0x0000, duplicate=True),
                        store.Outcome(0x0000, duplicate=True), store.Outcome(0x0000)]
    with pacs_sessions() as session:
        assert _counts(session) == [1, 1, 3]
        kept = session.scalar(select(Instance).where(Instance.sop_instance_uid == sop))
        repeats = session.scalars(select(AuditEvent.detail).where(AuditEvent.action == "pacs.instance.duplicate")
                                  .order_by(AuditEvent.id)).all()
    assert kept.sha256 == items[1].instance["sha256"]
    assert [(d["stored_sha256"], d["received_sha256"]) for d in repeats] == [
        (items[1].instance["sha256"], items[2].instance["sha256"]),
        (items[1].instance["sha256"], items[3].instance["sha256"])]
    # The corrected copy's own file is gone; the identical copy shared the kept file.
    assert not items[2].file.exists() and items[3].file == items[1].file
    assert sorted(p for p in root.rglob("*.dcm")) == sorted({items[0].file, items[1].file, items[4].file})


@pytest.fixture
def refuse(pacs_sessions):
    """A deferred constraint trigger makes PostgreSQL refuse, at COMMIT, a transaction holding an instance
    whose SOP Instance UID (or '*': any) is in `test_refused`; returns a function to set that list."""
    engine = pacs_sessions.kw["bind"]
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE test_refused (uid text)"))
        conn.execute(text("""CREATE FUNCTION test_refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
            IF EXISTS (SELECT 1 FROM test_refused WHERE uid IN (NEW.sop_instance_uid, '*')) THEN
                RAISE EXCEPTION 'refused at commit';
            END IF; RETURN NULL; END $$"""))
        conn.execute(text("CREATE CONSTRAINT TRIGGER test_refuse AFTER INSERT ON pacs_instances "
                          "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION test_refuse()"))

    def _set(*uids: str) -> None:
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM test_refused"))
            for uid in uids:
                conn.execute(text("INSERT INTO test_refused VALUES (:uid)"), {"uid": uid})

    return _set


def test_a_failed_batch_commit_answers_failure_for_every_instance(held, refuse, pacs_sessions, tmp_path):
    root = tmp_path / "dicom"
    study_uid = generate_uid()
    items = [store.receive(root, _raw(study_uid, generate_uid()), calling_ae="TESTSCU") for _ in range(4)]
    refuse("*")
    outcomes = _submit_all(store.Indexer(held), held, items)
    assert held.inserted == [1, 3, 1, 1, 1]  # the batch of three failed at COMMIT, then each was tried alone
    assert outcomes == [store.Outcome(0xA700, "index database unavailable")] * 4
    with pacs_sessions() as session:
        assert _counts(session) == [0, 0, 0]
        assert _actions(session) == []
    assert all(item.file.exists() for item in items)  # kept for a re-send (see pacs.store)


def test_one_instance_the_database_refuses_fails_alone(held, refuse, pacs_sessions, tmp_path):
    root = tmp_path / "dicom"
    study_uid = generate_uid()
    items = [store.receive(root, _raw(study_uid, generate_uid()), calling_ae="TESTSCU") for _ in range(4)]
    refuse(items[2].sop_uid)
    outcomes = _submit_all(store.Indexer(held), held, items)
    assert held.inserted == [1, 3, 1, 1, 1]
    assert outcomes == [store.Outcome(0x0000), store.Outcome(0x0000),
                        store.Outcome(0xA700, "index database unavailable"), store.Outcome(0x0000)]
    with pacs_sessions() as session:
        assert set(session.scalars(select(Instance.sop_instance_uid))) == {items[i].sop_uid for i in (0, 1, 3)}
        assert _actions(session) == ["pacs.instance.store"] * 3


def test_over_the_wire_a_failed_commit_is_never_answered_success(start_node, refuse, pacs_sessions):
    node = start_node()
    refuse("*")
    statuses: list = []
    study_uid = generate_uid()
    _in_parallel([lambda: _send(node.port, [_raw(study_uid, generate_uid()) for _ in range(3)], statuses)
                  for _ in range(3)])
    assert statuses == [(0xA700, "index database unavailable")] * 9
    with pacs_sessions() as session:
        assert _counts(session) == [0, 0, 0]
    refuse()
    statuses.clear()
    _send(node.port, [_raw(study_uid, generate_uid())], statuses)  # the node goes on serving
    assert statuses == [(0x0000, None)]
    with pacs_sessions() as session:
        assert _counts(session) == [1, 1, 1]
