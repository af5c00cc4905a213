"""Payments at the desk and from the bank: advances and refunds on an inpatient bill (worked example),
card slips, shifts with their closing report, bank credits applied once or held for review."""

from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from billing import bank, bills, payments
from billing.models import BankTransaction, Charge, Payment
from billing.payments import PaymentError
from core.audit import Actor
from core.db import utcnow
from core.models import AuditEvent
from tests.billing.conftest import LEVEL, make_visit, today_local

D = Decimal


@pytest.fixture
def cashier(make_user):
    user = make_user("thungan.an", "cashier")
    return Actor(id=user.id, name=user.username, ip="10.0.0.5")


def _charge(session, encounter, key, name, quantity, price, *, ratio=100, in_list=True, group=15):
    row = Charge(encounter_id=encounter.id, patient_id=encounter.patient_id, source="order", source_key=key,
                 item_kind="service", item_code=key, item_name=name, unit="lần", cost_group=group, in_list=in_list,
                 payment_ratio=ratio, payer="bhyt", quantity=D(quantity), unit_price=D(price),
                 bhyt_unit_price=D(price), amount=D(quantity) * D(price), status="priced", service_at=utcnow(),
                 service_day=today_local())
    session.add(row)
    session.flush()
    return row


def _count(session, model):
    return session.scalar(select(func.count()).select_from(model))


def test_inpatient_with_an_advance_payment_worked_example(db_session, clinic, cashier):
    encounter = make_visit(db_session, clinic, card="HT3790123456789", kind="inpatient")["encounter"]
    _charge(db_session, encounter, "GB1", "Ngày giường Nội khoa loại 1", 5, 199100)
    _charge(db_session, encounter, "T50", "Thuốc thanh toán 50 %", 1, 200000, ratio=50, group=6)
    _charge(db_session, encounter, "TND", "Thuốc ngoài danh mục", 1, 100000, in_list=False, group=4)
    with pytest.raises(PaymentError) as err:
        payments.take_advance(db_session, cashier, bills.compute(db_session, cashier, encounter, LEVEL), "cash",
                              "500000")
    assert (err.value.code, str(err.value)) == ("no_shift", "Open your shift first.")
    payments.open_shift(db_session, cashier, "1.000.000")
    view = bills.compute(db_session, cashier, encounter, LEVEL)
    advance = payments.take_advance(db_session, cashier, view, "cash", "500.000")
    assert advance.receipt_number == f"BL{utcnow().year}0000001"
    view = bills.compute(db_session, cashier, encounter, LEVEL)
    bill = view.bill
    # 95 % card; in scope 995,500 + 200,000 × 50 % = 1,095,500 (above 15 % of 2,530,000 = 379,500):
    # fund 1,040,725, co-pay 54,775, outside the fund 100,000 + 100,000; the patient's share 254,775.
    assert (bill.rule_code, bill.benefit_percent) == ("BHYT-2026-07", 95)
    assert (bill.total, bill.insurer_pays, bill.patient_copay, bill.patient_self, bill.patient_share) == (
        D("1295500.00"), D("1040725.00"), D("54775.00"), D("200000.00"), D("254775.00"))
    assert (view.advances, view.patient_due) == (D("500000.00"), D("-245225.00"))
    with pytest.raises(PaymentError) as err:
        payments.take_payment(db_session, cashier, view, "cash")
    assert (err.value.code, str(err.value)) == ("nothing_due", "Nothing is due on this bill.")
    with pytest.raises(PaymentError) as err:
        payments.refund(db_session, cashier, view, "300000")
    assert str(err.value) == "At most 245.225 ₫ can be refunded."
    assert bill.status == "open" and _count(db_session, Payment) == 1
    back = payments.refund(db_session, cashier, view)
    assert (back.kind, back.amount, bill.status) == ("refund", D("245225.00"), "paid")
    shift = payments.close_shift(db_session, cashier, "1254000")
    assert shift.report["advance_cash"] == "500000.00"
    assert (shift.report["refund_cash"], shift.report["expected_cash"], shift.report["difference"]) == (
        "245225.00", "1254775.00", "-775.00")
    assert shift.report["receipts"] == 2


def test_card_payment_needs_the_pos_slip(db_session, visit, cashier):
    encounter = visit["encounter"]
    _charge(db_session, encounter, "CT", "CT sọ não", 1, 600000, group=2)
    payments.open_shift(db_session, cashier)
    view = bills.compute(db_session, cashier, encounter, LEVEL)
    assert view.patient_due == D("120000")  # 80 % card
    audits = _count(db_session, AuditEvent)
    for approval, terminal, code in [("", "T1234567", "card_approval"), ("12AB", "T1234567", "card_approval"),
                                     ("12AB56", "", "card_terminal")]:
        with pytest.raises(PaymentError) as err:
            payments.take_payment(db_session, cashier, view, "card", card_approval_code=approval,
                                  card_terminal=terminal)
        assert err.value.code == code
    with pytest.raises(PaymentError) as err:
        payments.take_payment(db_session, cashier, view, "cash", "150000")
    assert str(err.value) == "The patient owes 120.000 ₫, not 150.000 ₫."
    assert (_count(db_session, Payment), _count(db_session, AuditEvent)) == (0, audits)
    paid = payments.take_payment(db_session, cashier, view, "card", card_approval_code="12ab56",
                                 card_terminal="t1234567")
    assert (paid.method, paid.card_approval_code, paid.card_terminal, view.bill.status) == (
        "card", "12AB56", "T1234567", "paid")


