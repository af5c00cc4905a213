"""The forms vnhis ships, as data: the bệnh án of TT 32/2023 PL XXVIII (01/BV1 internal medicine,
02/BV1 paediatrics, 05/BV1 obstetrics, 10/BV1 surgery, 15/BV1 general outpatient), the sheets of PL XXIX
(36/BV2 treatment sheet, 37/BV2 care sheet, 06/BV2 surgery/procedure report, 27/BV2 consultation minutes)
and the discharge paper and referral letter.

The administrative part (sections I–IV of 01/BV1) is not retyped: it is printed from his (patient,
encounter, diagnoses). Layouts follow ../shared/reference/emr.md §4.3 and must be checked field by
field against PL XXVIII before a hospital relies on them.
"""

from __future__ import annotations

from decimal import Decimal

from flask_babel import lazy_gettext as _l

from ehr.forms import Field, Form, Section

D = Decimal
DISCHARGE_RESULTS = (("cured", _l("Cured")), ("improved", _l("Improved")), ("unchanged", _l("Unchanged")),
                     ("worse", _l("Worse")), ("died", _l("Died")))


def _vitals(required: bool = False) -> Section:
    return Section("vitals", _l("Vital signs"), (
        Field("pulse", _l("Pulse (beats/min)"), "int", required, low=D(20), high=D(250)),
        Field("temperature", _l("Temperature (°C)"), "decimal", required, low=D(30), high=D(45)),
        Field("blood_pressure", _l("Blood pressure (mmHg)"), "text", required, max_length=15),
        Field("respiratory_rate", _l("Respiratory rate (breaths/min)"), "int", low=D(5), high=D(80)),
        Field("weight", _l("Weight (kg)"), "decimal", low=D("0.3"), high=D(300)),
    ))


def _history() -> Section:
    return Section("history", _l("II. History"), (
        Field("illness_course", _l("Course of the illness"), "textarea", True),
        Field("personal_history", _l("Personal history (allergies, drugs, alcohol, tobacco…)"), "textarea"),
        Field("family_history", _l("Family history"), "textarea"),
    ))


def _diagnosis(title) -> Section:
    return Section("diagnosis", title, (
        Field("principal_icd", _l("Principal diagnosis (ICD-10)"), "icd10", True),
        Field("comorbidity_icd", _l("Comorbidity (ICD-10)"), "icd10", position="secondary"),
        Field("differential", _l("Differential diagnosis"), "textarea"),
    ))


def _conclusion() -> Section:
    return Section("plan", _l("V–VI. Prognosis and treatment plan"), (
        Field("prognosis", _l("Prognosis"), "textarea"),
        Field("treatment_plan", _l("Treatment plan"), "textarea", True),
    ))


def _record(code: str, title, specific: Section, for_kinds=("inpatient", "emergency", "day_treatment")) -> Form:
    return Form(code, title, "record", (
        Section("admission", _l("I. Reason for admission"), (
            Field("admission_reason", _l("Reason for admission"), "textarea", True),
            Field("illness_day", _l("Day of the illness"), "int", low=D(0), high=D(3650)),
        )),
        _history(),
        _vitals(required=True),
        Section("examination", _l("III. Examination"), (
            Field("general", _l("General examination"), "textarea", True),
            Field("organs", _l("Organ systems"), "textarea", True),
            Field("tests_ordered", _l("Paraclinical tests to order"), "textarea"),
            Field("summary", _l("Case summary"), "textarea", True),
        )),
        specific,
        _diagnosis(_l("IV. Diagnosis on admission to the department")),
        _conclusion(),
    ), for_kinds=for_kinds)


