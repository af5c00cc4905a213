"""The billing screens and the bank webhook through the Flask test client: HMAC (401, nothing changed),
one payment per bank transaction, mismatches held; the cashier's bill and QR; the officer's claims."""

import json
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from billing import bank, bills
from billing.models import BankTransaction, Bill, Claim, Payment
from core.models import AuditEvent
from tests.billing.conftest import LEVEL, SYSTEM, claimable_visit
from tests.conftest import login, make_config

SECRET = "w" * 32
SETTINGS = {"VNHIS_BILLING_FACILITY_CODE": "79001", "VNHIS_BILLING_BANK_BIN": "970436",
            "VNHIS_BILLING_BANK_ACCOUNT": "0071000123456", "VNHIS_BILLING_WEBHOOK_SECRET": SECRET,
            "VNHIS_BILLING_HEAD_ID": "7900012345", "VNHIS_BILLING_MERCHANT_NAME": "BENH VIEN VNHIS"}


@pytest.fixture
def app(session_factory, tmp_path):
    from core.app import create_app

    return create_app(make_config(tmp_path, extra=SETTINGS), session_factory=session_factory)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture(autouse=True)
def _fresh_bad_signature_throttle(monkeypatch):
    from billing.web import cashier

    monkeypatch.setattr(cashier, "_bad_signatures", {"audited_at": None, "since": 0})


def _count(session, model):
    return session.scalar(select(func.count()).select_from(model))


def _bill_with_ct(db_session, visit):
    from tests.billing.test_payments import _charge

    _charge(db_session, visit["encounter"], "CT", "CT sọ não", 1, 600000, group=2)
    bill = bills.compute(db_session, SYSTEM, visit["encounter"], LEVEL).bill
    db_session.commit()
    return bill


def _notify(client, txn, amount, description, secret=SECRET):
    body = json.dumps({"transaction_id": txn, "account": "0071000123456", "amount": amount,
                       "description": description, "credited_at": "2026-12-02T09:15:00+07:00"}).encode()
    return client.post("/billing/bank/notify", data=body, content_type="application/json",
                       headers={bank.SIGNATURE_HEADER: bank.sign(secret, body)})


def test_the_webhook_checks_the_signature_and_applies_once(client, db_session, visit):
    bill = _bill_with_ct(db_session, visit)
    reference = bank.reference_of(bill)
    forged = _notify(client, "FT100", 120000, reference, secret="x" * 32)
    assert forged.status_code == 401
    assert forged.get_json()["error"]["code"] == "bad_signature"
    unsigned = client.post("/billing/bank/notify", data=b"{}", content_type="application/json")
    assert unsigned.status_code == 401
    garbled = client.post("/billing/bank/notify", data=b"{}", content_type="application/json",
                          headers={bank.SIGNATURE_HEADER: "chữ ký giả"})  # non-ASCII: refused, not a 500
    assert (garbled.status_code, garbled.get_json()["error"]["code"]) == (401, "bad_signature")
    forged_again = _notify(client, "FT100", 120000, reference, secret="y" * 32)
    assert forged_again.status_code == 401
    assert (_count(db_session, BankTransaction), _count(db_session, Payment)) == (0, 0)
    db_session.expire_all()
    assert db_session.get(Bill, bill.id).status == "open"
    # Only the first well-formed forged signature reaches the audit chain (one a minute, none for junk).
    audited = db_session.scalars(select(AuditEvent).where(AuditEvent.action == "billing.bank.bad_signature")).all()
    assert [e.detail["refused_since_last"] for e in audited] == [1]

    first = _notify(client, "FT101", 120000, f"THANH TOAN {reference}")
    assert (first.status_code, first.get_json()) == (200, {"status": "applied", "hold_reason": None,
                                                          "duplicate": False})
    again = _notify(client, "FT101", 120000, f"THANH TOAN {reference}")
    assert (again.status_code, again.get_json()["duplicate"]) == (200, True)
    assert (_count(db_session, BankTransaction), _count(db_session, Payment)) == (1, 1)
    db_session.expire_all()
    assert db_session.get(Bill, bill.id).status == "paid"
    malformed_body = b'{"transaction_id": "FT102"}'
    malformed = client.post("/billing/bank/notify", data=malformed_body, content_type="application/json",
                            headers={bank.SIGNATURE_HEADER: bank.sign(SECRET, malformed_body)})
    assert malformed.status_code == 400 and _count(db_session, BankTransaction) == 1


def test_a_wrong_amount_is_held_for_review(client, db_session, visit, make_user):
    bill = _bill_with_ct(db_session, visit)
    answer = _notify(client, "FT200", 100000, bank.reference_of(bill))
    assert answer.get_json() == {"status": "held", "hold_reason": "amount_mismatch", "duplicate": False}
    assert _count(db_session, Payment) == 0
    make_user("thungan.binh", "cashier")
    login(client, "thungan.binh")
    page = client.get("/billing/bank").get_data(as_text=True)
    assert "FT200" in page and "Số tiền khác bảng kê" in page


