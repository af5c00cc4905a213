"""DICOMweb (PS3.18) under /dicom-web, authenticated like the JSON API (Bearer token or session):
QIDO-RS searches, WADO-RS retrieval (instances, metadata, frames, rendered, thumbnail), STOW-RS storage
and WADO-URI. Multipart bodies of instances are streamed from the files, never built in memory.
"""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import pydicom
from flask import Response, abort, jsonify, request, stream_with_context, url_for
from flask_babel import gettext as _
from flask_babel import ngettext
from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.encaps import generate_frames
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from core import audit
from core.web import config, current_actor, db_session
from core.web.api import api_blueprint
from core.web.security import require
from pacs import query, render, store
from pacs.models import Instance, Series, Study
from pacs.settings import load as load_settings
from pacs.settings import storage_root

bp = api_blueprint("pacs_dicomweb", __name__, "/dicom-web")
DICOM_JSON = "application/dicom+json"
STUDY_FIELDS = ("StudyInstanceUID", "StudyDate", "StudyTime", "AccessionNumber", "StudyID", "StudyDescription",
                "ReferringPhysicianName", "PatientName", "PatientID", "PatientBirthDate", "PatientSex",
                "ModalitiesInStudy", "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances")
SERIES_FIELDS = ("StudyInstanceUID", "SeriesInstanceUID", "Modality", "SeriesNumber", "SeriesDescription",
                 "BodyPartExamined", "NumberOfSeriesRelatedInstances")
INSTANCE_FIELDS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPClassUID", "SOPInstanceUID", "InstanceNumber",
                   "Rows", "Columns", "NumberOfFrames", "AvailableTransferSyntaxUID")
FIELDS = {"STUDY": STUDY_FIELDS, "SERIES": SERIES_FIELDS, "IMAGE": INSTANCE_FIELDS}
CONTROL = ("limit", "offset", "fuzzymatching", "includefield")
BULK_THRESHOLD = 1 << 20  # metadata values larger than this are not inlined
LEFT_OUT = "vnhis:left-out"
# STOW-RS failure reasons are C-STORE statuses (PS3.18 §10.5.3).
PROCESSING_FAILURE = 0x0110


def _error(status: int, message: str):
    """A JSON refusal: the code stays "dicomweb" for programs, the message is in the user's language."""
    response = jsonify(error={"code": "dicomweb", "message": message})
    response.status_code = status
    return response


def _keyword(name: str) -> str:
    if re.fullmatch(r"[0-9A-Fa-f]{8}", name):
        keyword = keyword_for_tag(int(name, 16))
    else:
        keyword = name if tag_for_keyword(name) is not None else ""
    if not keyword:
        abort(_error(400, _("Unknown attribute %(name)s.", name=name)))
    return keyword


def _search_keys(level: str, fixed: dict[str, str]) -> dict[str, str]:
    keys = dict.fromkeys(FIELDS[level], "")
    for name, value in request.args.items(multi=True):
        if name == "includefield":
            for field in value.split(","):
                if field.strip() == "all":
                    keys.update({k: keys.get(k, "") for k, key in query.KEYS.items()})
                elif field.strip():
                    keys.setdefault(_keyword(field.strip()), "")
        elif name not in CONTROL:
            keys[_keyword(name)] = value
    keys.update(fixed)
    return keys


def _retrieve_url(answer: dict, level: str) -> str:
    if level == "STUDY":
        return url_for(".retrieve_study", study=answer["StudyInstanceUID"], _external=True)
    if level == "SERIES":
        return url_for(".retrieve_series", study=answer["StudyInstanceUID"], series=answer["SeriesInstanceUID"],
                       _external=True)
    return url_for(".retrieve_instance", study=answer["StudyInstanceUID"], series=answer["SeriesInstanceUID"],
                   instance=answer["SOPInstanceUID"], _external=True)


