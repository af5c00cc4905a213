"""The gateway client against the simulator over real HTTP: each seeded card, token renewal, timeouts,
retries, errors, check-in, claim upload and status; every exchange stored with credentials masked."""

import base64
from datetime import date

import pytest
import requests
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.app import create_app
from core.config import Config, ConfigError
from core.db import make_engine
from his.gateway.client import (
    GatewayAuthError,
    GatewayClient,
    GatewayNotConfigured,
    GatewayRejected,
    GatewaySettings,
    GatewayTimeout,
    GatewayUnavailable,
)
from his.gateway.simulator import Simulator
from his.models.gateway import GatewayExchange
from tests.browser import server_env, serving
from tests.conftest import make_config

USER, SECRET = "bv01001.tiepdon", "mat-khau-cong-bhyt"
SIGNED = (b'<?xml version="1.0" encoding="utf-8"?><GIAMDINHHS><THONGTINDONVI><MACSKCB>01001</MACSKCB>'
          b'</THONGTINDONVI><THONGTINHOSO><NGAYLAP>20261202</NGAYLAP><SOLUONGHOSO>1</SOLUONGHOSO><DANHSACHHOSO>'
          b'<HOSO><FILEHOSO><LOAIHOSO>XML1</LOAIHOSO><NOIDUNGFILE>'
          + base64.b64encode(b"<TONG_HOP><MA_LK>261202000000001</MA_LK></TONG_HOP>")
          + b'</NOIDUNGFILE></FILEHOSO></HOSO></DANHSACHHOSO></THONGTINHOSO><CHUKYDONVI>'
            b'<Signature xmlns="http://www.w3.org/2000/09/xmldsig#"/></CHUKYDONVI></GIAMDINHHS>')


@pytest.fixture(autouse=True)
def _vietnamese(session_factory, tmp_path):
    app = create_app(make_config(tmp_path, modules=("his",)), session_factory=session_factory)
    with app.test_request_context():  # the messages as the desk reads them
        yield


@pytest.fixture
def sim():
    with Simulator(users={USER: SECRET}, slow_seconds=5) as server:
        yield server


def _client(sim, **overrides) -> GatewayClient:
    values = {"url": sim.url, "username": USER, "password": SECRET, "timeout": 0.5, "retries": 1, **overrides}
    return GatewayClient(GatewaySettings(**values), sleep=lambda _s: None)


@pytest.fixture
def client(sim):
    return _client(sim)


def _exchanges(session, operation=None):
    stmt = select(GatewayExchange).order_by(GatewayExchange.id)
    if operation:
        stmt = stmt.where(GatewayExchange.operation == operation)
    return session.scalars(stmt).all()


def test_a_valid_card_in_both_layouts_and_by_personal_id(client, db_session):
    legacy = client.lookup_card(db_session, number="DN4010123456789", full_name="Nguyễn Văn An",
                                birth=date(1990, 1, 1), subject="test:1")
    assert (legacy.code, legacy.usable, legacy.benefit_level) == ("000", True, "80")
    assert legacy.card.number == "DN4010123456789" and legacy.card.registered_facility == "01001"
    assert legacy.five_years_since == date(2021, 1, 1) and legacy.new_card is None
    ten = client.lookup_card(db_session, number="7901234567", full_name="TRẦN THỊ MAI", birth=date(1990, 8, 15))
    assert (ten.code, ten.card.number, ten.benefit_level) == ("000", "7901234567", "95")
    by_id = client.lookup_card(db_session, number="001090123456", full_name="Nguyễn Văn An", birth=1990)
    assert by_id.usable and by_id.card.number == "DN4010123456789"
    assert [e.operation for e in _exchanges(db_session)] == ["token", "card_lookup", "card_lookup", "card_lookup"]


def test_refused_cards_are_answers_not_errors(client, db_session):
    expired = client.lookup_card(db_session, number="HT3010000000002", full_name="Lê Văn Cụ", birth=date(1940, 1, 1))
    assert (expired.code, expired.usable, expired.problem) == ("010", False, "expired")
    assert expired.card.valid_to < date.today()
    name = client.lookup_card(db_session, number="DN4010123456789", full_name="Phạm Văn An", birth=date(1990, 1, 1))
    assert (name.code, name.problem, name.card) == ("060", "wrong_name", None)
    close = client.lookup_card(db_session, number="DN4010123456789", full_name="Nguyễn Văn Anh",
                               birth=date(1990, 1, 1))
    assert (close.code, close.problem) == ("061", "wrong_name")
    birth = client.lookup_card(db_session, number="DN4010123456789", full_name="Nguyễn Văn An", birth=date(1990, 2, 1))
    assert (birth.code, birth.problem) == ("070", "wrong_birth_date")
    unknown = client.lookup_card(db_session, number="DN4019999999999", full_name="Ai Đó", birth=1990)
    assert (unknown.code, unknown.problem) == ("050", "not_found")
    assert [e.outcome for e in _exchanges(db_session, "card_lookup")] == ["refused"] * 5


