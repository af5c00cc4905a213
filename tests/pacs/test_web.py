"""DICOMweb (QIDO-RS, WADO-RS, STOW-RS, WADO-URI) with an API token, the study page and previews, the
radiology report signed into `pacs.report.signed`, remote nodes in the UI, the his panels, DICOMDIR export."""

from __future__ import annotations

import io
import json
import re
from email import message_from_bytes

import pydicom
import pytest
from PIL import Image
from pydicom.fileset import FileSet
from sqlalchemy import func, select

from core import auth, events
from core.audit import Actor
from core.models import AuditEvent
from his import demo_catalog, encounters, orders, patients
from his.models.orders import Order
from pacs import export, store
from pacs.models import Instance, RemoteAE, Report, Study
from tests.conftest import csrf_token, login, make_config
from tests.his.conftest import DESK, TODAY, make_clinic
from tests.pacs.conftest import sample_file

SIGNED: list[dict] = []


@events.subscribe("pacs.report.signed", inline=True)
def _on_signed(session, payload):
    SIGNED.append(payload)


@pytest.fixture
def pacs_app(session_factory, tmp_path):
    from core.app import create_app

    return create_app(make_config(tmp_path, modules=("his", "pacs")), session_factory=session_factory)


@pytest.fixture
def web(pacs_app):
    return pacs_app.test_client()


@pytest.fixture
def root(tmp_path):
    return tmp_path / "storage" / "dicom"


def _store(db_session, root, name, **changes):
    path = sample_file(name)
    raw = path.read_bytes()
    if changes:
        ds = pydicom.dcmread(path)
        for keyword, value in changes.items():
            setattr(ds, keyword, value)
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        raw = buffer.getvalue()
    stored = store.store_instance(db_session, Actor.system("test"), root, raw, calling_ae="TEST")
    db_session.commit()
    return stored.instance


@pytest.fixture
def token(db_session, make_user):
    user = make_user("viewer.bot", "doctor", "radiographer", machine=True)
    secret, _record = auth.create_token(db_session, Actor.system("test"), user, "viewer")
    db_session.commit()
    return {"Authorization": f"Bearer {secret}"}


def _multipart(response) -> list[tuple[str, bytes]]:
    head = f"Content-Type: {response.headers['Content-Type']}\r\n\r\n".encode()
    message = message_from_bytes(head + response.get_data())
    return [(part.get_content_type(), part.get_payload(decode=True)) for part in message.get_payload()]


def test_qido_finds_studies_series_and_instances(web, db_session, root, token):
    ct = _store(db_session, root, "CT_small.dcm")
    _store(db_session, root, "MR_small.dcm")
    # Without a token: 401 for any DICOMweb client, never the login page.
    refused = web.get("/dicom-web/studies", headers={"Accept": "multipart/related; type=application/dicom"})
    assert refused.status_code == 401
    found = web.get("/dicom-web/studies?PatientID=1CT1", headers=token)
    assert found.status_code == 200 and found.mimetype == "application/dicom+json"
    [study] = found.get_json()
    assert study["0020000D"]["Value"] == [ct.series.study.study_uid]
    assert study["00080061"]["Value"] == ["CT"] and study["00201208"]["Value"] == [1]
    assert study["00081190"]["Value"][0].endswith(f"/dicom-web/studies/{ct.series.study.study_uid}")
    assert len(web.get("/dicom-web/studies?PatientName=*", headers=token).get_json()) == 2
    assert web.get("/dicom-web/studies?StudyDate=19000101-19001231", headers=token).status_code == 204
    assert web.get("/dicom-web/studies?NotAnAttribute=1", headers=token).status_code == 400
    series = web.get(f"/dicom-web/studies/{ct.series.study.study_uid}/series", headers=token).get_json()
    assert [s["0020000E"]["Value"][0] for s in series] == [ct.series.series_uid]
    instances = web.get(f"/dicom-web/studies/{ct.series.study.study_uid}/series/{ct.series.series_uid}/instances",
                        headers=token).get_json()
    assert [i["00080018"]["Value"][0] for i in instances] == [ct.sop_instance_uid]


