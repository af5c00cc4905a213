"""Card lookup at the reception desk over HTTP against the gateway simulator: each seeded case, bad input,
a slow or absent portal (reception goes on, the retry job fills the result in), emergencies, the lists."""

import re
from datetime import date, timedelta

import pytest
from sqlalchemy import func, select

from core import queue
from core.app import create_app
from core.models import AuditEvent, Job
from his import patients
from his.gateway import cards
from his.gateway.client import GatewayClient, GatewaySettings
from his.gateway.simulator import Simulator
from his.models.encounters import Encounter
from his.models.gateway import CardCheck, GatewayExchange
from his.models.patients import BhytCard, Patient
from his.models.tickets import Ticket
from tests.conftest import csrf_token, login, make_config
from tests.his.conftest import DESK

USER, SECRET = "bv01001.tiepdon", "mat-khau-cong-bhyt"
AN = "001090123456|012345678|Nguyễn Văn An|01011990|Nam|Số 1 Tràng Tiền, Hoàn Kiếm, Hà Nội|15042021"
MAI = "079190001234|025123456|Trần Thị Mai|15081990|Nữ|12 Lê Lợi, Phường Bến Thành, TP Hồ Chí Minh|20052022"
CU = "001040123456||Lê Văn Cụ|01011940|Nam|HN|15042021"
HOA = "001185000003||Phạm Thị Hoa|20051985|Nữ|HN|15042021"
BINH = "001090123456|012345678|Nguyễn Văn Bình|01011990|Nam|HN|15042021"  # An's CCCD, another name


@pytest.fixture
def sim():
    with Simulator(users={USER: SECRET}, slow_seconds=3) as server:
        yield server


@pytest.fixture
def app(session_factory, tmp_path, sim, monkeypatch):
    extra = {"VNHIS_BHYT_GATEWAY_URL": sim.url, "VNHIS_BHYT_GATEWAY_USER": USER,
             "VNHIS_BHYT_GATEWAY_PASSWORD": SECRET, "VNHIS_BHYT_GATEWAY_TIMEOUT": "0.5",
             "VNHIS_BHYT_GATEWAY_RETRIES": "0"}
    for name, value in extra.items():
        monkeypatch.setenv(name, value)  # the retry job reads the environment, as in a worker
    # Only his: the gateway is his's; the sibling modules are not needed here.
    return create_app(make_config(tmp_path, modules=("his",), extra=extra), session_factory=session_factory)


@pytest.fixture
def desk(client, make_user, clinic):
    make_user("tiepdon.bhyt", "receptionist")
    login(client, "tiepdon.bhyt")
    return client


def _scan(client, point, qr, **fields):
    data = {"qr": qr, "service_point_id": point.id, "csrf_token": csrf_token(client, "/reception"), **fields}
    return client.post("/reception/scan", data=data)


def _desk_page(client, response) -> str:
    assert response.status_code == 302, response.get_data(as_text=True)[:500]
    return client.get(response.headers["Location"]).get_data(as_text=True)


def _box(html) -> str:
    match = re.search(r'<div class="card-check" id="card-check".*?\n</div>', html, re.S)
    assert match, "no card check box on the page"
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", match.group(0)))


def _only_check(db_session) -> CardCheck:
    (check,) = db_session.scalars(select(CardCheck)).all()
    return check


def _count(db_session, model) -> int:
    return db_session.scalar(select(func.count()).select_from(model))