def test_two_card_codes_and_the_newborn_card(client, db_session):
    two = client.lookup_card(db_session, number="GD4010100000003", full_name="Phạm Thị Hoa", birth=date(1985, 5, 20))
    assert (two.code, two.usable, two.problem) == ("003", True, "new_card")
    assert two.card.number == "GD4010100000003" and two.new_card.number == "HC4010100000003"
    assert two.card.valid_to < date.today() <= two.new_card.valid_to
    baby = client.lookup_card(db_session, number="TE1010000000005", full_name="Con bà Đỗ Thị Lan",
                              birth=date.today().year)
    assert baby.usable and baby.card.registered_facility == "01000" and baby.benefit_level == "100"


def test_credentials_and_tokens_are_never_stored(client, db_session):
    client.lookup_card(db_session, number="DN4010123456789", full_name="Nguyễn Văn An", birth=date(1990, 1, 1))
    token_row, lookup_row = _exchanges(db_session)
    assert '"password": "***"' in token_row.request_body and USER in token_row.request_body
    assert '"access_token": "***"' in token_row.response_body
    assert lookup_row.request_headers["Authorization"] == "***"
    assert lookup_row.status_code == 200 and lookup_row.received_at >= lookup_row.sent_at
    assert "Nguyễn Văn An" in lookup_row.response_body and lookup_row.elapsed_ms is not None
    assert lookup_row.request_body == '{"maThe": "DN4010123456789", "hoTen": "Nguyễn Văn An", "ngaySinh": "01/01/1990"}'
    stored = " ".join(str(v) for row in _exchanges(db_session) for v in vars(row).values())
    assert SECRET not in stored and client._token not in stored


def test_an_expired_token_is_renewed_once_and_the_request_resent(sim, client, db_session):
    client.lookup_card(db_session, number="DN4010123456789", full_name="Nguyễn Văn An", birth=date(1990, 1, 1))
    sim.expire_tokens()
    again = client.lookup_card(db_session, number="DN4010123456789", full_name="Nguyễn Văn An", birth=date(1990, 1, 1))
    assert again.usable
    assert [(e.operation, e.outcome) for e in _exchanges(db_session)] == [
        ("token", "ok"), ("card_lookup", "ok"), ("card_lookup", "auth"), ("token", "ok"), ("card_lookup", "ok")]


def test_a_token_about_to_end_is_renewed_before_the_request(sim, db_session):
    sim.configure(token_ttl=5)  # shorter than the client's safety margin
    client = _client(sim)
    for _ in range(2):
        client.lookup_card(db_session, number="7901234567", full_name="Trần Thị Mai", birth=date(1990, 8, 15))
    assert [e.operation for e in _exchanges(db_session)] == ["token", "card_lookup", "token", "card_lookup"]


def test_wrong_credentials_are_an_auth_error(sim, db_session):
    client = _client(sim, password="sai-mat-khau")
    with pytest.raises(GatewayAuthError) as caught:
        client.lookup_card(db_session, number="7901234567", full_name="Trần Thị Mai", birth=date(1990, 8, 15))
    assert str(caught.value) == ("Cổng BHYT từ chối đăng nhập của bệnh viện: đề nghị quản trị viên kiểm tra tài "
                                 "khoản cổng.")
    assert [(e.operation, e.outcome, e.status_code) for e in _exchanges(db_session)] == [("token", "auth", 401)]


def test_a_slow_portal_times_out_after_the_retries(sim, client, db_session):
    client.lookup_card(db_session, number="7901234567", full_name="Trần Thị Mai", birth=date(1990, 8, 15))
    sim.configure(mode="slow")
    with pytest.raises(GatewayTimeout) as caught:
        client.lookup_card(db_session, number="7901234567", full_name="Trần Thị Mai", birth=date(1990, 8, 15))
    assert str(caught.value) == "Cổng BHYT không trả lời trong 0.5 giây."
    timeouts = [e for e in _exchanges(db_session, "card_lookup") if e.outcome == "timeout"]
    assert [e.attempt for e in timeouts] == [1, 2] and all(e.status_code is None for e in timeouts)
    assert caught.value.exchange_id == timeouts[-1].id


