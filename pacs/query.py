"""Query/Retrieve matching on the index (PS3.4 C.2.2.2), shared by C-FIND, C-MOVE, C-GET and QIDO-RS.

Keys arrive as {keyword: text}; the text follows DICOM matching: empty (universal), a single value,
`*`/`?` wild cards on text, `a-b` ranges on dates and times, `uid1\\uid2` lists on UIDs. The patient's
name matches on a folded form (case, accents and đ ignored) so "nguyen*" finds "Nguyễn^Thị Hương"; other
person names (the referring physician) match without regard to case only; this is the node's documented
choice for PN. Every requested key comes back, with a value or empty.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from pacs.models import Instance, Series, Study
from pacs.store import fold_pn

LEVELS = ("PATIENT", "STUDY", "SERIES", "IMAGE")
TEXT_VRS = {"AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UR", "UT"}


class QueryError(ValueError):
    """A query the node cannot answer (unknown level, bad key value)."""


@dataclass(frozen=True)
class Key:
    level: str
    vr: str
    column: object | None  # the column matched on, None if only returned
    value: Callable  # (study, series, instance) -> the value returned


def _modalities(study, *_):
    return "\\".join(study.modality_list)


KEYS: dict[str, Key] = {
    "PatientID": Key("PATIENT", "LO", Study.patient_dicom_id, lambda st, *_: st.patient_dicom_id),
    "PatientName": Key("PATIENT", "PN", Study.patient_name_folded, lambda st, *_: st.patient_name),
    "PatientBirthDate": Key("PATIENT", "DA", Study.patient_birth_date, lambda st, *_: st.patient_birth_date),
    "PatientSex": Key("PATIENT", "CS", Study.patient_sex, lambda st, *_: st.patient_sex),
    "StudyInstanceUID": Key("STUDY", "UI", Study.study_uid, lambda st, *_: st.study_uid),
    "StudyDate": Key("STUDY", "DA", Study.study_date, lambda st, *_: st.study_date),
    "StudyTime": Key("STUDY", "TM", Study.study_time, lambda st, *_: st.study_time),
    "AccessionNumber": Key("STUDY", "SH", Study.accession_number, lambda st, *_: st.accession_number),
    "StudyID": Key("STUDY", "SH", Study.study_id, lambda st, *_: st.study_id),
    "StudyDescription": Key("STUDY", "LO", Study.study_description, lambda st, *_: st.study_description),
    "ReferringPhysicianName": Key("STUDY", "PN", Study.referring_physician, lambda st, *_: st.referring_physician),
    "ModalitiesInStudy": Key("STUDY", "CS", Study.modalities, _modalities),
    "SeriesInstanceUID": Key("SERIES", "UI", Series.series_uid, lambda _st, se, *_: se.series_uid),
    "Modality": Key("SERIES", "CS", Series.modality, lambda _st, se, *_: se.modality),
    "SeriesNumber": Key("SERIES", "IS", Series.series_number, lambda _st, se, *_: se.series_number),
    "SeriesDescription": Key("SERIES", "LO", Series.series_description, lambda _st, se, *_: se.series_description),
    "BodyPartExamined": Key("SERIES", "CS", Series.body_part, lambda _st, se, *_: se.body_part),
    "SOPInstanceUID": Key("IMAGE", "UI", Instance.sop_instance_uid, lambda _st, _se, i: i.sop_instance_uid),
    "SOPClassUID": Key("IMAGE", "UI", Instance.sop_class_uid, lambda _st, _se, i: i.sop_class_uid),
    "InstanceNumber": Key("IMAGE", "IS", Instance.instance_number, lambda _st, _se, i: i.instance_number),
    "Rows": Key("IMAGE", "US", Instance.rows, lambda _st, _se, i: i.rows),
    "Columns": Key("IMAGE", "US", Instance.columns, lambda _st, _se, i: i.columns),
    "NumberOfFrames": Key("IMAGE", "IS", Instance.frames, lambda _st, _se, i: i.frames),
    "AvailableTransferSyntaxUID": Key("IMAGE", "UI", None, lambda _st, _se, i: i.transfer_syntax),
}
COUNTS = {  # keyword -> (level it is returned at, what is counted, the parent it is counted under)
    "NumberOfPatientRelatedStudies": ("PATIENT", Study.id, Study.patient_dicom_id),
    "NumberOfPatientRelatedSeries": ("PATIENT", Series.id, Study.patient_dicom_id),
    "NumberOfPatientRelatedInstances": ("PATIENT", Instance.id, Study.patient_dicom_id),
    "NumberOfStudyRelatedSeries": ("STUDY", Series.id, Study.id),
    "NumberOfStudyRelatedInstances": ("STUDY", Instance.id, Study.id),
    "NumberOfSeriesRelatedInstances": ("SERIES", Instance.id, Series.id),
}


def like_pattern(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%").replace("?", "_")


def _time_bounds(low: str, high: str) -> tuple[str | None, str | None]:
    low = low.replace(":", "")
    high = high.replace(":", "")
    return (low.ljust(6, "0") if low else None,
            (high.ljust(6, "9") + ("" if "." in high else ".999999")) if high else None)


def condition(key: Key, raw: str):
    """The SQL condition for one key's matching value, or None for universal matching."""
    value = raw.strip() if key.vr != "PN" else raw.strip().rstrip("^")
    column = key.column
    if value in ("", "*") or column is None:
        return None
    if key.vr == "UI":
        uids = [u.strip() for u in value.split("\\") if u.strip()]
        return column.in_(uids) if len(uids) > 1 else column == uids[0]
    if column is Study.modalities:
        members = [m.strip() for m in value.split("\\") if m.strip()]
        return or_(*[column.like(f"%,{like_pattern(m)},%", escape="\\") for m in members])
    if key.vr in ("DA", "TM", "DT") and "-" in value:
        low, _, high = value.partition("-")
        if key.vr == "TM":
            low, high = _time_bounds(low, high)
        else:
            for bound in (low, high):
                if bound and not (len(bound) == (8 if key.vr == "DA" else len(bound)) and bound[:8].isdigit()):
                    raise QueryError(f"bad date range {value!r}")
            high = high or None
            low = low or None
        parts = ([column >= low] if low else []) + ([column <= high] if high else [])
        return and_(*parts)
    if key.vr == "DA":
        if not (len(value) == 8 and value.isdigit()):
            raise QueryError(f"bad date {value!r}")
        return column == value
    if key.vr == "TM":
        low, high = _time_bounds(value, value)
        return and_(column >= low, column <= high)
    if key.vr in ("IS", "US"):
        try:
            return column == int(value)
        except ValueError:
            raise QueryError(f"bad number {value!r}") from None
    if column is Study.patient_name_folded:
        value = fold_pn(value)
    elif key.vr == "PN":  # other names are kept as sent: matched without regard to case
        column, value = func.lower(column), value.lower()
    if key.vr in TEXT_VRS and ("*" in value or "?" in value):
        return column.like(like_pattern(value), escape="\\")
    return column == value


