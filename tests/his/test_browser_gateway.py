"""The BHYT card check at the desk in headless Chromium, against `vnhis serve` on PostgreSQL and the gateway
simulator: the verified benefit level shows on the page and the encounter carries it; with the portal down
the page says "not verified", and the retry job's later answer replaces it without a reload."""

import pytest
from sqlalchemy import select
from sqlalchemy.orm import close_all_sessions

from core.db import make_engine, make_session_factory
from his.gateway.simulator import Simulator
from his.models.encounters import Encounter
from his.models.gateway import CardCheck
from tests.browser import log_in, server_env, serving, vnhis
from tests.his.conftest import make_clinic

pytestmark = pytest.mark.browser

PASSWORD = "mat-khau-tiep-don"
GATEWAY_USER, GATEWAY_PASSWORD = "bv01001.tiepdon", "mat-khau-cong-bhyt"
AN = "001090123456|012345678|Nguyễn Văn An|01011990|Nam|Số 1 Tràng Tiền, Hoàn Kiếm, Hà Nội|15042021"
MAI = "079190001234|025123456|Trần Thị Mai|15081990|Nữ|12 Lê Lợi, Phường Bến Thành, TP Hồ Chí Minh|20052022"


@pytest.fixture
def sim():
    with Simulator(users={GATEWAY_USER: GATEWAY_PASSWORD}, slow_seconds=5) as server:
        yield server


@pytest.fixture
def desk_server(committed_db_url, tmp_path, sim):
    engine = make_engine(committed_db_url)
    with make_session_factory(engine)() as session:
        make_clinic(session)
        session.commit()
    env = server_env(tmp_path, VNHIS_ENV="development", VNHIS_DATABASE_URL=committed_db_url,
                     VNHIS_SECRET_KEY="g" * 48, VNHIS_MODULES="his", VNHIS_BHYT_GATEWAY_URL=sim.url,
                     VNHIS_BHYT_GATEWAY_USER=GATEWAY_USER, VNHIS_BHYT_GATEWAY_PASSWORD=GATEWAY_PASSWORD,
                     VNHIS_BHYT_GATEWAY_TIMEOUT="2", VNHIS_BHYT_GATEWAY_RETRIES="0")
    created = vnhis(env, "admin", "create-user", "tiepdon.lan", "--full-name", "Nguyễn Thị Lan",
                    "--role", "receptionist", "--password-stdin", stdin=PASSWORD + "\n")
    assert created.returncode == 0, created.stderr
    yield from serving("serve", env)
    close_all_sessions()
    engine.dispose()


def _check(url, number):
    engine = make_engine(url)
    with make_session_factory(engine)() as session:
        check = session.scalar(select(CardCheck).where(CardCheck.query_number == number))
        visit = session.get(Encounter, check.encounter_id)
        facts = (check.status, check.benefit_level, visit.insured, visit.bhyt_card_id is not None)
    engine.dispose()
    return facts


def test_the_desk_sees_the_benefit_level_and_a_late_answer_replaces_not_verified(desk_server, page, sim,
                                                                                committed_db_url):
    base = desk_server
    log_in(page, base, "tiepdon.lan", PASSWORD)
    page.goto(f"{base}/reception")
    page.fill("#qr", AN)
    page.fill("#scan-bhyt-number", "DN4010123456789")
    page.select_option("#scan-point", label="Phòng khám Nội 1")
    page.click("#scan-submit")
    page.wait_for_selector("#card-check")
    assert page.locator("#card-check-status").inner_text() == "Đã xác minh"
    assert page.locator("#card-check-level").inner_text() == "80 %"
    assert page.locator("#card-check-facility").inner_text() == "01001"
    assert _check(committed_db_url, "DN4010123456789") == ("verified", "80", True, True)
    page.click("#ticket-patient a")
    page.locator("a[href^='/encounters/']").first.click()  # the visit, from the patient page
    assert page.locator("#encounter-card-check #card-check-level").inner_text() == "80 %"

    sim.configure(mode="down")
    page.goto(f"{base}/reception")
    page.fill("#qr", MAI)  # no number typed: looked up by the CCCD
    page.select_option("#scan-point", label="Phòng khám Nội 1")
    page.click("#scan-submit")
    page.wait_for_selector("#card-check")
    assert page.locator("#ticket-number").inner_text() == "0002"  # reception went on
    assert page.locator("#card-check-status").inner_text() == "Chưa xác minh"
    assert "Cổng BHYT trả lời lỗi" in page.locator("#card-check-message").inner_text()
    assert _check(committed_db_url, "079190001234")[0] == "pending"
    page.wait_for_load_state("load")  # on a busy machine the page's own load may come after the box is there
    loads = []
    page.on("load", lambda _page: loads.append(1))

    sim.configure(mode="normal")  # the retry job's next attempt gets an answer
    page.locator("#card-check-status", has_text="Đã xác minh").wait_for(timeout=60000)
    assert page.locator("#card-check-level").inner_text() == "95 %"
    assert loads == []  # it came without a reload
    assert _check(committed_db_url, "079190001234") == ("verified", "95", True, True)
