"""What the laboratory module lets each role do."""

from flask_babel import lazy_gettext as _l

from core.permissions import declare

declare("lis.specimen.collect", _l("Collect and receive specimens"), ["nurse", "lab_technician"], "lis")
declare("lis.result.enter", _l("Enter and import lab results"), ["lab_technician", "integration"], "lis")
declare("lis.result.validate_technical", _l("Technical validation of lab results"), ["lab_technician"], "lis")
declare("lis.result.validate_medical", _l("Medical validation and release of lab results"), ["lab_physician"],
        "lis")
declare("lis.result.read", _l("View lab results"), ["doctor", "nurse", "lab_technician", "lab_physician"], "lis")
declare("lis.critical.acknowledge", _l("Acknowledge critical lab values"), ["doctor", "lab_physician"], "lis")
declare("lis.admin", _l("Edit the lab catalogue and analyser profiles"), ["admin", "lab_physician"], "lis")