def test_a_valid_card_is_verified_shown_and_kept_with_the_encounter(desk, clinic, db_session):
    html = _desk_page(desk, _scan(desk, clinic["point"], AN, bhyt_number="DN4010123456789", bhyt="1"))
    box = _box(html)
    assert "Đã xác minh" in box and "Thẻ có giá trị vào ngày khám." in box
    assert 'id="card-check-level">80 %<' in html and "DN4010123456789" in box and "01001" in box
    check = _only_check(db_session)
    assert (check.status, check.result_code, check.benefit_level, check.query_kind) == ("verified", "000", "80", "card")
    visit = db_session.get(Encounter, check.encounter_id)
    card = db_session.get(BhytCard, visit.bhyt_card_id)
    assert visit.insured and visit.bhyt_route == "correct"
    assert (card.number, card.source, card.benefit_level, card.registered_facility) == \
        ("DN4010123456789", "gateway", "80", "01001")
    assert card.verified_at is not None and card.five_years_since.year == 2021
    assert db_session.get(GatewayExchange, check.exchange_id).subject == f"card_check:{check.id}"
    actions = set(db_session.scalars(select(AuditEvent.action)))
    assert {"bhyt.card_check.request", "bhyt.card_check.result", "patient.card_add"} <= actions
    encounter_page = desk.get(f"/encounters/{visit.id}").get_data(as_text=True)
    assert 'id="encounter-card-check"' in encounter_page and 'id="card-check-level">80 %<' in encounter_page
    patient_page = desk.get(f"/patients/{check.patient_id}").get_data(as_text=True)
    assert 'id="patient-card-checks"' in patient_page and patient_page.count("Đã xác minh") == 2  # card + check


def test_without_a_number_the_card_is_found_by_the_cccd(desk, clinic, db_session):
    html = _desk_page(desk, _scan(desk, clinic["point"], MAI, bhyt="1"))
    assert "Đã xác minh" in _box(html) and 'id="card-check-level">95 %<' in html
    check = _only_check(db_session)
    assert (check.query_kind, check.query_number, check.card_number) == ("national_id", "079190001234", "7901234567")


def test_a_malformed_card_number_is_refused_before_anything_is_saved(desk, clinic, db_session):
    response = _scan(desk, clinic["point"], AN, bhyt_number="DN40101234", bhyt="1")
    assert response.status_code == 422
    assert ("Mã thẻ BHYT có 15 ký tự (2 chữ cái, 13 chữ số) hoặc 10 chữ số; «DN40101234» không đúng dạng nào."
            in response.get_data(as_text=True))
    for model in (Patient, Ticket, Encounter, CardCheck, GatewayExchange):
        assert _count(db_session, model) == 0
    recorded = db_session.scalars(select(AuditEvent).where(AuditEvent.action == "bhyt.card_check.bad_input")).all()
    assert [e.detail["code"] for e in recorded] == ["bhyt_format"]


def test_an_emergency_with_a_malformed_number_is_seen_all_the_same(desk, clinic, db_session):
    html = _desk_page(desk, _scan(desk, clinic["point"], AN, bhyt_number="DN40101234", bhyt="1", emergency="1"))
    assert 'id="ticket-number">' in html
    assert "Chưa tra cứu thẻ BHYT: Mã thẻ BHYT có 15 ký tự" in html
    assert _count(db_session, Ticket) == 1 and _count(db_session, CardCheck) == 0
    assert db_session.scalar(select(AuditEvent.detail).where(AuditEvent.action == "bhyt.card_check.bad_input"))


def test_an_emergency_is_checked_in_the_background(desk, clinic, db_session, session_factory, sim):
    html = _desk_page(desk, _scan(desk, clinic["point"], AN, bhyt="1", emergency="1"))
    assert "Chưa xác minh" in _box(html) and "Cấp cứu: thẻ được tra cứu ngầm" in _box(html)
    assert sim.request_counts().get("card_lookup") is None  # nobody waited for the portal
    assert queue.run_due(session_factory) == 1
    db_session.expire_all()
    check = _only_check(db_session)
    assert check.status == "verified"
    assert db_session.get(Encounter, check.encounter_id).bhyt_route == "emergency"


def test_an_expired_card_is_refused_and_the_visit_not_insured(desk, clinic, db_session):
    html = _desk_page(desk, _scan(desk, clinic["point"], CU, bhyt_number="HT3010000000002"))
    box = _box(html)
    assert "Thẻ không dùng được" in box and "Cổng báo thẻ đã hết hạn sử dụng." in box
    check = _only_check(db_session)
    assert (check.status, check.problem, check.result_code) == ("refused", "expired", "010")
    visit = db_session.get(Encounter, check.encounter_id)
    assert not visit.insured and visit.bhyt_card_id is None
    assert _count(db_session, Ticket) == 1  # the patient is still seen (paying)


