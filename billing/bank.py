"""Bank credit notifications: authenticated, recorded once per bank transaction id, matched to a bill
by the reference of its QR, applied only when it reached the hospital's account and the amount is exactly
what the bill asks (recomputed under the bill's row lock); anything else waits for a person, who applies,
refunds or dismisses it (`resolve`, shared/reference/payments.md). Also the reconciliation report of
credits against bills.

The webhook body is one JSON object in our internal shape (a bank with another format gets its own
small adapter that produces it): transaction_id, account, amount (whole đồng), description,
credited_at (ISO 8601). Its header X-Signature is hex HMAC-SHA256 of the raw body with the shared secret.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from flask_babel import lazy_gettext as _l
from sqlalchemy import select
from sqlalchemy.orm import Session

from billing import bills, payments
from billing.models import BankTransaction, Bill
from core import audit
from core.audit import Actor
from core.db import utcnow

SIGNATURE_HEADER = "X-Signature"
REFERENCE_PREFIX = "VNHIS"
REFERENCE_RE = re.compile(r"VNHIS\s*(HD\d{6,})", re.IGNORECASE)
SIGNATURE_RE = re.compile(r"[0-9a-fA-F]{64}")
HOLD_REASONS = ("amount_mismatch", "already_paid", "unpriced_charges", "wrong_account")
RESOLUTIONS = ("apply", "refund", "dismiss")


class NotificationError(ValueError):
    pass


class ResolveError(ValueError):
    def __init__(self, code: str, message):
        super().__init__(code)
        self.code, self.message = code, message

    def __str__(self) -> str:
        return str(self.message)


def sign(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str | None, body: bytes, signature: str | None) -> bool:
    """Compared as bytes: compare_digest refuses a str with non-ASCII characters (a forged header would be a 500)."""
    if not secret or not signature:
        return False
    return hmac.compare_digest(sign(secret, body).encode(), signature.strip().lower().encode("utf-8", "replace"))


def well_formed(signature: str | None) -> bool:
    """A signature header of the expected shape (64 hex digits), right or wrong."""
    return bool(signature and SIGNATURE_RE.fullmatch(signature.strip()))


def reference_of(bill: Bill) -> str:
    return f"{REFERENCE_PREFIX} {bill.code}"


@dataclass(frozen=True)
class Notification:
    transaction_id: str
    account: str
    amount: Decimal
    description: str
    credited_at: datetime


def parse(body: bytes) -> tuple[Notification, dict]:
    try:
        raw = json.loads(body.decode("utf-8"))
        amount = Decimal(str(raw["amount"]))
        credited = datetime.fromisoformat(str(raw["credited_at"]))
        note = Notification(str(raw["transaction_id"]).strip(), str(raw["account"]).strip(), amount,
                            str(raw.get("description") or ""), credited)
    except (ValueError, KeyError, TypeError, ArithmeticError) as exc:
        raise NotificationError(f"malformed notification: {exc}") from None
    if not note.transaction_id or len(note.transaction_id) > 80 or credited.tzinfo is None:
        raise NotificationError("malformed notification: transaction_id and a time with its offset are required")
    if not amount.is_finite() or amount <= 0:
        raise NotificationError("malformed notification: amount must be positive")
    return note, raw


def receive(session: Session, actor: Actor, note: Notification, raw: dict, facility_level: str,
            account: str | None = None) -> tuple[BankTransaction, bool]:
    """Record the credit once; (the transaction, whether it is new). The caller commits and answers 200.
    account: the hospital's configured account; a credit to another one is held, never applied."""
    existing = session.scalar(select(BankTransaction).where(BankTransaction.bank_txn_id == note.transaction_id))
    if existing is not None:
        return existing, False
    match = REFERENCE_RE.search(note.description)
    bill = session.scalar(select(Bill).where(Bill.code == match.group(1).upper())) if match else None
    txn = BankTransaction(bank_txn_id=note.transaction_id, account=note.account, amount=note.amount,
                          description=note.description[:2000], reference=match.group(1).upper() if match else None,
                          credited_at=note.credited_at, received_at=utcnow(), status="unmatched",
                          bill_id=bill.id if bill else None, raw=raw)
    session.add(txn)
    session.flush()
    if bill is not None and account and note.account != account:
        txn.status, txn.hold_reason = "held", "wrong_account"
    elif bill is not None:
        view = bills.compute(session, actor, bill.encounter, facility_level)  # under the bill's lock
        if bill.status == "paid" or view.patient_due <= 0:
            txn.status, txn.hold_reason = "held", "already_paid"
        elif view.unpriced:
            txn.status, txn.hold_reason = "held", "unpriced_charges"
        elif note.amount != view.patient_due:
            txn.status, txn.hold_reason = "held", "amount_mismatch"
        else:
            txn.status = "applied"
            payments.record_transfer(session, actor, view, txn)
    session.flush()
    audit.record(session, actor, "billing.bank.credit", txn,
                 {"bank_txn_id": txn.bank_txn_id, "amount": str(txn.amount), "reference": txn.reference,
                  "status": txn.status, "hold_reason": txn.hold_reason})
    return txn, True


