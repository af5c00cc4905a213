"""What the hospital backbone lets each role do."""

from flask_babel import lazy_gettext as _l

from core.permissions import declare

CLINICAL = ["doctor", "nurse"]
EVERY_STAFF = ["receptionist", "doctor", "nurse", "lab_technician", "lab_physician", "radiographer",
               "radiologist", "pharmacist", "cashier", "insurance_officer"]

declare("his.patient.read", _l("View patients"), EVERY_STAFF, "his")
declare("his.patient.write", _l("Register and edit patients"), ["receptionist", *CLINICAL], "his")
declare("his.patient.merge", _l("Merge and unmerge patients"), ["admin", "receptionist"], "his")
declare("his.encounter.read", _l("View encounters"), EVERY_STAFF, "his")
declare("his.encounter.write", _l("Open and update encounters"), ["receptionist", *CLINICAL], "his")
declare("his.queue.manage", _l("Issue and call queue tickets"),
        ["receptionist", "doctor", "nurse", "lab_technician", "radiographer", "pharmacist", "cashier"], "his")
declare("his.order.create", _l("Place orders (tests, imaging, drugs)"), ["doctor"], "his")
declare("his.adt.manage", _l("Admit, transfer and discharge; assign beds"), CLINICAL, "his")
declare("his.pharmacy.dispense", _l("Receive and dispense pharmacy stock"), ["pharmacist"], "his")
declare("his.catalog.manage", _l("Edit catalogues, departments and staff"), ["admin"], "his")
