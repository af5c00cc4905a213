"""Demo laboratory: a haematology panel of 25 analytes (as a Mindray BC sends it), chemistry tests,
electrolytes, reference ranges by sex, critical limits, and three analyser profiles. Running it
again changes nothing."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from core import audit
from core.audit import Actor
from his.models.orders import Order
from lis import specimens
from lis.models import Analyser, AnalyserCode, LabTest, PanelMember, ReferenceRange, Specimen

D = Decimal
# code, name, LOINC, unit, low, high, critical low, critical high, delta %
CBC = [
    ("WBC", "Số lượng bạch cầu", "6690-2", "10*9/L", "4.0", "10.0", "2.0", "30.0", "50"),
    ("NEU#", "Bạch cầu trung tính (số lượng)", "751-8", "10*9/L", "2.0", "7.0", "0.5", None, None),
    ("LYM#", "Bạch cầu lympho (số lượng)", "731-0", "10*9/L", "0.8", "4.0", None, None, None),
    ("MON#", "Bạch cầu mono (số lượng)", "742-7", "10*9/L", "0.12", "1.2", None, None, None),
    ("EOS#", "Bạch cầu ái toan (số lượng)", "711-2", "10*9/L", "0.02", "0.5", None, None, None),
    ("BAS#", "Bạch cầu ái kiềm (số lượng)", "704-7", "10*9/L", "0.0", "0.1", None, None, None),
    ("NEU%", "Bạch cầu trung tính (%)", "770-8", "%", "50.0", "70.0", None, None, None),
    ("LYM%", "Bạch cầu lympho (%)", "736-9", "%", "20.0", "40.0", None, None, None),
    ("MON%", "Bạch cầu mono (%)", "5905-5", "%", "3.0", "12.0", None, None, None),
    ("EOS%", "Bạch cầu ái toan (%)", "713-8", "%", "0.5", "5.0", None, None, None),
    ("BAS%", "Bạch cầu ái kiềm (%)", "706-2", "%", "0.0", "1.0", None, None, None),
    ("RBC", "Số lượng hồng cầu", "789-8", "10*12/L", None, None, None, None, None),
    ("HGB", "Huyết sắc tố", "718-7", "g/L", None, None, "70", "200", "20"),
    ("HCT", "Hematocrit", "4544-3", "%", None, None, None, None, None),
    ("MCV", "Thể tích trung bình hồng cầu", "787-2", "fL", "80.0", "100.0", None, None, None),
    ("MCH", "Lượng Hb trung bình hồng cầu", "785-6", "pg", "27.0", "34.0", None, None, None),
    ("MCHC", "Nồng độ Hb trung bình hồng cầu", "786-4", "g/L", "320", "360", None, None, None),
    ("RDW-CV", "Độ phân bố hồng cầu (CV)", "788-0", "%", "11.0", "16.0", None, None, None),
    ("RDW-SD", "Độ phân bố hồng cầu (SD)", "21000-5", "fL", "35.0", "56.0", None, None, None),
    ("PLT", "Số lượng tiểu cầu", "777-3", "10*9/L", "150", "450", "20", "1000", "50"),
    ("MPV", "Thể tích trung bình tiểu cầu", "32623-1", "fL", "6.5", "12.0", None, None, None),
    ("PDW", "Độ phân bố tiểu cầu", "32207-3", "fL", "9.0", "17.0", None, None, None),
    ("PCT", "Thể tích khối tiểu cầu", "51637-7", "%", "0.108", "0.282", None, None, None),
    ("P-LCR", "Tỷ lệ tiểu cầu lớn", "48386-7", "%", "11.0", "45.0", None, None, None),
    ("P-LCC", "Số lượng tiểu cầu lớn", "34167-7", "10*9/L", "30", "90", None, None, None),
]
# by sex: code -> ((female low, high), (male low, high))
BY_SEX = {"RBC": (("3.8", "5.0"), ("4.3", "5.8")), "HGB": (("120", "150"), ("130", "170")),
          "HCT": (("35.0", "45.0"), ("39.0", "50.0"))}
# code, name, LOINC, unit, specimen, service, low, high, critical low, critical high, delta %
CHEMISTRY = [
    ("GLU", "Glucose", "2345-7", "mmol/L", "SER", "XN.GLU", "3.9", "6.4", "2.5", "25.0", "50"),
    ("URE", "Urê", "3094-0", "mmol/L", "SER", "XN.URE", "2.5", "7.5", None, None, None),
    ("CREA", "Creatinin", "2160-0", "umol/L", "SER", "XN.CREA", "53", "115", None, "800", "50"),
    ("AST", "AST (GOT)", "1920-8", "U/L", "SER", "XN.AST", None, "37", None, None, None),
    ("ALT", "ALT (GPT)", "1742-6", "U/L", "SER", "XN.ALT", None, "40", None, None, None),
    ("CRP", "CRP", "1988-5", "mg/L", "SER", "XN.CRP", None, "5", None, None, None),
]
ELECTROLYTES = [
    ("NA", "Natri", "2951-2", "mmol/L", "135", "145", "120", "160"),
    ("K", "Kali", "2823-3", "mmol/L", "3.5", "5.0", "2.5", "6.5"),
    ("CL", "Clo", "2075-0", "mmol/L", "98", "106", "80", "120"),
]
# Sysmex XN names where they differ from ours
SYSMEX_NAMES = {"NEU#": "NEUT#", "LYM#": "LYMPH#", "MON#": "MONO#", "EOS#": "EO#", "BAS#": "BASO#",
                "NEU%": "NEUT%", "LYM%": "LYMPH%", "MON%": "MONO%", "EOS%": "EO%", "BAS%": "BASO%"}
# analyser code, name, sender, protocol, version, order message, specimen field
ANALYSERS = [
    ("BC5380", "Mindray BC-5380 (huyết học)", "BC-5380^Mindray", "hl7", "2.3.1", "ORM^O01", "OBR-3"),
    ("BS480", "Mindray BS-480 (sinh hoá)", "BS-480^Mindray", "hl7", "2.3.1", "ORM^O01", "OBR-2"),
    ("XN1000", "Sysmex XN-1000 (ASTM)", "XN-1000^Sysmex", "astm", "2.5.1", "OML^O21", None),
]


def _get_or_add(session: Session, model, key: dict, values: dict):
    row = session.scalar(select(model).filter_by(**key))
    if row is None:
        row = model(**key, **values)
        session.add(row)
        session.flush()
    return row


def _num(value):
    return None if value is None else D(value)


def _range(session: Session, test: LabTest, sex, low, high, crit_low, crit_high) -> None:
    _get_or_add(session, ReferenceRange, {"test_id": test.id, "sex": sex},
                {"low": _num(low), "high": _num(high), "critical_low": _num(crit_low),
                 "critical_high": _num(crit_high)})


def seed_catalogue(session: Session) -> dict[str, LabTest]:
    tests: dict[str, LabTest] = {}
    cbc = _get_or_add(session, LabTest, {"code": "CBC"},
                      {"name": "Tổng phân tích tế bào máu ngoại vi", "specimen_type": "WB", "is_panel": True,
                       "service_code": "XN.CTM", "value_type": "NM"})
    tests["CBC"] = cbc
    for position, (code, name, loinc, unit, low, high, crit_low, crit_high, delta) in enumerate(CBC):
        test = _get_or_add(session, LabTest, {"code": code},
                           {"name": name, "loinc": loinc, "unit": unit, "specimen_type": "WB", "value_type": "NM",
                            "delta_percent": _num(delta), "position": position})
        tests[code] = test
        _get_or_add(session, PanelMember, {"panel_id": cbc.id, "test_id": test.id}, {"position": position})
        if code in BY_SEX:
            for sex, (s_low, s_high) in zip(("female", "male"), BY_SEX[code], strict=True):
                _range(session, test, sex, s_low, s_high, crit_low, crit_high)
        else:
            _range(session, test, None, low, high, crit_low, crit_high)
    for position, (code, name, loinc, unit, specimen, service, low, high, crit_low, crit_high, delta) in \
            enumerate(CHEMISTRY):
        test = _get_or_add(session, LabTest, {"code": code},
                           {"name": name, "loinc": loinc, "unit": unit, "specimen_type": specimen, "value_type": "NM",
                            "service_code": service, "delta_percent": _num(delta), "position": 100 + position})
        tests[code] = test
        _range(session, test, None, low, high, crit_low, crit_high)
    panel = _get_or_add(session, LabTest, {"code": "DGD"},
                        {"name": "Điện giải đồ (Na, K, Cl)", "specimen_type": "SER", "is_panel": True,
                         "service_code": "XN.DGD", "value_type": "NM"})
    for position, (code, name, loinc, unit, low, high, crit_low, crit_high) in enumerate(ELECTROLYTES):
        test = _get_or_add(session, LabTest, {"code": code},
                           {"name": name, "loinc": loinc, "unit": unit, "specimen_type": "SER", "value_type": "NM",
                            "position": 200 + position})
        tests[code] = test
        _get_or_add(session, PanelMember, {"panel_id": panel.id, "test_id": test.id}, {"position": position})
        _range(session, test, None, low, high, crit_low, crit_high)
    hbsag = _get_or_add(session, LabTest, {"code": "HBSAG"},
                        {"name": "HBsAg test nhanh", "specimen_type": "SER", "value_type": "ST",
                         "service_code": "XN.HBSAG", "position": 300})
    _get_or_add(session, ReferenceRange, {"test_id": hbsag.id, "sex": None}, {"text": "Âm tính"})
    tests["HBSAG"] = hbsag
    return tests


def seed_analysers(session: Session, tests: dict[str, LabTest]) -> dict[str, Analyser]:
    made = {}
    for code, name, sender, protocol, version, order_message, specimen_field in ANALYSERS:
        made[code] = _get_or_add(session, Analyser, {"code": code},
                                 {"name": name, "sender": sender, "protocol": protocol, "hl7_version": version,
                                  "order_message": order_message, "specimen_field": specimen_field, "quirks": {}})
    for code, *_rest in CBC:
        _get_or_add(session, AnalyserCode, {"analyser_id": made["BC5380"].id, "code": code},
                    {"test_id": tests[code].id})
        sysmex = SYSMEX_NAMES.get(code, code)
        _get_or_add(session, AnalyserCode, {"analyser_id": made["XN1000"].id, "code": sysmex},
                    {"test_id": tests[code].id})
    for number, (code, *_rest) in enumerate(CHEMISTRY + ELECTROLYTES, start=1):
        _get_or_add(session, AnalyserCode, {"analyser_id": made["BS480"].id, "code": str(number)},
                    {"test_id": tests[code].id})
    return made


def seed(session: Session, actor: Actor) -> None:
    existed = session.scalar(select(LabTest.id).limit(1)) is not None
    tests = seed_catalogue(session)
    seed_analysers(session, tests)
    if not existed:
        audit.record(session, actor, "lis.catalogue.seed", None, {"tests": len(tests)})
    # his's demo placed lab orders before this catalogue existed: give them their tubes now
    waiting = select(Order).where(Order.kind == "lab", Order.status.in_(("placed", "in_progress")),
                                  ~select(Specimen.id).where(Specimen.order_id == Order.id).exists())
    for order in session.scalars(waiting).all():
        specimens.create_for_order(session, actor, order)