def test_a_wrong_name_then_the_corrected_spelling(desk, clinic, db_session):
    html = _desk_page(desk, _scan(desk, clinic["point"], BINH, bhyt="1"))
    assert ("Họ tên không khớp với thẻ trên cổng (đúng chữ cái đầu): kiểm tra lại cách viết so với thẻ."
            in _box(html))
    first = _only_check(db_session)
    assert (first.status, first.result_code) == ("refused", "061")
    ticket_id = db_session.scalar(select(Ticket.id))
    token = csrf_token(desk, f"/reception?ticket={ticket_id}")
    again = desk.post(f"/reception/card-check/{ticket_id}", data={
        "csrf_token": token, "bhyt_number": "DN4010123456789", "full_name": "Nguyễn Văn An", "birth": "01/01/1990"})
    html = _desk_page(desk, again)
    assert "Đã xác minh" in _box(html)
    assert "Cổng ghi họ tên «Nguyễn Văn An»: kiểm tra cách viết trên hồ sơ." in _box(html)
    db_session.expire_all()
    checks = db_session.scalars(select(CardCheck).order_by(CardCheck.id)).all()
    assert [c.status for c in checks] == ["refused", "verified"] and checks[0].superseded_at is not None
    assert db_session.get(Encounter, checks[1].encounter_id).insured


def test_a_wrong_birth_date_and_a_birth_date_that_is_not_a_date(desk, clinic, db_session):
    _scan(desk, clinic["point"], AN)
    ticket_id = db_session.scalar(select(Ticket.id))
    token = csrf_token(desk, f"/reception?ticket={ticket_id}")
    form = {"csrf_token": token, "bhyt_number": "DN4010123456789", "full_name": "Nguyễn Văn An"}
    html = _desk_page(desk, desk.post(f"/reception/card-check/{ticket_id}", data={**form, "birth": "02/01/1990"}))
    assert "Ngày sinh không khớp với thẻ trên cổng: kiểm tra lại so với thẻ." in _box(html)
    assert _only_check(db_session).result_code == "070"
    exchanges = _count(db_session, GatewayExchange)
    bad = desk.post(f"/reception/card-check/{ticket_id}", data={**form, "birth": "31/02/1990"})
    assert bad.status_code == 422
    assert "Ngày sinh «31/02/1990» không phải ngày (dd/mm/yyyy) hoặc năm (yyyy)." in bad.get_data(as_text=True)
    assert _count(db_session, CardCheck) == 1 and _count(db_session, GatewayExchange) == exchanges


def test_two_card_codes_use_the_one_valid_on_the_visit_date(desk, clinic, db_session):
    html = _desk_page(desk, _scan(desk, clinic["point"], HOA, bhyt_number="GD4010100000003"))
    box = _box(html)
    assert "Đã xác minh" in box and 'id="card-check-number">HC4010100000003<' in html
    assert "Mã thẻ thứ hai GD4010100000003 (" in box
    check = _only_check(db_session)
    assert (check.result_code, check.card_number, check.other_card_number) == \
        ("003", "HC4010100000003", "GD4010100000003")
    assert db_session.get(BhytCard, check.bhyt_card_id).number == "HC4010100000003"


def test_a_newborn_temporary_card(desk, clinic, db_session):
    birth = date.today() - timedelta(days=10)
    qr = f"001226000005||Con bà Đỗ Thị Lan|{birth:%d%m%Y}|Nam|HN|"
    html = _desk_page(desk, _scan(desk, clinic["point"], qr, bhyt_number="TE1010000000005"))
    box = _box(html)
    assert "Đã xác minh" in box and 'id="card-check-level">100 %<' in html
    assert "Thẻ tạm của trẻ sơ sinh" in box
    assert _only_check(db_session).registered_facility == "01000"


