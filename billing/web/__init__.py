"""billing's screens: the cashier's desk (bills, payments, QR, shifts), the bank webhook and the
reconciliation report, the insurance officer's claims; and a panel on the his encounter page."""

from __future__ import annotations

from flask import current_app, render_template

from billing import settings as billing_settings
from core.web import NavEntry, add_nav


def conf():
    return current_app.extensions["billing.settings"]


def _panel(encounter) -> str:
    from sqlalchemy import select

    from billing.models import Bill, Claim
    from core.web import db_session

    bill = db_session().scalar(select(Bill).where(Bill.encounter_id == encounter.id))
    claims = db_session().scalars(select(Claim).where(Claim.encounter_id == encounter.id)).all()
    return render_template("billing/_panel.html", encounter=encounter, bill=bill, claims=claims)


def init_app(app) -> None:
    from flask_babel import lazy_gettext as _l

    from billing.web import cashier, claims_web
    from his.web import panels

    app.extensions["billing.settings"] = billing_settings.load(app.extensions["vnhis.config"])
    app.register_blueprint(cashier.bp)
    app.register_blueprint(claims_web.bp)
    add_nav(app, NavEntry("billing_cashier.desk", _l("Cashier"), "billing.payment.take", _l("Billing"), 600))
    add_nav(app, NavEntry("billing_claims.index", _l("BHYT claims"), "billing.claim.export", _l("Billing"), 610))
    panels.add(app, "encounter", "billing", _panel, order=600, permission="billing.charge.read")
