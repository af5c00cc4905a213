"""Who sees the card checks and the exchanges with the insurer's portal."""

from flask_babel import lazy_gettext as _l

from core.permissions import declare

declare("his.gateway.checks", _l("See and repeat BHYT card checks"),
        ["receptionist", "cashier", "insurance_officer", "doctor", "nurse"], "his")
declare("his.gateway.exchanges", _l("Read the exchanges with the BHYT portal"), ["admin", "insurance_officer"], "his")
