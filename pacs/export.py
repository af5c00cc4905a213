"""Export one study to a folder with a DICOMDIR (PS3.10 media, STD-GEN-CD/USB), for a CD or USB stick."""

from __future__ import annotations

from pathlib import Path

from pydicom.fileset import FileSet
from sqlalchemy import select
from sqlalchemy.orm import Session

from core import audit
from core.audit import Actor
from pacs.models import Instance, Study


class ExportError(Exception):
    pass


def export_study(session: Session, actor: Actor, storage_root: Path, study_uid: str, destination: Path) -> int:
    study = session.scalar(select(Study).where(Study.study_uid == study_uid))
    if study is None:
        raise ExportError(f"no study {study_uid}")
    if destination.exists() and any(destination.iterdir()):
        raise ExportError(f"{destination} is not empty")
    instances = list(session.scalars(select(Instance).where(Instance.study_pk == study.id).order_by(Instance.id)))
    fileset = FileSet()
    fileset.ID = "VNHIS"
    for instance in instances:
        fileset.add(storage_root / instance.path)  # read and staged to disk one by one, not kept in memory
    destination.mkdir(parents=True, exist_ok=True)
    fileset.write(destination)
    audit.record(session, actor, "pacs.study.export", study,
                 {"study_uid": study_uid, "patient_id": study.patient_id, "instances": len(instances),
                  "destination": str(destination)})
    return len(instances)