INTERNAL = _record("01/BV1", _l("Internal medicine record"), Section("internal", _l("Internal medicine"), (
    Field("risk_factors", _l("Risk factors"), "textarea"),
)))
PAEDIATRICS = _record("02/BV1", _l("Paediatrics record"), Section("paediatrics", _l("Paediatrics"), (
    Field("birth_history", _l("Birth history (term, weight at birth)"), "textarea", True),
    Field("vaccinations", _l("Vaccinations"), "textarea"),
    Field("nutrition", _l("Nutrition and development"), "textarea"),
    Field("height", _l("Height (cm)"), "decimal", low=D(20), high=D(220)),
)))
OBSTETRICS = _record("05/BV1", _l("Obstetrics record"), Section("obstetrics", _l("Obstetrics"), (
    Field("last_menstrual_period", _l("Last menstrual period"), "date", True),
    Field("gestational_weeks", _l("Gestational age (weeks)"), "int", True, low=D(4), high=D(45)),
    Field("para", _l("Para (term, preterm, abortions, living)"), "text", True, max_length=20),
    Field("fetal_heart_rate", _l("Fetal heart rate (beats/min)"), "int", low=D(60), high=D(220)),
    Field("membranes", _l("Membranes"), "choice", options=(("intact", _l("Intact")), ("ruptured", _l("Ruptured")))),
)))
SURGERY = _record("10/BV1", _l("Surgery record"), Section("surgery", _l("Surgery"), (
    Field("surgical_site", _l("Site of the lesion"), "textarea", True),
    Field("indication", _l("Indication for surgery"), "choice",
          options=(("none", _l("No surgery")), ("elective", _l("Elective")), ("emergency", _l("Emergency")))),
    Field("planned_procedure", _l("Planned procedure"), "textarea", required_if=("indication", "elective")),
)))
OUTPATIENT = Form("15/BV1", _l("Outpatient record"), "record", (
    Section("period", _l("Treatment period"), (
        Field("outpatient_number", _l("Outpatient number"), "text", True, max_length=30),
        Field("period_from", _l("From"), "date", True),
        Field("period_to", _l("To"), "date"),
    )),
    Section("visit", _l("Examination"), (
        Field("admission_reason", _l("Reason for the visit"), "textarea", True),
        Field("illness_course", _l("Course of the illness"), "textarea", True),
        Field("general", _l("Examination"), "textarea", True),
    )),
    _vitals(),
    _diagnosis(_l("Diagnosis")),
    Section("plan", _l("Treatment"), (Field("treatment_plan", _l("Treatment plan"), "textarea", True),)),
), for_kinds=("outpatient", "emergency", "day_treatment"))

