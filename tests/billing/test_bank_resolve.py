"""Held and unmatched bank credits resolved by a person: applied to a bill (recomputed under its lock, a
smaller credit as a part payment), recorded as refunded, or dismissed with a reason; audited; refused with
a precise message otherwise, nothing changed."""

from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from billing import bank, bills
from billing.bank import ResolveError
from billing.models import Payment
from core.audit import Actor
from core.db import utcnow
from core.models import AuditEvent
from tests.billing.conftest import LEVEL, make_visit
from tests.billing.test_payments import _charge, _note

D = Decimal
BANK = Actor.system("bank")


@pytest.fixture
def supervisor(make_user):
    user = make_user("thungan.truong", "cashier")
    return Actor(id=user.id, name=user.username, ip="10.0.0.7")


def _count(session, model, *where):
    return session.scalar(select(func.count()).select_from(model).where(*where))


def _bill(session, clinic, card, name):
    encounter = make_visit(session, clinic, card=card, name=name)["encounter"]
    _charge(session, encounter, f"CT-{card}", "CT sọ não", 1, 600000, group=2)
    return bills.compute(session, BANK, encounter, LEVEL).bill  # 120.000 ₫ due


def _refused(session, supervisor, txn, action, bill=None, reason=None):
    session.commit()  # the audit events waiting in the session are written
    before = (_count(session, Payment), _count(session, AuditEvent), txn.status)
    with pytest.raises(ResolveError) as err:
        bank.resolve(session, supervisor, txn, action, bill, reason, facility_level=LEVEL)
    session.rollback()
    assert (_count(session, Payment), _count(session, AuditEvent), txn.status) == before
    return err.value.code, str(err.value)


def test_a_held_credit_is_applied_as_a_part_payment(db_session, clinic, supervisor):
    bill = _bill(db_session, clinic, "DN4010123456789", "Nguyễn Văn An")
    txn, _ = bank.receive(db_session, BANK, _note("FT300", "100000", bank.reference_of(bill)), {}, LEVEL)
    assert (txn.status, txn.hold_reason) == ("held", "amount_mismatch")
    assert _refused(db_session, supervisor, txn, "pay") == ("bad_action", "Choose apply, refund or dismiss.")
    bank.resolve(db_session, supervisor, txn, "apply", facility_level=LEVEL)
    payment = db_session.scalar(select(Payment))
    assert (txn.status, txn.resolved_by, payment.method, payment.amount, payment.bank_transaction_id) == (
        "applied", supervisor.id, "qr", D("100000.00"), txn.id)
    view = bills.compute(db_session, supervisor, bill.encounter, LEVEL)
    assert (view.patient_due, bill.status) == (D("20000.00"), "open")
    db_session.commit()
    event = db_session.scalar(select(AuditEvent).where(AuditEvent.action == "billing.bank.resolve"))
    assert (event.detail["action"], event.detail["bill"], event.detail["hold_reason"]) == (
        "apply", bill.code, "amount_mismatch")
    assert _refused(db_session, supervisor, txn, "dismiss", reason="nhầm") == (
        "resolved", "Credit FT300 was already resolved.")


def test_an_unmatched_credit_is_applied_to_the_bill_a_person_names(db_session, clinic, supervisor):
    bill = _bill(db_session, clinic, "DN4010123456789", "Nguyễn Văn An")
    other = _bill(db_session, clinic, "DN4010123456780", "Lê Thị Hoa")
    txn, _ = bank.receive(db_session, BANK, _note("FT301", "120000", "chuyen tien vien phi"), {}, LEVEL)
    big, _ = bank.receive(db_session, BANK, _note("FT302", "150000", "chuyen tien"), {}, LEVEL)
    assert (txn.status, big.status) == ("unmatched", "unmatched")
    assert _refused(db_session, supervisor, txn, "apply") == (
        "no_bill", "Enter the code of the bill this credit pays.")
    assert _refused(db_session, supervisor, big, "apply", other) == (
        "more_than_due", f"The credit is 150.000 ₫ but bill {other.code} asks 120.000 ₫: refund it.")
    bank.resolve(db_session, supervisor, txn, "apply", bill, facility_level=LEVEL)
    assert (txn.status, txn.bill_id, bill.status) == ("applied", bill.id, "paid")
    late, _ = bank.receive(db_session, BANK, _note("FT303", "120000", bank.reference_of(bill)), {}, LEVEL)
    assert (late.status, late.hold_reason) == ("held", "already_paid")
    assert _refused(db_session, supervisor, late, "apply") == (
        "nothing_due", f"Nothing is due on bill {bill.code}: refund the credit instead.")
    bank.resolve(db_session, supervisor, late, "refund", reason="Đã hoàn qua ngân hàng", facility_level=LEVEL)
    assert (late.status, late.resolution_note) == ("refunded", "Đã hoàn qua ngân hàng")
    assert _refused(db_session, supervisor, big, "dismiss", reason="  ") == (
        "reason_required", "Give the reason for dismissing the credit.")
    bank.resolve(db_session, supervisor, big, "dismiss", reason="Tiền của khoa Dược", facility_level=LEVEL)
    assert (big.status, big.resolution_note, _count(db_session, Payment)) == ("dismissed", "Tiền của khoa Dược", 1)
    report = bank.reconcile(db_session, supervisor, utcnow() - timedelta(hours=1), utcnow() + timedelta(hours=1))
    assert ([t.bank_txn_id for t in report.applied], [t.bank_txn_id for t in report.resolved]) == (
        ["FT301"], ["FT302", "FT303"])
    assert (report.held, report.unmatched, report.total("resolved")) == ([], [], D("270000"))
    db_session.commit()
    assert _count(db_session, AuditEvent, AuditEvent.action == "billing.bank.resolve") == 3


def test_a_credit_to_another_account_is_held(db_session, clinic):
    bill = _bill(db_session, clinic, "DN4010123456789", "Nguyễn Văn An")
    note = bank.Notification("FT304", "0071000999999", D("120000"), bank.reference_of(bill), utcnow())
    txn, _ = bank.receive(db_session, BANK, note, {}, LEVEL, "0071000123456")
    assert (txn.status, txn.hold_reason, txn.bill_id, bill.status) == ("held", "wrong_account", bill.id, "open")
    assert _count(db_session, Payment) == 0
