"""What the billing module lets each role do."""

from flask_babel import lazy_gettext as _l

from core.permissions import declare

declare("billing.charge.read", _l("View charges and bills"), ["cashier", "insurance_officer"], "billing")
declare("billing.payment.take", _l("Take payments and refunds"), ["cashier"], "billing")
declare("billing.claim.export", _l("Check and export BHYT claims"), ["insurance_officer"], "billing")
declare("billing.claim.submit", _l("Submit BHYT claims to the insurer"), ["insurance_officer"], "billing")
declare("billing.charge.adjust", _l("Add manual adjustments to a bill"), ["cashier"], "billing")
# Resolving a held or unmatched credit moves money onto a bill: the cashiers' desk (its supervisor) and admins.
declare("billing.bank.review", _l("Review and resolve bank credits (reconciliation)"), ["cashier", "admin"],
        "billing")