def test_the_cashiers_bill_and_qr(client, db_session, visit, make_user):
    bill = _bill_with_ct(db_session, visit)
    make_user("thungan.an", "cashier")
    assert client.get(f"/billing/encounters/{visit['encounter'].id}").status_code == 302  # login first
    login(client, "thungan.an")
    page = client.get(f"/billing/encounters/{visit['encounter'].id}").get_data(as_text=True).replace("\xa0", " ")
    assert "BHYT-2026-07" in page and 'id="bill-insurer">480.000 ₫' in page and 'id="bill-due">120.000 ₫' in page
    assert "Mã quyền lợi thẻ 4: 80 %." in page
    qr = client.get(f"/billing/bills/{bill.id}/qr").get_data(as_text=True)
    assert "<svg" in qr and f"VNHIS {bill.code}" in qr
    assert client.get(f"/billing/bills/{bill.id}/status").get_json()["status"] == "open"
    # Cash needs an open shift; the error is shown, nothing recorded.
    token = client.get(f"/billing/encounters/{visit['encounter'].id}").get_data(as_text=True)
    csrf = token.split('name="csrf_token" value="')[1].split('"')[0]
    answer = client.post(f"/billing/encounters/{visit['encounter'].id}/pay", data={
        "csrf_token": csrf, "kind": "payment", "method": "cash"}, follow_redirects=True)
    assert "Hãy mở ca trước." in answer.get_data(as_text=True) and _count(db_session, Payment) == 0
    client.post("/billing/shift", data={"csrf_token": csrf, "action": "open", "opening_float": "500000"})
    receipt = client.post(f"/billing/encounters/{visit['encounter'].id}/pay", data={
        "csrf_token": csrf, "kind": "payment", "method": "cash"}, follow_redirects=True).get_data(as_text=True)
    assert "Đã lập biên lai BL" in receipt
    payment = db_session.scalar(select(Payment))
    assert (payment.method, payment.amount) == ("cash", Decimal("120000.00"))
    closing = client.post("/billing/shift", data={"csrf_token": csrf, "action": "close", "counted_cash": "620000"})
    assert 'id="shift-difference">0' in closing.get_data(as_text=True)


def test_roles_and_the_encounter_panel(client, db_session, visit, make_user):
    _bill_with_ct(db_session, visit)
    make_user("giamdinh.lan", "insurance_officer")
    login(client, "giamdinh.lan")
    assert client.get("/billing/shift").status_code == 403
    assert client.get(f"/billing/encounters/{visit['encounter'].id}").status_code == 200  # may read bills
    make_user("bacsi.minh", "doctor")
    other = client.application.test_client()
    login(other, "bacsi.minh")
    panel = other.get(f"/encounters/{visit['encounter'].id}").get_data(as_text=True)
    assert 'id="billing-panel"' not in panel  # doctors do not see the bill
    officer_panel = client.get(f"/encounters/{visit['encounter'].id}").get_data(as_text=True)
    assert 'id="billing-panel"' in officer_panel and 'id="panel-bill-link"' in officer_panel


def test_the_officers_claims_screen(client, db_session, clinic, make_user):
    made = claimable_visit(db_session, clinic)
    db_session.commit()
    make_user("giamdinh.hoa", "insurance_officer")
    login(client, "giamdinh.hoa")
    listing = client.get("/billing/claims").get_data(as_text=True)
    csrf = listing.split('name="csrf_token" value="')[1].split('"')[0]
    assert "1 lượt khám đã kết thúc chưa có hồ sơ" in listing
    built = client.post("/billing/claims/build", data={"csrf_token": csrf}, follow_redirects=True)
    text = built.get_data(as_text=True)
    assert "Đã lập và kiểm tra 1 hồ sơ, 1 hồ sơ có lỗi." in text
    assert "CAN_NANG" in text and "trường bắt buộc đang trống" in text
    claim = db_session.scalar(select(Claim))
    fixed = client.post(f"/billing/claims/{claim.id}", data={"csrf_token": csrf, "weight_kg": "58"},
                        follow_redirects=True)
    assert "Đã lưu; hồ sơ đã được lập và kiểm tra lại." in fixed.get_data(as_text=True)
    db_session.expire_all()
    claim = db_session.get(Claim, claim.id)
    assert (claim.status, claim.errors) == ("valid", [])
    download = client.get(f"/billing/claims/{claim.id}/file")
    assert download.status_code == 200 and download.data.startswith(b"<?xml")
    assert made["encounter"].code in download.headers["Content-Disposition"]
    queued = client.post("/billing/claims/submit", data={"csrf_token": csrf}, follow_redirects=True)
    assert "Đã xếp 1 hồ sơ chờ gửi cổng giám định." in queued.get_data(as_text=True)
    db_session.expire_all()
    assert db_session.get(Claim, claim.id).status == "queued"
    refused = client.post(f"/billing/claims/{claim.id}", data={"csrf_token": csrf, "weight_kg": "59"},
                          follow_redirects=True).get_data(as_text=True)
    assert f"Hồ sơ {claim.link_key} đang chờ gửi cổng giám định" in refused
    db_session.expire_all()
    claim = db_session.get(Claim, claim.id)
    assert (claim.status, claim.supplement["weight_kg"]) == ("queued", "58.00")