def _json_of(answer: dict, level: str) -> dict:
    ds = Dataset()
    for keyword, value in answer.items():
        tag = tag_for_keyword(keyword)
        if tag is None:
            continue
        vr = dictionary_VR(tag)
        ds.add_new(tag, vr, None if value in (None, "") else (str(value) if vr in ("IS", "DS") else value))
    if all(answer.get(k) for k in ("StudyInstanceUID",) + (("SeriesInstanceUID",) if level != "STUDY" else ())):
        ds.RetrieveURL = _retrieve_url(answer, level)
    return ds.to_json_dict()


def _search(level: str, **fixed):
    keys = _search_keys(level, {k: v for k, v in fixed.items() if v})
    limit = min(max(request.args.get("limit", 100, type=int) or 100, 1), 1000)
    offset = max(request.args.get("offset", 0, type=int) or 0, 0)
    sess = db_session()
    try:
        answers = list(query.find(sess, level, keys, limit=limit, offset=offset))
    except query.QueryError as exc:
        return _error(400, str(exc))
    audit.record(sess, current_actor(), "pacs.qido", None, {"level": level, "count": len(answers),
                                                            "keys": sorted(k for k, v in keys.items() if v)})
    sess.commit()
    if not answers:
        return Response(status=204)
    return Response(json.dumps([_json_of(a, level) for a in answers], ensure_ascii=False),
                    mimetype=DICOM_JSON)


@bp.get("/studies")
@require("pacs.image.view")
def search_studies():
    return _search("STUDY")


@bp.get("/series")
@bp.get("/studies/<study>/series")
@require("pacs.image.view")
def search_series(study: str | None = None):
    return _search("SERIES", StudyInstanceUID=study)


@bp.get("/instances")
@bp.get("/studies/<study>/instances")
@bp.get("/studies/<study>/series/<series>/instances")
@require("pacs.image.view")
def search_instances(study: str | None = None, series: str | None = None):
    return _search("IMAGE", StudyInstanceUID=study, SeriesInstanceUID=series)


# --- WADO-RS ----------------------------------------------------------------------------------

def _instances(study: str, series: str | None = None, instance: str | None = None) -> list[Instance]:
    stmt = (select(Instance).join(Study, Instance.study_pk == Study.id).join(Series, Instance.series_pk == Series.id)
            .where(Study.study_uid == study))
    if series:
        stmt = stmt.where(Series.series_uid == series)
    if instance:
        stmt = stmt.where(Instance.sop_instance_uid == instance)
    found = list(db_session().scalars(stmt.order_by(Series.series_number, Instance.instance_number, Instance.id)))
    if not found:
        abort(_error(404, _("No such study, series or instance.")))
    patient_ids = db_session().scalars(select(Study.patient_id).where(Study.study_uid == study)).all()
    audit.record(db_session(), current_actor(), "pacs.wado", None,
                 {"study_uid": study, "patient_id": patient_ids[0] if patient_ids else None, "count": len(found)})
    db_session().commit()
    return found


def _multipart(parts, part_type: str) -> Response:
    boundary = uuid.uuid4().hex

    def body():
        for content_type, chunks in parts:
            yield f"--{boundary}\r\nContent-Type: {content_type}\r\n\r\n".encode()
            yield from chunks
            yield b"\r\n"
        yield f"--{boundary}--\r\n".encode()

    return Response(stream_with_context(body()),
                    content_type=f'multipart/related; type="{part_type}"; boundary={boundary}')


def _file_chunks(path: Path, size: int = 1 << 20):
    with path.open("rb") as handle:
        while chunk := handle.read(size):
            yield chunk


def _retrieve(found: list[Instance]) -> Response:
    root = storage_root(config())
    return _multipart([("application/dicom", _file_chunks(root / i.path)) for i in found], "application/dicom")


@bp.get("/studies/<study>")
@require("pacs.image.view")
def retrieve_study(study: str):
    return _retrieve(_instances(study))


@bp.get("/studies/<study>/series/<series>")
@require("pacs.image.view")
def retrieve_series(study: str, series: str):
    return _retrieve(_instances(study, series))


@bp.get("/studies/<study>/series/<series>/instances/<instance>")
@require("pacs.image.view")
def retrieve_instance(study: str, series: str, instance: str):
    return _retrieve(_instances(study, series, instance))


