"""What the imaging module lets each role do."""

from flask_babel import lazy_gettext as _l

from core.permissions import declare

declare("pacs.image.view", _l("View images"), ["doctor", "radiographer", "radiologist"], "pacs")
declare("pacs.image.store", _l("Store images and manage the worklist"), ["radiographer", "integration"], "pacs")
declare("pacs.report.write", _l("Write and sign imaging reports"), ["radiologist"], "pacs")
declare("pacs.admin", _l("Manage remote DICOM nodes"), ["admin"], "pacs")