def test_wado_rs_instances_metadata_frames_and_rendered(web, db_session, root, token):
    ct = _store(db_session, root, "CT_small.dcm")
    base = f"/dicom-web/studies/{ct.series.study.study_uid}/series/{ct.series.series_uid}/instances/" \
           f"{ct.sop_instance_uid}"
    [(kind, body)] = _multipart(web.get(base, headers=token))
    assert (kind, body) == ("application/dicom", sample_file("CT_small.dcm").read_bytes())
    [meta] = web.get(f"{base}/metadata", headers=token).get_json()
    assert meta["00100010"]["Value"] == [{"Alphabetic": "CompressedSamples^CT1"}]
    assert meta["7FE00010"]["BulkDataURI"].endswith(f"{base}/frames/1")
    [(kind, frame)] = _multipart(web.get(f"{base}/frames/1", headers=token))
    assert (kind, frame) == ("application/octet-stream", pydicom.dcmread(sample_file("CT_small.dcm")).PixelData)
    assert web.get(f"{base}/frames/2", headers=token).status_code == 404
    rendered = web.get(f"{base}/rendered", headers=token)
    assert rendered.mimetype == "image/jpeg" and Image.open(io.BytesIO(rendered.get_data())).size == (128, 128)
    png = web.get(f"{base}/thumbnail", headers={**token, "Accept": "image/png"})
    assert png.mimetype == "image/png"
    assert web.get(f"/dicom-web/studies/{ct.series.study.study_uid}/metadata", headers=token).status_code == 200
    assert web.get("/dicom-web/studies/1.2.3/metadata", headers=token).status_code == 404


def test_compressed_frames_as_stored_or_decoded(web, db_session, root, token):
    j2k = _store(db_session, root, "JPEG2000.dcm")
    base = f"/dicom-web/studies/{j2k.series.study.study_uid}/series/{j2k.series.series_uid}/instances/" \
           f"{j2k.sop_instance_uid}/frames/1"
    source = pydicom.dcmread(sample_file("JPEG2000.dcm"))
    [(_kind, as_stored)] = _multipart(web.get(base, headers={
        **token, "Accept": 'multipart/related; type="application/octet-stream"; transfer-syntax=*'}))
    assert as_stored.rstrip(b"\x00") == next(pydicom.encaps.generate_frames(source.PixelData,
                                                                              number_of_frames=1)).rstrip(b"\x00")
    [(_kind, native)] = _multipart(web.get(base, headers=token))
    assert native == source.pixel_array.tobytes()


def _stow_body(parts: list[bytes], boundary: str = "XYZ") -> bytes:
    body = b"".join(b"--" + boundary.encode() + b"\r\nContent-Type: application/dicom\r\n\r\n" + p + b"\r\n"
                    for p in parts)
    return body + b"--" + boundary.encode() + b"--\r\n"


def test_stow_rs_stores_good_instances_and_reports_bad_ones(web, db_session, token):
    broken = pydicom.dcmread(sample_file("MR_small.dcm"))
    del broken.StudyInstanceUID
    buffer = io.BytesIO()
    broken.save_as(buffer, enforce_file_format=True)
    response = web.post("/dicom-web/studies", data=_stow_body([sample_file("CT_small.dcm").read_bytes(),
                                                               buffer.getvalue()]),
                        headers={**token, "Content-Type": 'multipart/related; type="application/dicom"; boundary=XYZ'})
    assert response.status_code == 202
    answer = response.get_json()
    [ok] = answer["00081199"]["Value"]
    assert ok["00081155"]["Value"] == [pydicom.dcmread(sample_file("CT_small.dcm")).SOPInstanceUID]
    [bad] = answer["00081198"]["Value"]
    assert bad["00081197"]["Value"] == [0xA900]
    assert db_session.scalar(select(func.count()).select_from(Instance)) == 1
    again = web.post("/dicom-web/studies", data=_stow_body([sample_file("CT_small.dcm").read_bytes()]),
                     headers={**token, "Content-Type": 'multipart/related; type="application/dicom"; boundary=XYZ'})
    assert again.status_code == 200 and db_session.scalar(select(func.count()).select_from(Instance)) == 1
    wrong = web.post("/dicom-web/studies", data=b"x", headers={**token, "Content-Type": "application/json"})
    assert wrong.status_code == 415