def _note(txn, amount, description, at=None):
    return bank.Notification(txn, "0071000123456", D(amount), description, at or utcnow())


def test_bank_credits_applied_once_held_or_unmatched(db_session, clinic):
    bank_actor = Actor.system("bank")
    first = make_visit(db_session, clinic, name="Nguyễn Văn An")["encounter"]
    second = make_visit(db_session, clinic, card="DN4010123456780", name="Lê Thị Hoa")["encounter"]
    _charge(db_session, first, "CT1", "CT sọ não", 1, 600000, group=2)
    _charge(db_session, second, "CT2", "CT sọ não", 1, 600000, group=2)
    one = bills.compute(db_session, bank_actor, first, LEVEL).bill
    two = bills.compute(db_session, bank_actor, second, LEVEL).bill
    note = _note("FT001", "120000", f"CK {bank.reference_of(one)} vien phi")
    txn, new = bank.receive(db_session, bank_actor, note, {}, LEVEL)
    assert (new, txn.status, txn.bill_id, one.status) == (True, "applied", one.id, "paid")
    again, new = bank.receive(db_session, bank_actor, _note("FT001", "120000", bank.reference_of(one)), {}, LEVEL)
    assert (new, again.id) == (False, txn.id)
    assert _count(db_session, Payment) == 1
    later, _ = bank.receive(db_session, bank_actor, _note("FT002", "120000", bank.reference_of(one)), {}, LEVEL)
    assert (later.status, later.hold_reason) == ("held", "already_paid")
    short, _ = bank.receive(db_session, bank_actor, _note("FT003", "100000", bank.reference_of(two).lower()), {}, LEVEL)
    assert (short.status, short.hold_reason, two.status) == ("held", "amount_mismatch", "open")
    stray, _ = bank.receive(db_session, bank_actor, _note("FT004", "50000", "chuyen tien"), {}, LEVEL)
    assert (stray.status, stray.bill_id) == ("unmatched", None)
    assert _count(db_session, Payment) == 1
    report = bank.reconcile(db_session, bank_actor, utcnow() - timedelta(hours=1), utcnow() + timedelta(hours=1))
    assert [t.bank_txn_id for t in report.applied] == ["FT001"]
    assert [t.bank_txn_id for t in report.held] == ["FT002", "FT003"]
    assert [t.bank_txn_id for t in report.unmatched] == ["FT004"]
    assert (report.total("applied"), report.total("held"), report.total("unmatched")) == (
        D("120000"), D("220000"), D("50000"))
    assert _count(db_session, BankTransaction) == 4


def test_signatures_and_malformed_notifications():
    body = b'{"transaction_id": "FT9", "account": "1", "amount": 1000, "description": "x", ' \
           b'"credited_at": "2026-12-02T08:00:00+07:00"}'
    secret = "s" * 32
    assert bank.verify(secret, body, bank.sign(secret, body))
    assert not bank.verify(secret, body, bank.sign("t" * 32, body))
    assert not bank.verify(secret, body, None) and not bank.verify(None, body, "00")
    note, _raw = bank.parse(body)
    assert (note.transaction_id, note.amount) == ("FT9", D("1000"))
    for bad in (b"not json", b'{"transaction_id": "FT9"}',
                b'{"transaction_id": "FT9", "account": "1", "amount": -5, "credited_at": "2026-12-02T08:00:00+07:00"}',
                b'{"transaction_id": "FT9", "account": "1", "amount": 5, "credited_at": "2026-12-02T08:00:00"}'):
        with pytest.raises(bank.NotificationError):
            bank.parse(bad)


def test_a_dot_only_groups_thousands_in_a_typed_amount(db_session, visit, cashier):
    encounter = visit["encounter"]
    _charge(db_session, encounter, "CT", "CT sọ não", 1, 600000, group=2)
    payments.open_shift(db_session, cashier)
    view = bills.compute(db_session, cashier, encounter, LEVEL)
    audits = _count(db_session, AuditEvent)
    for typed in ("120000.5", "12.00", "1.2345", "120,5", "12.000.00", "abc"):
        with pytest.raises(PaymentError) as err:
            payments.take_payment(db_session, cashier, view, "cash", typed)
        assert (err.value.code, str(err.value)) == (
            "bad_amount", "Enter an amount in whole đồng greater than 0."), typed
    assert (_count(db_session, Payment), _count(db_session, AuditEvent), view.bill.status) == (0, audits, "open")
    assert [payments._amount(t) for t in ("120.000", "120000", "120 000 ₫", "1.250.000")] == [
        D("120000"), D("120000"), D("120000"), D("1250000")]
    paid = payments.take_payment(db_session, cashier, view, "cash", "120.000")
    assert (paid.amount, view.bill.status) == (D("120000.00"), "paid")