def _metadata(found: list[Instance]) -> Response:
    root = storage_root(config())
    out = []
    for instance in found:
        ds = pydicom.dcmread(root / instance.path, stop_before_pixels=True)
        item = _without_bulk(ds.to_json_dict(bulk_data_threshold=BULK_THRESHOLD,
                                              bulk_data_element_handler=lambda _elem: LEFT_OUT))
        item["00020010"] = {"vr": "UI", "Value": [instance.transfer_syntax]}
        if instance.rows:
            study_uid = db_session().get(Study, instance.study_pk).study_uid
            series_uid = db_session().get(Series, instance.series_pk).series_uid
            every_frame = ",".join(str(n) for n in range(1, (instance.frames or 1) + 1))
            item["7FE00010"] = {"vr": "OW" if ds.get("BitsAllocated", 8) > 8 else "OB", "BulkDataURI": url_for(
                ".frames", study=study_uid, series=series_uid, instance=instance.sop_instance_uid, frames=every_frame,
                _external=True)}
        out.append(item)
    return Response(json.dumps(out, ensure_ascii=False), mimetype=DICOM_JSON)


def _without_bulk(item: dict) -> dict:
    """Values over the threshold (icons, overlays, waveforms) have no retrieve URL of their own: left out,
    also inside sequences, rather than given an empty BulkDataURI."""
    kept = {}
    for tag, element in item.items():
        if element.get("BulkDataURI") == LEFT_OUT:
            continue
        if element.get("vr") == "SQ" and element.get("Value"):
            element = {**element, "Value": [_without_bulk(child) for child in element["Value"]]}
        kept[tag] = element
    return kept


@bp.get("/studies/<study>/metadata")
@require("pacs.image.view")
def study_metadata(study: str):
    return _metadata(_instances(study))


@bp.get("/studies/<study>/series/<series>/metadata")
@require("pacs.image.view")
def series_metadata(study: str, series: str):
    return _metadata(_instances(study, series))


@bp.get("/studies/<study>/series/<series>/instances/<instance>/metadata")
@require("pacs.image.view")
def instance_metadata(study: str, series: str, instance: str):
    return _metadata(_instances(study, series, instance))


def _frame_numbers(text: str) -> list[int]:
    try:
        numbers = [int(n) for n in text.split(",")]
    except ValueError:
        abort(_error(400, _("Bad frame list %(frames)s.", frames=text)))
    if not numbers or min(numbers) < 1:
        abort(_error(400, _("Bad frame list %(frames)s.", frames=text)))
    return numbers


def frame_bytes(ds: Dataset, numbers: list[int], keep_compressed: bool) -> list[bytes]:
    """The requested frames (1-based): compressed as stored if allowed, else native pixel bytes."""
    count = int(ds.get("NumberOfFrames", 1) or 1)
    if max(numbers) > count:
        abort(_error(404, ngettext("The instance has %(num)d frame.", "The instance has %(num)d frames.", count)))
    ts = ds.file_meta.TransferSyntaxUID
    if ts.is_compressed and keep_compressed:
        frames = list(generate_frames(ds.PixelData, number_of_frames=count))
        return [frames[n - 1] for n in numbers]
    if ts.is_compressed:
        ds.decompress(generate_instance_uid=False)
    size = ds.Rows * ds.Columns * int(ds.get("SamplesPerPixel", 1)) * ds.BitsAllocated // 8
    return [bytes(ds.PixelData[(n - 1) * size:n * size]) for n in numbers]


