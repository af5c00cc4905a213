"""A result from the analyser to the doctor, in headless Chromium against `vnhis serve` and the MLLP
listener on PostgreSQL: reception by scan, the CBC over MLLP, technical validation, the lab
physician's release, then the encounter page shows the released values and the critical value,
which the doctor acknowledges."""

from __future__ import annotations

import socket

import pytest
from sqlalchemy import select
from sqlalchemy.orm import close_all_sessions

from core import auth
from core.audit import Actor
from lis import hl7, listener, mllp
from lis.models import CriticalAlert
from tests.browser import log_in, server_env, serving
from tests.conftest import PASSWORD
from tests.lis.messages import VALUES, cbc_oru

pytestmark = [pytest.mark.browser, pytest.mark.tubes_at_ward]  # the tubes are received on screen


@pytest.fixture
def lab_server(committed_lab, tmp_path):
    with committed_lab["factory"]() as session:
        for username, role in (("ktv.lan", "lab_technician"), ("bs.hoa", "lab_physician")):
            auth.create_user(session, Actor.system("test"), username=username, full_name=username.title(),
                             password=PASSWORD, roles=[role])
        session.commit()
    mllp_server = listener.make_server(committed_lab["factory"], "127.0.0.1", 0)
    mllp_server.start()
    env = server_env(tmp_path, VNHIS_ENV="development", VNHIS_DATABASE_URL=committed_lab["url"],
                     VNHIS_SECRET_KEY="l" * 48)
    for base in serving("serve", env):
        yield base, mllp_server.server_address[1]
    mllp_server.stop()
    close_all_sessions()


def _analyser_sends(port: int, payload: bytes) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(mllp.frame(payload))
        reader, frames = mllp.FrameReader(), []
        while not frames:
            frames = reader.feed(sock.recv(65536))
    return hl7.parse(frames[0].data).find("MSA").component(1)


def test_an_analyser_result_reaches_the_encounter_page_once_validated(lab_server, page, committed_lab):
    base, port = lab_server
    blood = committed_lab["blood"]
    log_in(page, base, "ktv.lan", PASSWORD)
    page.goto(f"{base}/lis/reception")
    page.fill("#barcode", blood)  # what the scanner types
    page.click("#receive-submit")
    assert blood in page.locator("#reception-done").inner_text()

    values = list(VALUES)
    values[12] = "62"  # haemoglobin 62 g/L: below the critical limit
    assert _analyser_sends(port, cbc_oru(blood, "BR-1", values=values)) == "AA"

    page.goto(f"{base}/lis/?status=resulted")
    page.click(f"#specimen-{blood} a")
    assert page.locator("#result-HGB").get_attribute("data-stage") == "preliminary"
    assert "nguy hiểm" in page.locator("#result-HGB").inner_text()
    page.click("#validate-technical")
    page.wait_for_selector('#result-HGB[data-stage="technically_validated"]')

    physician = page.context.browser.new_context(locale="vi-VN").new_page()
    log_in(physician, base, "bs.hoa", PASSWORD)
    physician.goto(page.url)
    physician.click("#release")
    physician.wait_for_selector('#result-HGB[data-stage="released"]')
    assert "Đã duyệt và trả kết quả vào hồ sơ." in physician.locator("main").inner_text()

    doctor = page.context.browser.new_context(locale="vi-VN").new_page()
    log_in(doctor, base, "bs.lab", PASSWORD)
    doctor.goto(f"{base}/encounters/{committed_lab['encounter_id']}")
    panel = doctor.locator("#lab-results")
    assert panel.locator(f'table[data-barcode="{blood}"] tr[data-code="HGB"]').inner_text().split("\t")[:2] == [
        "Huyết sắc tố", "62"]
    assert panel.locator("tr[data-code]").count() == 25
    assert "Giá trị nguy hiểm cần xác nhận" in panel.inner_text()
    doctor.fill("#lab-results input[name=note]", "Đã báo người bệnh quay lại")
    doctor.click("#lab-results button.acknowledge")
    doctor.wait_for_url(f"{base}/encounters/{committed_lab['encounter_id']}")
    assert "Giá trị nguy hiểm cần xác nhận" not in doctor.locator("#lab-results").inner_text()
    with committed_lab["factory"]() as session:
        alert = session.scalars(select(CriticalAlert)).one()
        assert (alert.acknowledged_by, alert.note) == ("bs.lab", "Đã báo người bệnh quay lại")


def test_results_typed_in_and_the_catalogue_edited_in_the_browser(lab_server, page, committed_lab, tmp_path):
    base, _port = lab_server
    serum = committed_lab["serum"]
    log_in(page, base, "ktv.lan", PASSWORD)
    page.goto(f"{base}/lis/reception")
    page.fill("#barcode", serum)
    page.click("#receive-submit")
    page.goto(f"{base}/lis/?status=received")
    page.click(f"#specimen-{serum} a")
    page.fill('#manual-entry tr[data-code="GLU"] input', "cao")
    page.click("#save-results")
    assert "«cao» không phải là số" in page.locator('#manual-entry tr[data-code="GLU"] .field-error').inner_text()
    page.fill('#manual-entry tr[data-code="GLU"] input', "5,6")
    page.fill('#manual-entry tr[data-code="NA"] input', "131")
    page.click("#save-results")
    page.wait_for_selector('#result-GLU[data-stage="preliminary"]')
    assert "Đã lưu 2 kết quả, chờ duyệt kỹ thuật." in page.locator("main").inner_text()
    assert page.locator("#result-NA").inner_text().split("\t")[1:5] == ["131", "mmol/L", "135-145", "L"]

    admin = page.context.browser.new_context(locale="vi-VN", accept_downloads=True).new_page()
    log_in(admin, base, "bs.hoa", PASSWORD)
    admin.goto(f"{base}/lis/catalogue")
    admin.click("#new-test")
    admin.fill("#code", "HBA1C")
    admin.fill("#name", "HbA1c")
    admin.fill("#unit", "%")
    admin.select_option("#specimen_type", "WB")
    admin.fill('input[name="range-0-low"]', "4.0")
    admin.fill('input[name="range-0-high"]', "3.0")
    admin.click("#save-test")
    assert "giới hạn cao nhỏ hơn giới hạn thấp" in admin.locator('[data-field="range-0-high"]').inner_text()
    admin.fill('input[name="range-0-high"]', "6.0")
    admin.click("#save-test")
    admin.wait_for_url(f"{base}/lis/catalogue/tests/*")
    assert "Đã lưu xét nghiệm." in admin.locator("main").inner_text()
    admin.goto(f"{base}/lis/catalogue")
    assert "Cả hai giới: 4-6" in admin.locator("#test-HBA1C").inner_text()
    with admin.expect_download() as download:
        admin.click("#export")
    saved = tmp_path / "danh-muc.xlsx"
    download.value.save_as(saved)
    admin.set_input_files("#workbook", str(saved))
    admin.click("#import-submit")
    admin.wait_for_url(f"{base}/lis/catalogue")
    assert "Thêm mới 0 xét nghiệm, thay đổi 0, giữ nguyên" in admin.locator("main").inner_text()