def _csrf(client, path):
    return client.get(path).get_data(as_text=True).split('name="csrf_token" value="')[1].split('"')[0]


def test_showing_a_bill_writes_nothing_but_the_audit(client, db_session, clinic, make_user):
    from tests.billing.conftest import make_visit
    from tests.billing.test_payments import _charge

    made = make_visit(db_session, clinic, name="Nguyễn Văn An")
    encounter = made["encounter"]
    encounter.status = "finished"
    _charge(db_session, encounter, "KB", "Khám bệnh", 1, 30500, group=13)  # under the threshold: fully covered
    db_session.commit()
    make_user("thungan.an", "cashier")
    login(client, "thungan.an")
    page = client.get(f"/billing/encounters/{encounter.id}").get_data(as_text=True).replace("\xa0", " ")
    assert 'id="bill-due">0 ₫' in page and "(chưa mở)" in page
    assert (_count(db_session, Bill), _count(db_session, Payment)) == (0, 0)  # not opened, not settled on a GET
    db_session.commit()
    assert db_session.scalar(select(func.count()).select_from(AuditEvent)
                             .where(AuditEvent.action == "billing.bill.read")) == 1
    assert db_session.scalar(select(func.count()).select_from(AuditEvent)
                             .where(AuditEvent.action == "billing.bill.paid")) == 0
    csrf = _csrf(client, f"/billing/encounters/{encounter.id}")
    client.post(f"/billing/encounters/{encounter.id}/update", data={"csrf_token": csrf})
    db_session.expire_all()
    assert db_session.scalar(select(Bill.status)) == "paid"


def test_the_desk_finds_a_patient_by_a_name_prefix(client, db_session, clinic, make_user):
    from tests.billing.conftest import make_visit

    found = make_visit(db_session, clinic, name="Nguyễn Văn An")["encounter"]
    other = make_visit(db_session, clinic, card="DN4010123456780", name="Trần Nguyên")["encounter"]
    db_session.commit()
    make_user("thungan.an", "cashier")
    login(client, "thungan.an")
    for query in ("Nguyễn", "nguyen van", "NGUYỄN V"):
        page = client.get("/billing", query_string={"q": query}).get_data(as_text=True)
        assert found.code in page and other.code not in page, query
    for query in ("%", "_guyen", "guyen"):
        page = client.get("/billing", query_string={"q": query}).get_data(as_text=True)
        assert found.code not in page and other.code not in page, query


def test_a_held_credit_is_resolved_from_the_reconciliation(client, db_session, visit, make_user):
    bill = _bill_with_ct(db_session, visit)
    _notify(client, "FT400", 100000, bank.reference_of(bill))
    txn = db_session.scalar(select(BankTransaction))
    make_user("giamdinh.lan", "insurance_officer")
    officer = client.application.test_client()
    login(officer, "giamdinh.lan")
    csrf = _csrf(officer, "/billing/claims")
    assert officer.post(f"/billing/bank/{txn.id}/resolve", data={"csrf_token": csrf, "action": "dismiss",
                                                                  "reason": "x"}).status_code == 403
    make_user("thungan.binh", "cashier")
    login(client, "thungan.binh")
    page = client.get("/billing/bank").get_data(as_text=True)
    assert 'id="resolve-FT400"' in page and "Xử lý" in page
    csrf = _csrf(client, "/billing/bank")
    assert client.post(f"/billing/bank/{txn.id}/resolve", data={"action": "dismiss", "reason": "x"}).status_code == 400
    missing = client.post(f"/billing/bank/{txn.id}/resolve", data={"csrf_token": csrf, "action": "apply",
                                                                   "bill": "HD999999"}, follow_redirects=True)
    assert "Không có bảng kê mã HD999999." in missing.get_data(as_text=True)
    done = client.post(f"/billing/bank/{txn.id}/resolve", data={"csrf_token": csrf, "action": "apply",
                                                                "bill": bill.code}, follow_redirects=True)
    assert "Đã xử lý khoản tiền FT400." in done.get_data(as_text=True)
    db_session.expire_all()
    txn = db_session.get(BankTransaction, txn.id)
    assert (txn.status, _count(db_session, Payment)) == ("applied", 1)
    assert db_session.scalar(select(Payment.amount)) == Decimal("100000.00")


def test_the_desk_says_nothing_found_only_after_a_search(client, make_user):
    make_user("thungan.cuc", "cashier")
    login(client, "thungan.cuc")
    empty = client.get("/billing").get_data(as_text=True)
    assert 'id="desk-q"' in empty and "Không tìm thấy" not in empty and 'id="desk-rows"' not in empty
    searched = client.get("/billing?q=Không có ai").get_data(as_text=True)
    assert 'id="desk-none">Không tìm thấy.' in searched and 'id="desk-rows"' not in searched
