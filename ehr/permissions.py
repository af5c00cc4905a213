"""What the medical-record module lets each role do."""

from flask_babel import lazy_gettext as _l

from core.permissions import declare

declare("ehr.record.read", _l("Read medical records of one's own patients"), ["doctor", "nurse"], "ehr")
declare("ehr.record.write", _l("Write medical record documents"), ["doctor", "nurse"], "ehr")
declare("ehr.record.sign", _l("Digitally sign medical record documents"), ["doctor", "nurse"], "ehr")
declare("ehr.record.break_glass", _l("Emergency access to any record (with a reason)"), ["doctor", "nurse"], "ehr")
declare("ehr.record.export", _l("Print and export medical records"), ["doctor"], "ehr")