def test_wado_uri(web, db_session, root, token):
    ct = _store(db_session, root, "CT_small.dcm")
    query = f"requestType=WADO&studyUID={ct.series.study.study_uid}&seriesUID={ct.series.series_uid}" \
            f"&objectUID={ct.sop_instance_uid}"
    dicom = web.get(f"/dicom-web/wado?{query}&contentType=application/dicom", headers=token)
    assert dicom.get_data() == sample_file("CT_small.dcm").read_bytes()
    jpeg = web.get(f"/dicom-web/wado?{query}&windowCenter=40&windowWidth=400&rows=64", headers=token)
    assert jpeg.mimetype == "image/jpeg" and Image.open(io.BytesIO(jpeg.get_data())).size == (64, 64)
    assert web.get(f"/dicom-web/wado?{query}&contentType=text/html", headers=token).status_code == 406
    assert web.get("/dicom-web/wado?requestType=WADO", headers=token).status_code == 400


@pytest.fixture
def ordered_study(db_session, root):
    """A CT order of a his patient and its image, sent with the order's accession number."""
    clinic = make_clinic(db_session)
    demo_catalog.seed(db_session, Actor.system("test"))
    patient = patients.register(db_session, DESK, {"full_name": "Lê Văn Đức", "birth_year": 1970, "sex": "male"},
                                today=TODAY, confirm_possible_duplicate=True).patient
    encounter = encounters.open_encounter(db_session, DESK, patient, kind="outpatient", day=TODAY, room=clinic["room"])
    order = orders.place_order(db_session, Actor(id=None, name="bs"), encounter, "imaging", [{"code": "CDHA.CTSN"}],
                               on=TODAY)
    db_session.commit()
    from pacs.models import WorklistItem

    item = db_session.scalar(select(WorklistItem).where(WorklistItem.order_id == order.id))
    instance = _store(db_session, root, "CT_small.dcm", AccessionNumber=item.accession_number,
                      StudyInstanceUID=item.study_uid, PatientID=patient.code, PatientName="Lê^Văn Đức",
                      SpecificCharacterSet="ISO_IR 192")
    return {"order": order, "patient": patient, "encounter": encounter, "study": instance.series.study,
            "item": item}


