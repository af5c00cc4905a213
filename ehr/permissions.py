"""What the medical-record module lets each role do. Reading and copying (print, export) are separate
(Luật KCB Đ69 k3 a); restore is its own right (CV 365 III.1.1 c). Which record a holder may open is
decided per record by ehr.access (care team, department, break-glass, grants)."""

from flask_babel import lazy_gettext as _l

from core.permissions import declare

declare("ehr.record.read", _l("Read medical records of one's own patients"), ["doctor", "nurse"], "ehr")
declare("ehr.record.write", _l("Write medical record documents"), ["doctor", "nurse"], "ehr")
declare("ehr.record.sign", _l("Digitally sign medical record documents"), ["doctor", "nurse"], "ehr")
declare("ehr.record.break_glass", _l("Emergency access to any record (with a reason)"), ["doctor", "nurse"], "ehr")
declare("ehr.record.export", _l("Print and export medical records"), ["doctor"], "ehr")
declare("ehr.record.restore", _l("Restore cancelled medical record documents"), ["doctor"], "ehr")
declare("ehr.record.review", _l("Review emergency accesses and record access history"), ["admin"], "ehr")
declare("ehr.record.purge", _l("Destroy medical records at the end of their retention"), ["admin"], "ehr")
