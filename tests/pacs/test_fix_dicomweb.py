"""DICOMweb details: CORS preflight without credentials, multi-frame and bulk data in the metadata, an empty
STOW-RS, messages in the user's language; the stored window rendered as stored; a bad station setting."""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.pixels import apply_rescale
from sqlalchemy import func, select

from core.audit import Actor
from core.models import AuditEvent
from pacs import render, store
from pacs.models import Instance
from tests.conftest import make_config
from tests.pacs.conftest import sample_file
from tests.pacs.test_web import _store, root, token  # noqa: F401 (fixtures)

ORIGIN = "https://viewer.benhvien.vn"


def _app(session_factory, tmp_path, **extra):
    from core.app import create_app

    return create_app(make_config(tmp_path, modules=("his", "pacs"), extra=extra), session_factory=session_factory)


@pytest.fixture
def web(session_factory, tmp_path):
    return _app(session_factory, tmp_path, VNHIS_PACS_CORS_ORIGIN=ORIGIN).test_client()


def _base(instance) -> str:
    return f"/dicom-web/studies/{instance.series.study.study_uid}/series/{instance.series.series_uid}/instances/" \
           f"{instance.sop_instance_uid}"


PREFLIGHT = {"Origin": ORIGIN, "Access-Control-Request-Method": "GET",
             "Access-Control-Request-Headers": "authorization"}


def test_a_cors_preflight_is_answered_without_credentials(web, db_session):
    before = db_session.scalar(select(func.count()).select_from(AuditEvent))
    for path in ("/dicom-web/studies", "/dicom-web/studies/1.2.3/series/4.5/instances/6.7/frames/1"):
        answer = web.options(path, headers=PREFLIGHT)
        assert answer.status_code == 204, path
        assert answer.headers["Access-Control-Allow-Origin"] == ORIGIN
        assert answer.headers["Access-Control-Allow-Methods"] == "GET, HEAD, POST, OPTIONS"
        assert answer.headers["Access-Control-Allow-Headers"] == "Authorization, Accept, Content-Type"
        assert answer.headers["Access-Control-Max-Age"] == "600"
        assert answer.get_data() == b""
    assert db_session.scalar(select(func.count()).select_from(AuditEvent)) == before  # nothing read, nothing logged
    refused = web.get("/dicom-web/studies", headers={"Origin": ORIGIN})
    assert refused.status_code == 401 and refused.headers["Access-Control-Allow-Origin"] == ORIGIN


def test_without_a_cors_origin_a_preflight_still_needs_a_login(session_factory, tmp_path):
    web = _app(session_factory, tmp_path).test_client()
    answer = web.options("/dicom-web/studies", headers=PREFLIGHT)
    assert answer.status_code == 401
    assert "Access-Control-Allow-Origin" not in answer.headers and "Access-Control-Max-Age" not in answer.headers


def test_metadata_points_at_every_frame_and_leaves_out_large_values(web, db_session, root, token):  # noqa: F811
    two = _store(db_session, root, "SC_rgb_rle_2frame.dcm")
    large = bytes(range(256)) * 4500  # 1.1 MB, over the inline threshold
    ct = pydicom.dcmread(sample_file("CT_small.dcm"))
    ct.add_new(0x00091010, "LO", "VNHIS TEST")
    ct.add_new(0x00091011, "OB", large)
    buffer = io.BytesIO()
    ct.save_as(buffer, enforce_file_format=True)
    single = store.store_instance(db_session, Actor.system("test"), root, buffer.getvalue(), calling_ae="TEST").instance
    db_session.commit()
    [meta] = web.get(f"{_base(two)}/metadata", headers=token).get_json()
    assert meta["7FE00010"]["BulkDataURI"].endswith(f"{_base(two)}/frames/1,2")
    frames = web.get(meta["7FE00010"]["BulkDataURI"].split("localhost", 1)[1], headers=token)
    assert frames.status_code == 200 and frames.get_data().count(b"Content-Type: application/octet-stream") == 2
    [meta] = web.get(f"{_base(single)}/metadata", headers=token).get_json()
    assert meta["7FE00010"]["BulkDataURI"].endswith(f"{_base(single)}/frames/1")
    assert "00091011" not in meta and meta["00091010"]["Value"] == ["VNHIS TEST"]
    assert all(element.get("BulkDataURI") != "" for element in meta.values())


def test_an_empty_stow_is_refused(web, db_session, token):  # noqa: F811
    response = web.post("/dicom-web/studies", data=b"--XYZ--\r\n",
                        headers={**token, "Content-Type": 'multipart/related; type="application/dicom"; boundary=XYZ'})
    assert response.status_code == 400
    assert response.get_json() == {"error": {"code": "dicomweb", "message": "Yêu cầu không chứa ảnh DICOM nào."}}
    assert db_session.scalar(select(func.count()).select_from(Instance)) == 0


def test_dicomweb_refusals_are_in_vietnamese(web, token):  # noqa: F811
    response = web.get("/dicom-web/studies/1.2.3/metadata", headers={**token, "Accept-Language": "vi"})
    error = response.get_json()["error"]
    assert response.status_code == 404 and error["code"] == "dicomweb"
    assert error["message"] == "Không có ca chụp, loạt ảnh hoặc ảnh này."


def test_the_stored_window_is_rendered_as_stored(tmp_path):
    ds = pydicom.dcmread(sample_file("CT_small.dcm"))  # -896..1167 HU
    ds.WindowCenter, ds.WindowWidth = 100, 4000  # wider than the image: it must stay mid-grey, not be stretched
    path = tmp_path / "windowed.dcm"
    ds.save_as(path, enforce_file_format=True)
    data, _media = render.render(path, fmt="png")
    shown = np.asarray(Image.open(io.BytesIO(data)), dtype=np.float64)
    values = apply_rescale(ds.pixel_array, ds).astype(np.float64)
    expected = np.clip((values - (100 - 0.5)) / (4000 - 1) + 0.5, 0, 1) * 255  # PS3.3 C.11.2.1.2.1 LINEAR
    assert np.abs(shown - expected).max() <= 1
    assert shown.min() > 40 and shown.max() < 200


def test_a_bad_station_setting_stops_the_web_app_at_start(session_factory, tmp_path):
    from core.config import ConfigError

    with pytest.raises(ConfigError, match="^VNHIS_PACS_STATION_AES must be MODALITY=AE pairs like CT=CT01,MR=MR01, "
                                          "got 'CT:CT01'$"):
        _app(session_factory, tmp_path, VNHIS_PACS_STATION_AES="CT:CT01")
