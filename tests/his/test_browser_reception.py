"""The reception desk in headless Chromium against `vnhis serve` on PostgreSQL: paste a CCCD QR, get a
number, watch the waiting-room board show it without a reload; the same QR again finds the same patient."""

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import close_all_sessions

from core.db import make_engine, make_session_factory
from his.models.patients import Patient
from tests.browser import log_in, server_env, serving, vnhis
from tests.his.conftest import make_clinic

pytestmark = pytest.mark.browser

PASSWORD = "mat-khau-tiep-don"
QR = "079190001234|025123456|Trần Thị Mai|15081990|Nữ|12 Lê Lợi, Phường Bến Thành, TP Hồ Chí Minh|20052022"


@pytest.fixture
def reception_server(committed_db_url, tmp_path):
    engine = make_engine(committed_db_url)
    with make_session_factory(engine)() as session:
        make_clinic(session)
        session.commit()
    env = server_env(tmp_path, VNHIS_ENV="development", VNHIS_DATABASE_URL=committed_db_url,
                     VNHIS_SECRET_KEY="r" * 48)
    created = vnhis(env, "admin", "create-user", "tiepdon.mai", "--full-name", "Nguyễn Thị Lan",
                    "--role", "receptionist", "--password-stdin", stdin=PASSWORD + "\n")
    assert created.returncode == 0, created.stderr
    yield from serving("serve", env)
    close_all_sessions()
    engine.dispose()


def _patients(url) -> int:
    engine = make_engine(url)
    with make_session_factory(engine)() as session:
        count = session.scalar(select(func.count()).select_from(Patient))
    engine.dispose()
    return count


def test_paste_a_qr_get_a_number_and_the_board_shows_it(reception_server, page, committed_db_url):
    base = reception_server
    board = page.context.new_page()
    board.goto(f"{base}/board/PK101")  # the waiting-room screen: public, numbers only
    loads = []
    board.on("load", lambda _page: loads.append(1))
    assert board.locator("#board-waiting li").count() == 0

    log_in(page, base, "tiepdon.mai", PASSWORD)
    page.goto(f"{base}/reception")
    page.fill("#qr", QR)  # what the desk scanner types
    page.select_option("#scan-point", label="Phòng khám Nội 1")
    page.click("#scan-submit")
    page.wait_for_selector("#ticket-number")
    assert page.locator("#ticket-number").inner_text() == "0001"
    assert "Trần Thị Mai" in page.locator("#ticket-patient").inner_text()
    assert "Đã đăng ký người bệnh mới Trần Thị Mai" in page.locator("main").inner_text()
    patient_link = page.locator("#ticket-patient a").get_attribute("href")

    board.locator("#board-waiting li", has_text="0001").wait_for(timeout=15000)
    assert board.locator("#board-count").inner_text() == "1"
    assert "Trần" not in board.locator("body").inner_text()  # no names on a public screen
    assert loads == []  # it came without a reload

    page.goto(f"{base}/reception")
    page.fill("#qr", QR)
    page.click("#scan-submit")
    page.wait_for_selector("#ticket-number")
    assert page.locator("#ticket-number").inner_text() == "0001"
    assert "Trần Thị Mai đã có số 0001 ở đây hôm nay." in page.locator("main").inner_text()
    assert page.locator("#ticket-patient a").get_attribute("href") == patient_link
    assert _patients(committed_db_url) == 1

    page.goto(f"{base}/reception")
    page.fill("#qr", "079190001234|025123456|Trần Thị Mai|15081991|Nữ|HCM|20052022")
    page.click("#scan-submit")
    assert "sinh năm 1990" in page.locator("#reception-error").inner_text()
    assert _patients(committed_db_url) == 1


def test_the_board_clock_shows_the_hospitals_time_on_a_screen_set_to_another_zone(reception_server, page):
    from datetime import datetime
    from zoneinfo import ZoneInfo

    screen = page.context.browser.new_context(locale="vi-VN", timezone_id="America/New_York").new_page()
    screen.goto(f"{reception_server}/board/PK101")
    screen.wait_for_timeout(2500)  # the clock has ticked and a state answer has come
    hospital = ZoneInfo("Asia/Ho_Chi_Minh")  # the server's VNHIS_TIMEZONE (the default)
    before = datetime.now(hospital)
    shown = screen.locator("#board-clock").inner_text()
    after = datetime.now(hospital)
    assert shown in {f"{before:%H:%M}", f"{after:%H:%M}"}
    assert screen.evaluate("new Date().getTimezoneOffset()") != -420  # the screen's own zone is not the hospital's
    screen.context.close()