def _depth(level: str) -> int:
    if level not in LEVELS:
        raise QueryError(f"unknown query level {level!r}")
    return LEVELS.index(level)


def find(session: Session, level: str, keys: dict[str, str], *, limit: int | None = None,
         offset: int = 0) -> Iterator[dict]:
    """The matches at `level` as {keyword: value} for every key asked (plus the level's unique key)."""
    depth = _depth(level)
    conditions = []
    for keyword, raw in keys.items():
        key = KEYS.get(keyword)
        if key is None or _depth(key.level) > depth:
            continue  # unknown or lower-level keys are returned empty, not matched
        cond = condition(key, raw or "")
        if cond is not None:
            conditions.append(cond)
    if depth >= 3:
        stmt = select(Instance, Series, Study).join(Series, Instance.series_pk == Series.id).join(
            Study, Instance.study_pk == Study.id).order_by(Series.series_number, Instance.instance_number, Instance.id)
    elif depth == 2:
        stmt = select(Series, Study).join(Study, Series.study_pk == Study.id).order_by(Series.series_number, Series.id)
    else:
        stmt = select(Study).order_by(Study.study_date.desc(), Study.id.desc())
    stmt = stmt.where(*conditions)
    if depth == 0:
        yield from _patients(session, stmt, keys)
        return
    if limit is not None:
        stmt = stmt.limit(limit).offset(offset)
    rows = []
    for row in session.execute(stmt):
        rows.append((row[0], None, None) if depth == 1 else (
            (row[1], row[0], None) if depth == 2 else (row[2], row[1], row[0])))
    counts = _batch_counts(session, level, keys, rows)
    for study, series, instance in rows:
        yield _answer(session, level, keys, study, series, instance, counts)