@bp.get("/studies/<study>/series/<series>/instances/<instance>/frames/<frames>")
@require("pacs.image.view")
def frames(study: str, series: str, instance: str, frames: str):
    numbers = _frame_numbers(frames)
    found = _instances(study, series, instance)[0]
    ds = pydicom.dcmread(storage_root(config()) / found.path)
    if "PixelData" not in ds:
        return _error(404, _("The instance has no pixel data."))
    accept = request.headers.get("Accept", "")
    keep = "transfer-syntax=*" in accept or f"transfer-syntax={found.transfer_syntax}" in accept
    try:
        data = frame_bytes(ds, numbers, keep)
    except (NotImplementedError, RuntimeError, ValueError) as exc:
        return _error(406, _("Cannot decode the frames: %(error)s", error=exc))
    part = "application/octet-stream" + (f"; transfer-syntax={found.transfer_syntax}"
                                         if keep and ds.file_meta.TransferSyntaxUID.is_compressed else "")
    return _multipart([(part, [frame]) for frame in data], "application/octet-stream")


def _rendered(found: Instance, frame: int, size: int | None):
    fmt = "png" if "image/png" in request.headers.get("Accept", "") else "jpeg"
    window = None
    if request.args.get("window"):
        try:
            centre, width = (float(v) for v in request.args["window"].split(",")[:2])
            window = (centre, width)
        except ValueError:
            return _error(400, _("window is centre,width[,function]."))
    if request.args.get("viewport"):
        try:
            size = max(int(v) for v in request.args["viewport"].split(",")[:2])
        except ValueError:
            return _error(400, _("viewport is width,height."))
    try:
        data, media_type = render.render(storage_root(config()) / found.path, frame=frame, size=size, fmt=fmt,
                                         window=window, preset=request.args.get("preset"))
    except render.RenderError as exc:
        return _error(404 if "no " in str(exc) else 406, str(exc))
    return Response(data, mimetype=media_type)


@bp.get("/studies/<study>/series/<series>/instances/<instance>/rendered")
@require("pacs.image.view")
def rendered(study: str, series: str, instance: str):
    return _rendered(_instances(study, series, instance)[0], 0, None)


@bp.get("/studies/<study>/series/<series>/instances/<instance>/frames/<int:frame>/rendered")
@require("pacs.image.view")
def frame_rendered(study: str, series: str, instance: str, frame: int):
    return _rendered(_instances(study, series, instance)[0], frame - 1, None)


@bp.get("/studies/<study>/series/<series>/instances/<instance>/thumbnail")
@require("pacs.image.view")
def thumbnail(study: str, series: str, instance: str):
    return _rendered(_instances(study, series, instance)[0], 0, 128)


# --- STOW-RS ----------------------------------------------------------------------------------

def _parts(body: bytes, content_type: str) -> list[tuple[str, bytes]]:
    match = re.search(r'boundary="?([^";]+)"?', content_type)
    if not content_type.startswith("multipart/related") or match is None:
        abort(_error(415, _('Send multipart/related; type="application/dicom" with a boundary.')))
    delimiter = b"--" + match.group(1).encode()
    parts = []
    for chunk in body.split(delimiter)[1:]:
        if chunk.startswith(b"--"):
            break
        head, _blank, content = chunk.lstrip(b"\r\n").partition(b"\r\n\r\n")
        headers = dict(line.split(":", 1) for line in head.decode("latin-1").split("\r\n") if ":" in line)
        part_type = {k.strip().lower(): v.strip() for k, v in headers.items()}.get("content-type", "application/dicom")
        parts.append((part_type, content.removesuffix(b"\r\n")))
    return parts


def _reference(sop_class: str, sop_uid: str) -> Dataset:
    ref = Dataset()
    ref.ReferencedSOPClassUID = sop_class
    ref.ReferencedSOPInstanceUID = sop_uid
    return ref


