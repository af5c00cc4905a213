"""One bill, two desks (and the bank) at once, on real PostgreSQL commits: the bill row is locked and
recomputed before any payment, so the full amount is taken once; the second desk is refused, a bank
credit arriving second is held for review."""

import threading
from decimal import Decimal

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import close_all_sessions

from billing import bank, bills, payments
from billing.models import BankTransaction, Bill, Payment
from billing.payments import PaymentError
from core import auth
from core.audit import Actor
from core.db import make_engine, make_session_factory, utcnow
from tests.billing.conftest import LEVEL, make_visit
from tests.billing.test_payments import _charge
from tests.conftest import PASSWORD
from tests.his.conftest import make_clinic

D = Decimal
BANK = Actor.system("bank")


@pytest.fixture
def desks(committed_db_url):
    """An encounter whose patient owes 120.000 ₫, committed."""
    engine = make_engine(committed_db_url)
    factory = make_session_factory(engine)
    with factory() as session:
        made = make_visit(session, make_clinic(session))
        _charge(session, made["encounter"], "CT", "CT sọ não", 1, 600000, group=2)
        session.commit()
        encounter_id = made["encounter"].id
    yield factory, encounter_id
    close_all_sessions()
    engine.dispose()


def _cashier(factory, name: str) -> Actor:
    """A cashier with an open shift, committed."""
    with factory() as session:
        user = auth.create_user(session, Actor.system("test"), username=name, full_name=name.title(),
                                password=PASSWORD, roles=["cashier"])
        actor = Actor(id=user.id, name=name, ip="10.0.0.9")
        payments.open_shift(session, actor)
        session.commit()
    return actor


def _encounter(session, encounter_id):
    from his.models.encounters import Encounter

    return session.get(Encounter, encounter_id)


def _counts(factory):
    with factory() as session:
        return (session.scalar(select(func.count()).select_from(Payment)),
                session.scalar(select(func.sum(Payment.amount))))


def test_two_desks_paying_from_the_same_screen_take_the_money_once(desks):
    factory, encounter_id = desks
    an, binh = _cashier(factory, "thungan.an"), _cashier(factory, "thungan.binh")
    with factory() as first, factory() as second:
        # Both desks show the bill: 120.000 ₫ due on each screen.
        view_a = bills.preview(first, an, _encounter(first, encounter_id), LEVEL)
        view_b = bills.preview(second, binh, _encounter(second, encounter_id), LEVEL)
        first.commit()
        second.commit()
        assert view_a.patient_due == view_b.patient_due == D("120000")
        paid = payments.take_payment(first, an, view_a, "cash")
        first.commit()
        with pytest.raises(PaymentError) as err:
            payments.take_payment(second, binh, view_b, "cash")
        assert (err.value.code, str(err.value)) == ("nothing_due", "Nothing is due on this bill.")
        assert view_b.patient_due == 0  # the refused desk now sees the payment
        second.rollback()
    assert _counts(factory) == (1, D("120000.00"))
    with factory() as session:
        assert (session.get(Payment, paid.id).amount, session.scalar(select(Bill.status))) == (D("120000.00"), "paid")


def test_a_payment_in_progress_makes_the_other_desk_wait_then_refuses_it(desks):
    factory, encounter_id = desks
    an, binh = _cashier(factory, "thungan.an"), _cashier(factory, "thungan.binh")
    outcome = {}

    def second_desk():
        with factory() as second:
            view = bills.preview(second, binh, _encounter(second, encounter_id), LEVEL)
            try:
                payments.take_payment(second, binh, view, "card", card_approval_code="12AB56",
                                      card_terminal="T1234567")  # waits for the bill's lock
                second.commit()
                outcome["second"] = "paid"
            except PaymentError as exc:
                second.rollback()
                outcome["second"] = (exc.code, str(exc))

    with factory() as first:
        view = bills.compute(first, an, _encounter(first, encounter_id), LEVEL)  # holds the bill's lock
        payments.take_payment(first, an, view, "cash")
        thread = threading.Thread(target=second_desk)
        thread.start()
        first.commit()
    thread.join(timeout=60)
    assert outcome["second"] == ("nothing_due", "Nothing is due on this bill.")
    assert _counts(factory) == (1, D("120000.00"))


def test_a_bank_credit_after_a_cash_payment_is_held_not_applied(desks):
    factory, encounter_id = desks
    an = _cashier(factory, "thungan.an")
    with factory() as session:
        bill = bills.compute(session, an, _encounter(session, encounter_id), LEVEL).bill
        reference = bank.reference_of(bill)
        session.commit()
    outcome = {}

    def webhook():
        with factory() as other:
            note = bank.Notification("FT-RACE-1", "0071000123456", D("120000"), reference, utcnow())
            txn, _new = bank.receive(other, BANK, note, {}, LEVEL, "0071000123456")  # waits for the lock
            other.commit()
            outcome["txn"] = (txn.status, txn.hold_reason)

    with factory() as first:
        view = bills.preview(first, an, _encounter(first, encounter_id), LEVEL)
        payments.take_payment(first, an, view, "cash")  # locks the bill
        thread = threading.Thread(target=webhook)
        thread.start()
        first.commit()
    thread.join(timeout=60)
    assert outcome["txn"] == ("held", "already_paid")
    assert _counts(factory) == (1, D("120000.00"))
    with factory() as session:
        assert session.scalar(select(BankTransaction.status)) == "held"