@pytest.mark.parametrize("mode, status", [("down", 503), ("error", 500)])
def test_a_portal_that_is_down_or_failing_is_unavailable(sim, client, db_session, mode, status):
    client.lookup_card(db_session, number="7901234567", full_name="Trần Thị Mai", birth=date(1990, 8, 15))
    sim.configure(mode=mode)
    with pytest.raises(GatewayUnavailable) as caught:
        client.lookup_card(db_session, number="7901234567", full_name="Trần Thị Mai", birth=date(1990, 8, 15))
    assert not isinstance(caught.value, GatewayTimeout)
    assert str(caught.value) == f"Cổng BHYT trả lời lỗi ({status})."
    failed = _exchanges(db_session, "card_lookup")[1:]
    assert [(e.status_code, e.outcome) for e in failed] == [(status, "unavailable")] * 2


def test_a_flaky_portal_is_retried_until_it_answers(sim, db_session):
    client = _client(sim, retries=10)
    client.lookup_card(db_session, number="7901234567", full_name="Trần Thị Mai", birth=date(1990, 8, 15))
    sim.configure(failure_rate=0.5)
    for _ in range(5):
        assert client.lookup_card(db_session, number="7901234567", full_name="Trần Thị Mai",
                                  birth=date(1990, 8, 15)).usable
    outcomes = {e.outcome for e in _exchanges(db_session, "card_lookup")}
    assert outcomes == {"ok", "unavailable"}  # the simulator's seeded randomness fails some of them


def test_check_in_is_sent_once_and_recognised_when_resent(sim, client, db_session):
    record = b"<CHECKIN><MA_LK>261202000000001</MA_LK><MA_THE_BHYT>DN4010123456789</MA_THE_BHYT></CHECKIN>"
    first = client.check_in(db_session, link_key="261202000000001", content=record, request_id="checkin-1")
    again = client.check_in(db_session, link_key="261202000000001", content=record, request_id="checkin-1")
    assert first.transaction_id == again.transaction_id and first.transaction_id.startswith("CI")
    with pytest.raises(GatewayRejected) as caught:
        client.check_in(db_session, link_key="261202000000999", content=record, request_id="checkin-2")
    assert caught.value.portal_code == "205" and "MA_LK" in caught.value.portal_message
    sim.configure(mode="down")
    with pytest.raises(GatewayUnavailable):
        client.check_in(db_session, link_key="261202000000001", content=record, request_id="checkin-3")
    assert len([e for e in _exchanges(db_session, "check_in") if e.outcome == "unavailable"]) == 1  # not retried


def test_claim_upload_then_status_until_the_verdict(client, db_session):
    receipt = client.upload_claim(db_session, file_name="HS_261202.xml", content=SIGNED, kind="qd130",
                                  request_id="claim-7-v1", subject="claim:7")
    assert receipt.receipt_id.startswith("HS") and receipt.received_at.tzinfo is not None
    assert client.upload_claim(db_session, file_name="HS_261202.xml", content=SIGNED, kind="qd130",
                               request_id="claim-7-v1").receipt_id == receipt.receipt_id
    assert client.claim_status(db_session, receipt.receipt_id).state == "processing"
    final = client.claim_status(db_session, receipt.receipt_id, subject="claim:7")
    assert (final.state, final.errors) == ("accepted", [])
    stored = _exchanges(db_session, "claim_upload")[0]
    assert stored.subject == "claim:7" and base64.b64encode(SIGNED).decode() in stored.request_body


def test_an_unsigned_claim_is_rejected_with_the_portal_reasons(client, db_session):
    unsigned = SIGNED.replace(b'<Signature xmlns="http://www.w3.org/2000/09/xmldsig#"/>', b"")
    receipt = client.upload_claim(db_session, file_name="HS.xml", content=unsigned, kind="4210", request_id="c-8")
    client.claim_status(db_session, receipt.receipt_id)
    final = client.claim_status(db_session, receipt.receipt_id)
    assert final.state == "rejected"
    assert final.errors == [{"code": "CHUKY", "message": "Thiếu chữ ký số của cơ sở KBCB (CHUKYDONVI)"}]
    with pytest.raises(GatewayRejected) as caught:
        client.upload_claim(db_session, file_name="HS.xml", content=b"not xml", request_id="c-9")
    assert caught.value.portal_code == "205"
    with pytest.raises(GatewayRejected) as unknown:
        client.claim_status(db_session, "HS99999999")
    assert unknown.value.portal_code == "404"