def _batch_counts(session: Session, level: str, keys: dict[str, str], rows) -> dict[str, dict[int, int]]:
    """The study/series counts asked for, for all matches in one grouped query each (not one per match)."""
    counts = {}
    for keyword in keys:
        if keyword not in COUNTS or COUNTS[keyword][0] != level or level not in ("STUDY", "SERIES") or not rows:
            continue
        _level, counted, parent = COUNTS[keyword]
        if parent is Series.id:
            group, ids = Instance.series_pk, {se.id for _st, se, _i in rows}
        else:
            group = Series.study_pk if counted.class_ is Series else Instance.study_pk
            ids = {st.id for st, _se, _i in rows}
        counts[keyword] = dict(session.execute(select(group, func.count()).where(group.in_(ids)).group_by(group)).all())
    return counts


def _patients(session: Session, stmt, keys: dict[str, str]) -> Iterator[dict]:
    seen = set()
    for study in session.scalars(stmt):
        if study.patient_dicom_id in seen:
            continue
        seen.add(study.patient_dicom_id)
        yield _answer(session, "PATIENT", keys, study, None, None)


def _count(session: Session, keyword: str, study, series) -> int:
    _level, counted, parent = COUNTS[keyword]
    table = counted.class_
    stmt = select(func.count(counted))
    if table is Instance and parent is Series.id:
        return session.scalar(stmt.where(Instance.series_pk == series.id))
    if parent is Study.id:
        column = Series.study_pk if table is Series else Instance.study_pk
        return session.scalar(stmt.where(column == study.id))
    if table is Study:
        return session.scalar(stmt.where(Study.patient_dicom_id == study.patient_dicom_id))
    link = Series.study_pk if table is Series else Instance.study_pk
    return session.scalar(stmt.join(Study, link == Study.id).where(Study.patient_dicom_id == study.patient_dicom_id))


def _answer(session, level: str, keys: dict[str, str], study, series, instance, counts=None) -> dict:
    depth = _depth(level)
    unique = {"PATIENT": "PatientID", "STUDY": "StudyInstanceUID", "SERIES": "SeriesInstanceUID",
              "IMAGE": "SOPInstanceUID"}[level]
    answer = {}
    for keyword in [*keys, unique] if unique not in keys else keys:
        key = KEYS.get(keyword)
        if key is not None and _depth(key.level) <= depth:
            value = key.value(study, series, instance)
            answer[keyword] = "" if value is None else value
        elif keyword in COUNTS and COUNTS[keyword][0] == level:
            if counts and keyword in counts:
                answer[keyword] = counts[keyword].get(series.id if level == "SERIES" else study.id, 0)
            else:
                answer[keyword] = _count(session, keyword, study, series)
        else:
            answer[keyword] = None
    return answer


def instances(session: Session, level: str, keys: dict[str, str]) -> list[Instance]:
    """The instances a C-MOVE/C-GET of `keys` at `level` covers."""
    depth = _depth(level)
    conditions = []
    for keyword, raw in keys.items():
        key = KEYS.get(keyword)
        if key is not None and _depth(key.level) <= depth:
            cond = condition(key, raw or "")
            if cond is not None:
                conditions.append(cond)
    if not conditions:
        raise QueryError("a retrieve needs a unique key")
    stmt = (select(Instance).join(Series, Instance.series_pk == Series.id).join(Study, Instance.study_pk == Study.id)
            .where(*conditions).order_by(Instance.study_pk, Series.series_number, Instance.instance_number,
                                         Instance.id))
    return list(session.scalars(stmt))