def test_the_study_page_shows_thumbnails_and_the_report_is_signed(web, db_session, make_user, ordered_study):
    SIGNED.clear()
    make_user("bs.cdha", "radiologist")
    login(web, "bs.cdha")
    study = ordered_study["study"]
    assert (study.patient_id, study.order_id) == (ordered_study["patient"].id, ordered_study["order"].id)
    listing = web.get("/pacs/").get_data(as_text=True)
    assert "Lê Văn Đức" in listing
    page = web.get(f"/pacs/studies/{study.id}").get_data(as_text=True)
    thumbs = re.findall(r'class="thumbnail" src="([^"]+)"', page)
    assert len(thumbs) == 1
    image = web.get(thumbs[0])
    assert image.mimetype == "image/jpeg" and Image.open(io.BytesIO(image.get_data())).size == (128, 128)
    assert web.get(thumbs[0].replace("size=160", "preset=brain")).status_code == 200

    token = csrf_token(web, f"/pacs/studies/{study.id}")
    refused = web.post(f"/pacs/studies/{study.id}/report", data={"csrf_token": token, "findings": "Bình thường",
                                                               "conclusion": "", "action": "sign"})
    assert refused.status_code == 302 and SIGNED == []
    assert db_session.scalar(select(Report.status)) is None
    web.post(f"/pacs/studies/{study.id}/report", data={"csrf_token": token, "findings": "Không thấy tổn thương.",
                                                      "conclusion": "CT sọ não bình thường.", "action": "sign"})
    report = db_session.scalar(select(Report))
    assert report.status == "signed"
    db_session.expire_all()
    assert db_session.get(Order, ordered_study["order"].id).status == "completed"
    [payload] = SIGNED
    assert payload == {"encounter_id": ordered_study["encounter"].id, "patient_id": ordered_study["patient"].id,
                       "order_id": ordered_study["order"].id, "report_id": report.id,
                       "accession_number": ordered_study["item"].accession_number, "study_uid": study.study_uid,
                       "modality": "CT", "procedure": ordered_study["item"].procedure_name,
                       "findings": "Không thấy tổn thương.", "conclusion": "CT sọ não bình thường.",
                       "signed_by": "Bs.Cdha", "signed_by_id": report.signed_by,
                       "signed_at": report.signed_at.isoformat()}
    again = web.post(f"/pacs/studies/{study.id}/report", data={"csrf_token": token, "findings": "x",
                                                             "conclusion": "y", "action": "save"})
    assert again.status_code == 302 and db_session.scalar(select(Report.findings)) == "Không thấy tổn thương."


def test_a_doctor_cannot_sign_and_an_anonymous_user_sees_nothing(web, db_session, make_user, ordered_study):
    study = ordered_study["study"]
    assert web.get(f"/pacs/studies/{study.id}").status_code == 302  # to the login page
    make_user("bs.noi", "doctor")
    login(web, "bs.noi")
    token = csrf_token(web, f"/pacs/studies/{study.id}")
    denied = web.post(f"/pacs/studies/{study.id}/report", data={"csrf_token": token, "findings": "a",
                                                              "conclusion": "b", "action": "sign"})
    assert denied.status_code == 403
    assert db_session.scalar(select(func.count()).select_from(Report)) == 0
    assert db_session.scalar(select(func.count()).select_from(AuditEvent).where(
        AuditEvent.action == "permission.denied")) == 1


def test_panels_list_the_patients_studies(web, make_user, ordered_study):
    make_user("bs.kham", "doctor")
    login(web, "bs.kham")
    encounter_page = web.get(f"/encounters/{ordered_study['encounter'].id}").get_data(as_text=True)
    assert 'id="pacs-studies"' in encounter_page and f"/pacs/studies/{ordered_study['study'].id}" in encounter_page
    patient_page = web.get(f"/patients/{ordered_study['patient'].id}").get_data(as_text=True)
    assert 'id="pacs-studies"' in patient_page and f"/pacs/studies/{ordered_study['study'].id}" in patient_page


def test_remote_nodes_in_the_ui(web, db_session, make_user):
    make_user("quantri", "admin")
    login(web, "quantri")
    token = csrf_token(web, "/pacs/remotes")
    bad = web.post("/pacs/remotes", data={"csrf_token": token, "ae_title": "CT1", "host": "10.0.0.5", "port": "0"})
    assert bad.status_code == 422 and db_session.scalar(select(func.count()).select_from(RemoteAE)) == 0
    web.post("/pacs/remotes", data={"csrf_token": token, "ae_title": "CT1", "host": "10.0.0.5", "port": "104"})
    assert [(r.ae_title, r.host, r.port) for r in db_session.scalars(select(RemoteAE))] == [("CT1", "10.0.0.5", 104)]
    duplicate = web.post("/pacs/remotes", data={"csrf_token": token, "ae_title": "CT1", "host": "h", "port": "1"})
    assert duplicate.status_code == 422 and db_session.scalar(select(func.count()).select_from(RemoteAE)) == 1