def test_a_slow_portal_leaves_the_card_not_verified_and_the_job_fills_it_in(desk, clinic, db_session, sim,
                                                                            session_factory, make_user):
    sim.configure(mode="slow")
    html = _desk_page(desk, _scan(desk, clinic["point"], AN, bhyt_number="DN4010123456789"))
    assert 'id="ticket-number">0001<' in html  # reception went on
    box = _box(html)
    assert "Chưa xác minh" in box and "Cổng BHYT không trả lời kịp" in box
    check = _only_check(db_session)
    assert (check.status, check.problem) == ("pending", "timeout")
    assert db_session.scalar(select(Job.name).where(Job.name == "his.gateway.card_check"))
    cashier = desk.application.test_client()
    make_user("thungan", "cashier")
    login(cashier, "thungan")
    waiting = cashier.get("/card-checks").get_data(as_text=True)
    assert f'id="card-check-{check.id}"' in waiting and "Nguyễn Văn An" in waiting

    sim.configure(mode="normal")
    assert queue.run_due(session_factory) == 1
    db_session.expire_all()
    check = _only_check(db_session)
    assert (check.status, check.benefit_level, check.attempts) == ("verified", "80", 2)
    assert db_session.get(Encounter, check.encounter_id).insured
    assert f'id="card-check-{check.id}"' not in cashier.get("/card-checks").get_data(as_text=True)
    assert "Đã xác minh" in desk.get(f"/card-checks/{check.id}").get_data(as_text=True)


def _retry_jobs(db_session) -> list[Job]:
    db_session.expire_all()
    return db_session.scalars(select(Job).where(Job.name == cards.RETRY_JOB).order_by(Job.id)).all()


def test_a_portal_that_is_down_is_retried_by_the_job_until_it_answers(desk, clinic, db_session, sim,
                                                                      session_factory):
    sim.configure(mode="down")
    html = _desk_page(desk, _scan(desk, clinic["point"], MAI, bhyt="1"))
    assert "Chưa xác minh" in _box(html) and "Cổng BHYT trả lời lỗi: thẻ chưa được xác minh" in _box(html)
    assert queue.run_due(session_factory) == 1  # still down: the try is recorded, the job queues the next one
    first, second = _retry_jobs(db_session)
    assert (first.status, second.status) == ("done", "pending")
    assert second.run_after >= first.finished_at + timedelta(seconds=queue.backoff_seconds(2)) - timedelta(seconds=1)
    check = _only_check(db_session)
    assert (check.status, check.problem, check.attempts) == ("pending", "portal_error", 2)
    tried = db_session.scalars(select(AuditEvent.detail).where(AuditEvent.action == "bhyt.card_check.try")).all()
    assert [(d["attempt"], d["problem"]) for d in tried] == [(2, "portal_error")]
    assert "Cổng BHYT trả lời lỗi: thẻ chưa được xác minh" in _box(desk.get(f"/card-checks/{check.id}")
                                                                      .get_data(as_text=True))
    sim.configure(mode="normal")
    second.run_after = second.created_at  # the delay has passed
    db_session.commit()
    assert queue.run_due(session_factory) == 1
    db_session.expire_all()
    assert (_only_check(db_session).status, _only_check(db_session).attempts) == ("verified", 3)
    assert [j.status for j in _retry_jobs(db_session)] == ["done", "done"]