@bp.post("/studies")
@bp.post("/studies/<study>")
@require("pacs.image.store")
def stow(study: str | None = None):
    sess = db_session()
    cfg = config()
    root = storage_root(cfg)
    min_free = load_settings(cfg).min_free_bytes
    stored, failed = [], []
    parts = _parts(request.get_data(), request.headers.get("Content-Type", ""))
    if not parts:
        return _error(400, _("The request holds no instance."))
    for part_type, raw in parts:
        if not part_type.startswith("application/dicom"):
            ref = Dataset()
            ref.FailureReason = store.CANNOT_UNDERSTAND
            failed.append(ref)
            continue
        uids = ("", "")
        result = None
        try:
            header = store.parse(raw)
            uids = (str(header.get("SOPClassUID", "")), str(header.get("SOPInstanceUID", "")))
            if study and str(header.get("StudyInstanceUID", "")) != study:
                raise store.StoreError(store.DATASET_MISMATCH, "instance of another study")
            result = store.store_instance(sess, current_actor(), root, raw, calling_ae="STOW-RS",
                                          min_free_bytes=min_free)
            sess.commit()
            ref = _reference(*uids)
            ref.RetrieveURL = url_for(".retrieve_instance", study=result.instance.series.study.study_uid,
                                      series=result.instance.series.series_uid, instance=uids[1], _external=True)
            stored.append(ref)
        except store.StoreError as exc:
            sess.rollback()
            ref = _reference(*uids)
            ref.FailureReason = exc.status
            failed.append(ref)
        except SQLAlchemyError:
            sess.rollback()
            if result is not None:
                result.discard()
            ref = _reference(*uids)
            ref.FailureReason = PROCESSING_FAILURE
            failed.append(ref)
    answer = Dataset()
    if stored:
        answer.ReferencedSOPSequence = stored
    if failed:
        answer.FailedSOPSequence = failed
    status = 200 if not failed else (202 if stored else 409)
    return Response(json.dumps(answer.to_json_dict(), ensure_ascii=False), status=status,
                    mimetype=DICOM_JSON)


# --- WADO-URI ---------------------------------------------------------------------------------

@bp.get("/wado")
@require("pacs.image.view")
def wado_uri():
    args = request.args
    if args.get("requestType") != "WADO":
        return _error(400, _("requestType must be WADO."))
    if not all(args.get(k) for k in ("studyUID", "seriesUID", "objectUID")):
        return _error(400, _("studyUID, seriesUID and objectUID are required."))
    found = _instances(args["studyUID"], args["seriesUID"], args["objectUID"])[0]
    content_type = args.get("contentType", "image/jpeg")
    if content_type == "application/dicom":
        return Response(_file_chunks(storage_root(config()) / found.path), mimetype="application/dicom")
    if content_type not in ("image/jpeg", "image/png"):
        return _error(406, _("contentType %(type)s is not offered.", type=content_type))
    size = max(args.get("rows", 0, type=int) or 0, args.get("columns", 0, type=int) or 0) or None
    window = None
    if args.get("windowCenter") and args.get("windowWidth"):
        try:
            window = (float(args["windowCenter"]), float(args["windowWidth"]))
        except ValueError:
            return _error(400, _("windowCenter and windowWidth must be numbers."))
    try:
        data, media_type = render.render(storage_root(config()) / found.path,
                                         frame=max(args.get("frameNumber", 1, type=int) - 1, 0), size=size,
                                         fmt="png" if content_type == "image/png" else "jpeg", window=window)
    except render.RenderError as exc:
        return _error(404, str(exc))
    return Response(data, mimetype=media_type)


CORS_METHODS = "GET, HEAD, POST, OPTIONS"
CORS_HEADERS = "Authorization, Accept, Content-Type"
CORS_MAX_AGE = "600"  # seconds a browser may reuse a preflight answer


def _cors_origin() -> str | None:
    return config().setting("VNHIS_PACS_CORS_ORIGIN")


@bp.before_request
def preflight():
    """A browser's CORS preflight (OPTIONS, sent without credentials; core's login gate lets it through to this
    blueprint). Without VNHIS_PACS_CORS_ORIGIN there is no cross-origin access."""
    if request.method != "OPTIONS" or not _cors_origin():
        return None
    response = Response(status=204)
    response.headers["Access-Control-Allow-Methods"] = CORS_METHODS
    response.headers["Access-Control-Max-Age"] = CORS_MAX_AGE
    return response


@bp.after_request
def _cors(response):
    """A viewer served from another origin (VNHIS_PACS_CORS_ORIGIN, e.g. an OHIF host) may read with a token."""
    origin = _cors_origin()
    if origin:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Allow-Headers"] = CORS_HEADERS
        response.vary.add("Origin")
    return response
