"""In headless Chromium against `vnhis serve` on PostgreSQL: a doctor opens an encounter, starts its record,
fills a treatment sheet, signs it, sees it signed (and the signature valid), and an edit makes a new
unsigned version."""

import pytest
from sqlalchemy.orm import close_all_sessions

from core.db import make_engine, make_session_factory
from ehr.keystore import SoftwareKeyStore
from tests.browser import log_in, server_env, serving
from tests.ehr.conftest import PASSPHRASE, PASSWORD, make_certificates, make_hospital

pytestmark = pytest.mark.browser


@pytest.fixture
def ehr_server(committed_db_url, tmp_path):
    engine = make_engine(committed_db_url)
    with make_session_factory(engine)() as session:
        hospital = make_hospital(session)
        make_certificates(session, SoftwareKeyStore(PASSPHRASE), hospital)
        session.commit()
        encounter_id = hospital.encounter.id
    close_all_sessions()
    engine.dispose()
    env = server_env(tmp_path, VNHIS_ENV="development", VNHIS_DATABASE_URL=committed_db_url,
                     VNHIS_SECRET_KEY="b" * 48, VNHIS_MODULES="his,ehr", VNHIS_EHR_KEY_PASSPHRASE=PASSPHRASE)
    for base in serving("serve", env):
        yield base, encounter_id


def test_a_doctor_fills_signs_and_amends_a_treatment_sheet(ehr_server, page):
    base, encounter_id = ehr_server
    log_in(page, base, "bs.hung", PASSWORD)
    page.goto(f"{base}/encounters/{encounter_id}")
    page.click("#ehr-record-link")
    page.click("#open-record")
    page.wait_for_selector("#documents")
    page.select_option("#new-form", "36/BV2")
    page.click("#new-document")
    page.fill("#f-progress", "Sốt giảm, còn ho")
    page.fill("#f-orders", "Ceftriaxon 1 g × 2 lọ")
    page.fill("#f-pulse", "88")
    page.fill("#f-temperature", "37,8")
    page.click("#save-document")
    assert page.locator("#version-status").inner_text() == "Chưa ký"
    page.click("#sign-document")
    assert page.locator("#version-status").inner_text() == "Đã ký"
    assert page.locator("#signatures .signature .verdict").inner_text().startswith("Chữ ký hợp lệ")
    assert "Trần Văn Hùng (BSCKI)" in page.locator("#signatures").inner_text()
    page.click("#edit-document")
    page.fill("#f-orders", "Ceftriaxon 1 g × 2 lọ; Paracetamol 500 mg khi sốt")
    page.fill("#amend_reason", "Bổ sung thuốc hạ sốt")
    page.click("#save-document")
    assert page.locator("#version-number").inner_text() == "2"
    assert page.locator("#version-status").inner_text() == "Chưa ký"
    assert page.locator("#sign-document").is_visible()
    page.click("#back-to-record")
    row = page.locator("#documents tbody tr").first
    assert row.locator(".doc-status").inner_text() == "Chưa ký" and "Tờ điều trị" in row.inner_text()