TREATMENT_SHEET = Form("36/BV2", _l("Treatment sheet"), "sheet", (
    Section("progress", _l("Progress and orders"), (
        Field("progress", _l("Course of the illness"), "textarea", True),
        Field("orders", _l("Medical orders"), "textarea", True),
        Field("diagnosis_icd", _l("Current diagnosis (ICD-10)"), "icd10"),
    )),
    _vitals(),
))
CARE_SHEET = Form("37/BV2", _l("Care sheet"), "sheet", (
    Section("care", _l("Care"), (
        Field("care_level", _l("Care level"), "choice", True,
              options=(("1", _l("Level 1")), ("2", _l("Level 2")), ("3", _l("Level 3")))),
        Field("observations", _l("Observations"), "textarea", True),
        Field("interventions", _l("Nursing interventions"), "textarea", True),
    )),
    _vitals(),
), signers=("nurse",))
DISCHARGE = Form("GRV", _l("Discharge paper"), "paper", (
    Section("stay", _l("Stay"), (
        Field("admitted_on", _l("Admitted on"), "date", True),
        Field("discharged_on", _l("Discharged on"), "date", True),
        Field("principal_icd", _l("Diagnosis (ICD-10)"), "icd10", True),
        Field("result", _l("Result of treatment"), "choice", True, options=DISCHARGE_RESULTS),
        Field("treatment", _l("Treatment methods"), "textarea", True),
        Field("advice", _l("Advice and follow-up"), "textarea"),
    )),
), for_kinds=("inpatient", "day_treatment", "emergency"))
REFERRAL = Form("GCT", _l("Referral letter"), "paper", (
    Section("referral", _l("Referral"), (
        Field("to_facility", _l("Referred to (facility)"), "text", True, max_length=200),
        Field("to_facility_code", _l("Facility code"), "text", max_length=5),
        Field("reason", _l("Reason for referral"), "choice", True,
              options=(("professional", _l("Beyond our professional capacity")),
                       ("request", _l("At the patient's request")))),
        Field("principal_icd", _l("Diagnosis (ICD-10)"), "icd10", True),
        Field("clinical_summary", _l("Clinical signs and paraclinical results"), "textarea", True),
        Field("treatment_given", _l("Treatment given"), "textarea", True),
        Field("condition", _l("Condition at transfer"), "textarea", True),
        Field("transport", _l("Means of transport"), "text", max_length=100),
    )),
))
OPERATION = Form("06/BV2", _l("Surgery or procedure report"), "sheet", (
    Section("operation", _l("Surgery or procedure"), (
        Field("operation_kind", _l("Kind"), "choice", True,
              options=(("surgery", _l("Surgery")), ("procedure", _l("Procedure")))),
        Field("started_at", _l("Started at"), "datetime", True),
        Field("ended_at", _l("Ended at"), "datetime"),
        Field("preop_icd", _l("Diagnosis before (ICD-10)"), "icd10", True),
        Field("postop_icd", _l("Diagnosis after (ICD-10)"), "icd10", position="secondary"),
        Field("method", _l("Method"), "textarea", True),
        Field("anaesthesia", _l("Anaesthesia method"), "text", max_length=200),
        Field("surgeon", _l("Surgeon or operator"), "text", True, max_length=200),
        Field("anaesthetist", _l("Anaesthetist"), "text", max_length=200),
        Field("description", _l("Course of the operation"), "textarea", True),
    )),
))
CONSULTATION = Form("27/BV2", _l("Consultation minutes (extract)"), "sheet", (
    Section("consultation", _l("Consultation"), (
        Field("held_at", _l("Held at"), "datetime", True),
        Field("chair", _l("Chaired by"), "text", True, max_length=200),
        Field("members", _l("Members"), "textarea", True),
        Field("summary", _l("Summary of the course and treatment"), "textarea", True),
        Field("conclusion", _l("Conclusion (diagnosis)"), "textarea", True),
        Field("treatment", _l("Treatment decided"), "textarea", True),
    )),
))
LAB_RESULT = Form("XN", _l("Laboratory results"), "result", (
    Section("lab", _l("Laboratory results"), (
        Field("specimen_barcode", _l("Specimen"), "text"),
        Field("released_by", _l("Released by"), "text"),
        Field("released_at", _l("Released at"), "datetime"),
        Field("results_text", _l("Results"), "textarea"),
    )),
), entered=False)
IMAGING_REPORT = Form("CDHA", _l("Imaging report"), "result", (
    Section("imaging", _l("Imaging report"), (
        Field("procedure", _l("Procedure"), "text"),
        Field("modality", _l("Modality"), "text"),
        Field("accession_number", _l("Accession number"), "text"),
        Field("findings", _l("Findings"), "textarea"),
        Field("conclusion", _l("Conclusion"), "textarea"),
        Field("signed_by", _l("Reported by"), "text"),
        Field("signed_at", _l("Reported at"), "datetime"),
    )),
), entered=False)

FORMS = {f.code: f for f in (INTERNAL, PAEDIATRICS, OBSTETRICS, SURGERY, OUTPATIENT, TREATMENT_SHEET, CARE_SHEET,
                             OPERATION, CONSULTATION, DISCHARGE, REFERRAL, LAB_RESULT, IMAGING_REPORT)}
RECORD_FORMS = {c: f for c, f in FORMS.items() if f.kind == "record"}
