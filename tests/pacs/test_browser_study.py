"""The study page in headless Chromium against `vnhis serve`: the series thumbnails are rendered images,
and scrolling the viewer moves through the instances."""

from __future__ import annotations

import io

import pydicom
import pytest
from pydicom.uid import generate_uid
from sqlalchemy import select
from sqlalchemy.orm import close_all_sessions

from core.audit import Actor
from core.db import make_engine, make_session_factory
from pacs import store
from pacs.models import Study
from tests.browser import log_in, server_env, serving, vnhis
from tests.pacs.conftest import sample_file

pytestmark = pytest.mark.browser

PASSWORD = "mat-khau-bac-si-cdha"


@pytest.fixture
def imaging_server(committed_db_url, tmp_path):
    engine = make_engine(committed_db_url)
    root = tmp_path / "storage" / "dicom"
    with make_session_factory(engine)() as session:
        for name in ("CT_small.dcm", "MR_small.dcm"):
            for number in (1, 2, 3):
                ds = pydicom.dcmread(sample_file(name))
                ds.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.1"
                ds.SOPInstanceUID, ds.InstanceNumber = generate_uid(), number
                buffer = io.BytesIO()
                ds.save_as(buffer, enforce_file_format=True)
                store.store_instance(session, Actor.system("test"), root, buffer.getvalue())
        session.commit()
        study_id = session.scalar(select(Study.id))
    env = server_env(tmp_path, VNHIS_ENV="development", VNHIS_DATABASE_URL=committed_db_url,
                     VNHIS_SECRET_KEY="p" * 48, VNHIS_STORAGE_DIR=str(tmp_path / "storage"), VNHIS_MODULES="his,pacs")
    created = vnhis(env, "admin", "create-user", "bs.cdha", "--full-name", "Phạm Minh Tâm", "--role", "radiologist",
                    "--password-stdin", stdin=PASSWORD + "\n")
    assert created.returncode == 0, created.stderr
    for base in serving("serve", env):
        yield base, study_id
    close_all_sessions()
    engine.dispose()


def test_the_study_page_shows_its_thumbnails(imaging_server, page):
    base, study_id = imaging_server
    log_in(page, base, "bs.cdha", PASSWORD)
    page.goto(f"{base}/pacs/studies/{study_id}")
    thumbs = page.locator("img.thumbnail")
    assert thumbs.count() == 2
    page.wait_for_function("Array.from(document.querySelectorAll('img.thumbnail')).every(i => i.complete)")
    widths = page.eval_on_selector_all("img.thumbnail", "imgs => imgs.map(i => i.naturalWidth)")
    assert all(w > 0 for w in widths), widths

    viewer = page.locator(".pacs-viewer:not([hidden])")
    first = viewer.locator(".pacs-frame").get_attribute("src")
    viewer.locator(".pacs-frame").hover()
    page.mouse.wheel(0, 120)
    assert viewer.locator(".pacs-position").inner_text() == "2 / 3"
    assert viewer.locator(".pacs-frame").get_attribute("src") != first
    page.locator(".pacs-thumb").nth(1).click()
    assert page.locator(".pacs-viewer:not([hidden]) h2").inner_text().startswith("MR")