def _config(**values) -> Config:
    return Config(env="test", database_url="sqlite://", redis_url=None, storage_dir=None, secret_key="k" * 40,
                  timezone="Asia/Ho_Chi_Minh", extra=values)


def test_settings_come_from_configuration_and_are_checked():
    with pytest.raises(GatewayNotConfigured):
        GatewayClient.from_config(_config())
    base = {"VNHIS_BHYT_GATEWAY_URL": "http://127.0.0.1:9/", "VNHIS_BHYT_GATEWAY_USER": "u",
            "VNHIS_BHYT_GATEWAY_PASSWORD": "bi-mat-cua-cong"}
    client = GatewayClient.from_config(_config(**base, VNHIS_BHYT_GATEWAY_TIMEOUT="2.5"))
    assert (client.settings.url, client.settings.timeout, client.settings.retries) == ("http://127.0.0.1:9", 2.5, 2)
    assert client is GatewayClient.from_config(_config(**base, VNHIS_BHYT_GATEWAY_TIMEOUT="2.5"))  # one token
    assert "bi-mat-cua-cong" not in repr(client.settings)
    url = "VNHIS_BHYT_GATEWAY_URL must start with http:// or https://"
    problems = [({"VNHIS_BHYT_GATEWAY_URL": "gdbhyt.vn"}, url),
                ({**base, "VNHIS_BHYT_GATEWAY_PASSWORD": ""}, "VNHIS_BHYT_GATEWAY_USER and VNHIS_BHYT_GATEWAY_PASS"),
                ({**base, "VNHIS_BHYT_GATEWAY_TIMEOUT": "soon"}, "VNHIS_BHYT_GATEWAY_TIMEOUT must be a number"),
                ({**base, "VNHIS_BHYT_GATEWAY_TIMEOUT": "0"}, "VNHIS_BHYT_GATEWAY_TIMEOUT must be between 0.1 and 120"),
                ({**base, "VNHIS_BHYT_GATEWAY_RETRIES": "x"}, "VNHIS_BHYT_GATEWAY_RETRIES must be a whole number")]
    for values, message in problems:
        with pytest.raises(ConfigError, match=message):
            GatewayClient.from_config(_config(**values))


def test_a_wrong_gateway_setting_stops_the_application_start(session_factory, tmp_path):
    config = make_config(tmp_path, modules=("his",), extra={"VNHIS_BHYT_GATEWAY_URL": "ftp://gdbhyt"})
    with pytest.raises(ConfigError, match="VNHIS_BHYT_GATEWAY_URL must start with http:// or https://"):
        create_app(config, session_factory=session_factory)


def test_exchanges_outlive_the_callers_rollback_on_postgresql(sim, committed_db_url):
    engine = make_engine(committed_db_url)
    client = _client(sim)
    with Session(engine) as session:
        client.lookup_card(session, number="7901234567", full_name="Trần Thị Mai", birth=date(1990, 8, 15))
        session.rollback()
    with Session(engine) as session:
        assert [e.operation for e in _exchanges(session)] == ["token", "card_lookup"]
    engine.dispose()


@pytest.fixture
def sim_command(tmp_path):
    """`vnhis gateway-sim --port P` as the demo starts it, with the account from the environment."""
    env = server_env(tmp_path, VNHIS_MODULES="his", VNHIS_BHYT_GATEWAY_USER=USER, VNHIS_BHYT_GATEWAY_PASSWORD=SECRET)
    yield from serving("gateway-sim", env)


def test_the_command_line_simulator_and_its_admin_switch(sim_command, db_session):
    client = GatewayClient(GatewaySettings(sim_command, USER, SECRET, timeout=2.0, retries=0))
    assert client.lookup_card(db_session, number="7901234567", full_name="Trần Thị Mai", birth=1990).usable
    assert requests.post(f"{sim_command}/admin/settings", json={"mode": "down"}, timeout=5).status_code == 200
    with pytest.raises(GatewayUnavailable):
        client.lookup_card(db_session, number="7901234567", full_name="Trần Thị Mai", birth=1990)
    state = requests.get(f"{sim_command}/admin/state", timeout=5).json()
    assert state["settings"]["mode"] == "down" and state["requests"]["card_lookup"] == 2
    refused = requests.post(f"{sim_command}/admin/settings", json={"mode": "sideways"}, timeout=5)
    assert refused.status_code == 400 and "mode must be one of" in refused.json()["error"]
    assert requests.post(f"{sim_command}/admin/settings", json={"failure_rate": 2}, timeout=5).status_code == 400