def test_after_the_last_try_the_check_is_left_to_be_checked_by_hand(desk, clinic, db_session, sim, session_factory,
                                                                   make_user):
    sim.configure(mode="down")
    _desk_page(desk, _scan(desk, clinic["point"], MAI, bhyt="1"))
    for _ in range(cards.MAX_TRIES - 1):
        for waiting in _retry_jobs(db_session):
            waiting.run_after = waiting.created_at
        db_session.commit()
        assert queue.run_due(session_factory) == 1
    check = _only_check(db_session)
    assert (check.status, check.problem, check.attempts) == ("pending", "gave_up", cards.MAX_TRIES)
    jobs = _retry_jobs(db_session)
    assert len(jobs) == cards.MAX_TRIES - 1 and {j.status for j in jobs} == {"done"}  # nothing queued any more
    stopped = db_session.scalar(select(AuditEvent.detail).where(AuditEvent.action == "bhyt.card_check.stopped"))
    assert stopped == {"problem": "gave_up", "attempts": cards.MAX_TRIES, "encounter_id": check.encounter_id}
    failed = "Cổng BHYT không trả lời sau 12 lần thử: thẻ chưa được xác minh — hãy tra cứu lại thủ công."
    box = _box(desk.get(f"/card-checks/{check.id}").get_data(as_text=True))
    assert "Chưa xác minh — tra cứu thủ công" in box and failed in box
    assert 'data-status="failed"' in desk.get(f"/card-checks/{check.id}").get_data(as_text=True)
    officer = desk.application.test_client()
    make_user("giamdinh.tay", "insurance_officer")
    login(officer, "giamdinh.tay")
    listing = officer.get("/card-checks").get_data(as_text=True)
    assert f'id="card-check-{check.id}"' in listing and failed in listing
    panel = officer.get(f"/encounters/{check.encounter_id}").get_data(as_text=True)
    assert failed in panel and "Tra cứu lại ngay" in panel
    assert not db_session.get(Encounter, check.encounter_id).insured

    sim.configure(mode="normal")  # the officer checks by hand once the portal is back
    officer.post(f"/card-checks/{check.id}/retry", data={"csrf_token": csrf_token(officer, "/card-checks")})
    db_session.expire_all()
    assert _only_check(db_session).status == "verified"


def test_a_job_without_a_portal_marks_the_check_and_stops(desk, clinic, db_session, sim, session_factory,
                                                         monkeypatch):
    sim.configure(mode="slow")
    _desk_page(desk, _scan(desk, clinic["point"], AN, bhyt="1"))
    monkeypatch.delenv("VNHIS_BHYT_GATEWAY_URL")  # the worker runs without the gateway's settings
    assert queue.run_due(session_factory) == 1
    (job,) = _retry_jobs(db_session)
    assert (job.status, job.attempts, job.last_error) == ("done", 1, None)
    check = _only_check(db_session)
    assert (check.status, check.problem, check.attempts) == ("pending", "not_configured", 1)
    box = _box(desk.get(f"/card-checks/{check.id}").get_data(as_text=True))
    assert ("Hệ thống chưa được kết nối với cổng BHYT: thẻ chưa được xác minh — hãy tra cứu thủ công." in box
            and "Chưa xác minh — tra cứu thủ công" in box)
    assert queue.run_due(session_factory) == 0


def test_an_expired_token_at_the_desk_is_renewed_without_the_receptionist_noticing(desk, clinic, db_session, sim):
    _desk_page(desk, _scan(desk, clinic["point"], MAI, bhyt="1"))
    sim.expire_tokens()
    html = _desk_page(desk, _scan(desk, clinic["point"], AN, bhyt="1"))
    assert "Đã xác minh" in _box(html)
    outcomes = db_session.execute(select(GatewayExchange.operation, GatewayExchange.outcome)
                                  .order_by(GatewayExchange.id)).all()
    assert outcomes[-3:] == [("card_lookup", "auth"), ("token", "ok"), ("card_lookup", "ok")]


def test_the_officer_reads_the_exchanges_and_the_receptionist_may_not(desk, clinic, db_session, make_user):
    _desk_page(desk, _scan(desk, clinic["point"], AN, bhyt="1"))
    assert desk.get("/gateway/exchanges").status_code == 403
    officer = desk.application.test_client()
    make_user("giamdinh", "insurance_officer")
    login(officer, "giamdinh")
    listing = officer.get("/gateway/exchanges?operation=card_lookup").get_data(as_text=True)
    assert "card_lookup" in listing and "token</td>" not in listing
    exchange_id = db_session.scalar(select(GatewayExchange.id).where(GatewayExchange.operation == "token"))
    detail = officer.get(f"/gateway/exchanges/{exchange_id}").get_data(as_text=True)
    assert "&#34;password&#34;: &#34;***&#34;" in detail and SECRET not in detail


def test_a_refused_hospital_login_leaves_the_card_not_verified(desk, clinic, db_session, sim):
    sim.state.users.clear()  # the portal no longer knows the hospital's account
    html = _desk_page(desk, _scan(desk, clinic["point"], AN, bhyt="1"))
    assert 'id="ticket-number">0001<' in html
    assert ("Cổng BHYT từ chối đăng nhập của bệnh viện: thẻ chưa được xác minh. Đề nghị quản trị viên kiểm tra tài "
            "khoản cổng.") in _box(html)
    check = _only_check(db_session)
    assert (check.status, check.problem) == ("pending", "login_refused")
    assert db_session.scalar(select(GatewayExchange.outcome)) == "auth"