def resolve(session: Session, actor: Actor, txn: BankTransaction, action: str, bill: Bill | None = None,
            reason: str | None = None, *, facility_level: str) -> BankTransaction:
    """A person's decision on a held or unmatched credit: apply it to a bill (recomputed under the bill's
    lock; at most what is due, a smaller credit is a part payment), refund it to the payer (done in the
    bank, recorded here), or dismiss it (a reason is required). Audited; the caller commits."""
    txn = session.scalar(select(BankTransaction).where(BankTransaction.id == txn.id).with_for_update()
                         .execution_options(populate_existing=True))
    reason = (reason or "").strip()[:500] or None
    if txn.status not in ("held", "unmatched"):
        raise ResolveError("resolved", _l("Credit %(txn)s was already resolved.", txn=txn.bank_txn_id))
    if action not in RESOLUTIONS:
        raise ResolveError("bad_action", _l("Choose apply, refund or dismiss."))
    if action == "dismiss" and not reason:
        raise ResolveError("reason_required", _l("Give the reason for dismissing the credit."))
    if action == "apply":
        _apply(session, actor, txn, bill or txn.bill, facility_level)
    else:
        txn.status = "refunded" if action == "refund" else "dismissed"
    txn.resolved_at, txn.resolved_by, txn.resolution_note = utcnow(), actor.id, reason
    session.flush()
    audit.record(session, actor, "billing.bank.resolve", txn,
                 {"bank_txn_id": txn.bank_txn_id, "action": action, "amount": str(txn.amount),
                  "bill": txn.bill.code if txn.bill else None, "hold_reason": txn.hold_reason, "reason": reason})
    return txn


def _apply(session: Session, actor: Actor, txn: BankTransaction, bill: Bill | None, facility_level: str) -> None:
    if bill is None:
        raise ResolveError("no_bill", _l("Enter the code of the bill this credit pays."))
    view = bills.compute(session, actor, bill.encounter, facility_level)  # under the bill's lock
    if view.unpriced:
        raise ResolveError("unpriced_charges", _l("Bill %(bill)s has charges without a price.", bill=bill.code))
    if view.patient_due <= 0:
        raise ResolveError("nothing_due", _l("Nothing is due on bill %(bill)s: refund the credit instead.",
                                             bill=bill.code))
    if txn.amount > view.patient_due:
        raise ResolveError("more_than_due", _l("The credit is %(amount)s but bill %(bill)s asks %(due)s: refund it.",
                                               amount=payments._vnd(txn.amount), bill=bill.code,
                                               due=payments._vnd(view.patient_due)))
    txn.bill, txn.status = bill, "applied"
    payments.record_transfer(session, actor, view, txn)


@dataclass
class Reconciliation:
    applied: list[BankTransaction]
    held: list[BankTransaction]
    unmatched: list[BankTransaction]
    resolved: list[BankTransaction]  # refunded or dismissed by a person

    def total(self, name: str) -> Decimal:
        return sum((t.amount for t in getattr(self, name)), Decimal(0))


def reconcile(session: Session, actor: Actor, start: datetime, end: datetime) -> Reconciliation:
    """Bank credits received in [start, end): matched and applied, held for review, or matching no bill."""
    rows = session.scalars(select(BankTransaction).where(BankTransaction.credited_at >= start,
                                                         BankTransaction.credited_at < end)
                           .order_by(BankTransaction.credited_at, BankTransaction.id)).all()
    audit.record(session, actor, "billing.bank.reconcile", None,
                 {"from": start.isoformat(), "to": end.isoformat(), "credits": len(rows)})
    return Reconciliation([r for r in rows if r.status == "applied"], [r for r in rows if r.status == "held"],
                          [r for r in rows if r.status == "unmatched"],
                          [r for r in rows if r.status in ("refunded", "dismissed")])