def test_export_a_study_with_a_dicomdir(db_session, root, tmp_path):
    ct = _store(db_session, root, "CT_small.dcm")
    _store(db_session, root, "CT_small.dcm", SOPInstanceUID=pydicom.uid.generate_uid(), InstanceNumber=2)
    target = tmp_path / "usb"
    count = export.export_study(db_session, Actor.system("test"), root, ct.series.study.study_uid, target)
    assert count == 2
    fileset = FileSet(target / "DICOMDIR")
    assert len(fileset) == 2
    assert {str(i.SOPInstanceUID) for i in fileset} == {i.sop_instance_uid for i in db_session.scalars(
        select(Instance))}
    with pytest.raises(export.ExportError, match="is not empty"):
        export.export_study(db_session, Actor.system("test"), root, ct.series.study.study_uid, target)
    with pytest.raises(export.ExportError, match="no study 1.2.3"):
        export.export_study(db_session, Actor.system("test"), root, "1.2.3", tmp_path / "other")


def test_study_json_is_utf8(db_session, root, web, token):
    _store(db_session, root, "CT_small.dcm", PatientName="Nguyễn^Thị Hương", SpecificCharacterSet="ISO_IR 192")
    found = web.get("/dicom-web/studies?PatientName=nguyen*", headers=token)
    assert json.loads(found.get_data(as_text=True))[0]["00100010"]["Value"] == [{"Alphabetic": "Nguyễn^Thị Hương"}]
    assert db_session.scalar(select(Study.patient_name_folded)) == "nguyen^thi huong"


def test_the_study_downloads_as_a_zip_with_its_dicomdir(web, make_user, ordered_study, tmp_path):
    import zipfile

    make_user("bs.xem", "doctor")
    login(web, "bs.xem")
    response = web.get(f"/pacs/studies/{ordered_study['study'].id}/export.zip")
    assert response.mimetype == "application/zip"
    with zipfile.ZipFile(io.BytesIO(response.get_data())) as archive:
        archive.extractall(tmp_path / "unzipped")
    fileset = FileSet(tmp_path / "unzipped" / "DICOMDIR")
    assert [str(i.SOPInstanceUID) for i in fileset] == [ordered_study["study"].series[0].instances[0].sop_instance_uid]


def test_screens_show_dicom_dates_as_dd_mm_yyyy_and_translated_presets(web, make_user, ordered_study):
    make_user("bs.xem", "radiologist")
    login(web, "bs.xem")
    study = ordered_study["study"]
    assert (study.study_date, study.study_time) == ("20040119", "072730")  # stored raw
    listing = web.get("/pacs/").get_data(as_text=True)
    page = web.get(f"/pacs/studies/{study.id}").get_data(as_text=True)
    encounter_page = web.get(f"/encounters/{ordered_study['encounter'].id}").get_data(as_text=True)
    for html in (listing, page, encounter_page):
        assert "19/01/2004" in html and "20040119" not in html
    assert "19/01/2004 07:27" in page
    assert '<option value="brain">Não</option>' in page and '<option value="subdural">Máu tụ dưới màng cứng</option>' \
        in page and ">bone<" not in page


def test_dicom_dates_and_times_for_display():
    from pacs.display import PRESET_LABELS, dicom_date, dicom_time
    from pacs.render import PRESETS

    assert [dicom_date(v) for v in ("20261202", "", None, "2026", "20261302")] == [
        "02/12/2026", "", "", "2026", "20261302"]  # not a date: shown as stored
    assert [dicom_time(v) for v in ("093012.5", "0930", "09", "09:30:12", "", "99", "abc")] == [
        "09:30", "09:30", "09:00", "09:30", "", "99", "abc"]
    assert set(PRESET_LABELS) == set(PRESETS)