def test_without_a_portal_the_desk_works_as_before(client, make_user, clinic, db_session, session_factory, tmp_path):
    plain = create_app(make_config(tmp_path, modules=("his",)), session_factory=session_factory).test_client()
    make_user("tiepdon.plain", "receptionist")
    login(plain, "tiepdon.plain")
    assert 'name="bhyt_number"' not in plain.get("/reception").get_data(as_text=True)
    html = _desk_page(plain, _scan(plain, clinic["point"], AN, bhyt_number="DN4010123456789", bhyt="1"))
    assert 'id="ticket-number">0001<' in html and 'id="card-check"' not in html
    assert _count(db_session, CardCheck) == 0 and _count(db_session, GatewayExchange) == 0


def test_the_officer_checks_again_now_once_the_portal_is_back(desk, clinic, db_session, sim, make_user):
    sim.configure(mode="down")
    _desk_page(desk, _scan(desk, clinic["point"], MAI, bhyt="1"))
    check = _only_check(db_session)
    officer = desk.application.test_client()
    make_user("giamdinh.lai", "insurance_officer")
    login(officer, "giamdinh.lai")
    token = csrf_token(officer, "/card-checks")
    still = officer.post(f"/card-checks/{check.id}/retry", data={"csrf_token": token, "next": "/card-checks"})
    assert still.headers["Location"] == "/card-checks"
    assert "Cổng BHYT trả lời lỗi: thẻ chưa được xác minh" in officer.get("/card-checks").get_data(as_text=True)
    sim.configure(mode="normal")
    officer.post(f"/card-checks/{check.id}/retry", data={"csrf_token": token, "next": "https://evil.example/"})
    db_session.expire_all()
    assert _only_check(db_session).status == "verified"
    assert "Thẻ có giá trị vào ngày khám." in officer.get("/card-checks?status=verified").get_data(as_text=True)


def test_a_card_the_portal_calls_valid_but_not_on_the_visit_date_is_refused(app, db_session, clinic):
    patient = patients.register(db_session, DESK, {"full_name": "Nguyễn Văn An", "sex": "male",
                                                   "birth_date": date(1990, 1, 1), "birth_year": 1990},
                                today=date.today()).patient
    with Simulator(users={USER: SECRET}, today=date.today() - timedelta(days=300)) as skewed:  # the portal's clock
        client = GatewayClient(GatewaySettings(skewed.url, USER, SECRET, timeout=2.0, retries=0))
        check = cards.request_check(db_session, DESK, patient, visit_date=date.today(), number="DN4010123456789")
        cards.check_now(db_session, DESK, check, client)
    assert (check.status, check.problem, check.result_code) == ("refused", "not_valid_on_visit_date", "000")
    with app.test_request_context():
        assert str(cards.message(check)) == "Không thẻ nào cổng trả về có giá trị vào ngày khám."
    assert patients.current_card(db_session, patient) is None


def test_a_card_that_belongs_to_another_record_is_not_moved(desk, clinic, db_session):
    other = patients.register(db_session, DESK, {"full_name": "Nguyễn Văn An", "sex": "male", "birth_year": 1990,
                                                 "bhyt_number": "DN4010123456789"}, today=date.today(),
                              confirm_possible_duplicate=True).patient
    db_session.commit()
    html = _desk_page(desk, _scan(desk, clinic["point"], AN, bhyt="1"))  # found by the CCCD: the same card
    assert ("Thẻ cổng trả về thuộc hồ sơ người bệnh khác: gộp hồ sơ hoặc sửa lại thẻ." in _box(html))
    check = db_session.scalar(select(CardCheck))
    assert (check.status, check.problem) == ("refused", "other_patient")
    assert patients.current_card(db_session, other).number == "DN4010123456789"
    assert not db_session.get(Encounter, check.encounter_id).insured
