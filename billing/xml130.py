"""Claims in the QĐ 130 format (as amended by QĐ 4750): the check-in table, XML1, XML2, XML3, XML4 (the
results lis and pacs released, billing.results), XML5 and, for a discharged inpatient, XML7 (giấy ra
viện) — built from a claimdata.Episode. The standard field names and code values live here and in
xml4210.py only.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal

from billing.claimdata import Episode, Line
from billing.terms import BED_GROUPS, SUPPLY_GROUPS
from his.admission import DEFAULT_TZ

FORMAT = "qd130"
SEX = {"male": "1", "female": "2", "unknown": "3"}
CARE_TYPE = {"outpatient": "01", "emergency": "01", "inpatient": "03", "day_treatment": "04"}
NO_TREATMENT_DAYS = ("01", "07", "09")  # SO_NGAY_DTRI = 0 for these
CLINICAL_COURSE_TYPES = ("02", "03", "04", "05", "06", "08", "09")  # XML5 is sent for these
# MA_DOITUONG_KCB from how the patient came (the DMDC list of QĐ 824 and later) [U]: correct this table.
VISIT_CATEGORY = {"correct": "1.1", "referred": "1.3", "emergency": "2", "self_referred": "3.1", None: "9"}
OUTCOME = {"cured": "1", "improved": "2", "unchanged": "3", "worse": "4", "died": "5"}
OUTCOME_UNKNOWN = "7"  # an exam visit records no outcome: "chưa xác định"
DISCHARGE = {"home": "1", "referred": "2", "absconded": "3", "at_request": "4", "referred_at_request": "5"}
NATIONALITY = {"VN": "000"}  # TT 07/2016/TT-BCA codes; others must be added here
# DUONG_DUNG codes for the routes written in the drug catalogue [U]: the official list is the route
# annex of the DMDC (QĐ 5937 and later); correct this table from it.
ROUTES = {"uống": "1.01", "ngậm": "1.02", "tiêm": "2.01", "tiêm bắp": "2.02", "tiêm dưới da": "2.03",
          "tiêm tĩnh mạch": "2.04", "tiêm truyền tĩnh mạch": "2.15", "khí dung": "4.01", "đường hô hấp": "4.02",
          "dùng ngoài": "3.01", "nhỏ mắt": "3.05"}
FEE_FOR_SERVICE = "1"  # MA_PTTT
FUND = "1"  # NGUON_CTRA: quỹ BHYT


def dt12(value: datetime | None) -> str:
    return value.astimezone(DEFAULT_TZ).strftime("%Y%m%d%H%M") if value else ""


def d8(value: date | None) -> str:
    return value.strftime("%Y%m%d") if value else ""


def amount(value: Decimal) -> str:
    return f"{value.quantize(Decimal('0.01'), rounding=ROUND_HALF_UP):f}"


def number(value: Decimal) -> str:
    """Quantities and unit prices: up to 3 decimals, no trailing zeros, no exponent."""
    text = f"{value.quantize(Decimal('0.001'), rounding=ROUND_HALF_UP):f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def birth12(ep: Episode) -> str:
    if ep.birth_date is not None:
        return ep.birth_date.strftime("%Y%m%d") + "0000"
    return f"{ep.birth_year:04d}00000000"


def care_type(ep: Episode) -> str:
    return CARE_TYPE[ep.kind]


def treatment_days(ep: Episode) -> str:
    if care_type(ep) in NO_TREATMENT_DAYS or ep.ended_at is None:
        return "0"
    start = (ep.inpatient_at or ep.started_at).astimezone(DEFAULT_TZ).date()
    return str((ep.ended_at.astimezone(DEFAULT_TZ).date() - start).days + 1)


def outcome(ep: Episode) -> str:
    if ep.outcome == "worse" and ep.discharge_type == "at_request":
        return "6"  # tiên lượng nặng xin về
    return OUTCOME.get(ep.outcome, OUTCOME_UNKNOWN)


def _icds(ep: Episode) -> str:
    return ";".join(ep.other_icds)


def settlement(ep: Episode, made_on: date) -> tuple[str, str]:
    when = ep.ended_at.astimezone(DEFAULT_TZ).date() if ep.ended_at else made_on
    return str(when.year), str(when.month)


def xml1(ep: Episode, facility_code: str, head_id: str | None, made_on: date) -> dict:
    year, month = settlement(ep, made_on)
    weight = ep.supplement.get("weight_kg")
    return {
        "MA_LK": ep.link_key, "STT": "1", "MA_BN": ep.patient_code, "HO_TEN": ep.full_name,
        "SO_CCCD": ep.national_id, "NGAY_SINH": birth12(ep), "GIOI_TINH": SEX[ep.sex],
        "NHOM_MAU": ep.supplement.get("blood_group"), "MA_QUOCTICH": NATIONALITY.get(ep.nationality),
        "MA_DANTOC": ep.ethnicity, "MA_NGHE_NGHIEP": ep.occupation, "DIA_CHI": ep.address,
        "MATINH_CU_TRU": ep.province, "MAHUYEN_CU_TRU": ep.district, "MAXA_CU_TRU": ep.ward,
        "DIEN_THOAI": ep.phone, "MA_THE_BHYT": ep.card_number, "MA_DKBD": ep.card_facility,
        "GT_THE_TU": d8(ep.card_from), "GT_THE_DEN": d8(ep.card_to), "LY_DO_VV": ep.reason,
        "LY_DO_VNT": ep.admission_reason, "CHAN_DOAN_VAO": ep.main_text, "CHAN_DOAN_RV": "; ".join(ep.diagnosis_texts),
        "MA_BENH_CHINH": ep.main_icd, "MA_BENH_KT": _icds(ep), "MA_DOITUONG_KCB": VISIT_CATEGORY[ep.route],
        "MA_NOI_DI": ep.referred_from, "NGAY_VAO": dt12(ep.started_at), "NGAY_VAO_NOI_TRU": dt12(ep.inpatient_at),
        "NGAY_RA": dt12(ep.ended_at), "GIAY_CHUYEN_TUYEN": ep.referral_number, "SO_NGAY_DTRI": treatment_days(ep),
        "PP_DIEU_TRI": ep.discharge_note, "KET_QUA_DTRI": outcome(ep),
        "MA_LOAI_RV": DISCHARGE.get(ep.discharge_type, "1"), "NGAY_TTOAN": dt12(ep.settled_at),
        "T_THUOC": amount(ep.drug_total), "T_VTYT": amount(ep.supply_total), "T_TONGCHI_BV": amount(ep.total("cost")),
        "T_TONGCHI_BH": amount(ep.total("in_scope")), "T_BNTT": amount(ep.total("self_pay")),
        "T_BNCCT": amount(ep.total("copay")), "T_BHTT": amount(ep.total("insurer")), "T_NGUONKHAC": "0.00",
        "T_BHTT_GDV": amount(ep.total("insurer")), "NAM_QT": year, "THANG_QT": month, "MA_LOAI_KCB": care_type(ep),
        "MA_KHOA": ";".join(ep.department_codes), "MA_CSKCB": facility_code,
        "CAN_NANG": f"{Decimal(str(weight)):.2f}" if weight is not None else None,
        "NAM_NAM_LIEN_TUC": d8(ep.continuous_since), "MA_HSBA": ep.link_key, "MA_TTDV": head_id,
    }


def _money_fields(line: Line) -> dict:
    return {"THANH_TIEN_BV": amount(line.cost), "THANH_TIEN_BH": amount(line.in_scope),
            "T_NGUONKHAC_NSNN": "0.00", "T_NGUONKHAC_VTNN": "0.00", "T_NGUONKHAC_VTTN": "0.00",
            "T_NGUONKHAC_CL": "0.00", "T_NGUONKHAC": "0.00", "MUC_HUONG": str(line.benefit),
            "T_BNTT": amount(line.self_pay), "T_BNCCT": amount(line.copay), "T_BHTT": amount(line.insurer)}


def xml2(ep: Episode) -> list[dict]:
    rows = []
    for n, line in enumerate(ep.drug_lines, start=1):
        rows.append({
            "MA_LK": ep.link_key, "STT": str(n), "MA_THUOC": line.code, "MA_NHOM": str(line.cost_group),
            "TEN_THUOC": line.name, "DON_VI_TINH": line.unit, "HAM_LUONG": line.strength,
            "DUONG_DUNG": ROUTES.get((line.route or "").strip().lower()), "LIEU_DUNG": line.dosage,
            "SO_DANG_KY": line.registration_number, "TT_THAU": line.tender,
            "PHAM_VI": "1" if line.in_scope_item else "2", "TYLE_TT_BH": str(line.payment_ratio),
            "SO_LUONG": number(line.quantity), "DON_GIA": number(line.unit_price), **_money_fields(line),
            "MA_KHOA": line.department_code, "MA_BAC_SI": line.doctor_code or ep.doctor_code,
            "NGAY_YL": dt12(line.ordered_at), "NGAY_TH_YL": dt12(line.executed_at), "MA_PTTT": FEE_FOR_SERVICE,
            "NGUON_CTRA": FUND})
    return rows


def xml3(ep: Episode) -> list[dict]:
    rows = []
    for n, line in enumerate(ep.service_lines, start=1):
        supply = line.cost_group in SUPPLY_GROUPS
        rows.append({
            "MA_LK": ep.link_key, "STT": str(n), "MA_DICH_VU": None if supply else line.code,
            "MA_VAT_TU": line.code if supply else None, "MA_NHOM": str(line.cost_group),
            "TEN_VAT_TU": line.name if supply else None, "TEN_DICH_VU": None if supply else line.name,
            "DON_VI_TINH": line.unit, "PHAM_VI": "1" if line.in_scope_item else "2", "SO_LUONG": number(line.quantity),
            "DON_GIA_BV": number(line.unit_price), "DON_GIA_BH": number(line.insurer_unit_price),
            "TT_THAU": line.tender, "TYLE_TT_DV": "100", "TYLE_TT_BH": str(line.payment_ratio), **_money_fields(line),
            "MA_KHOA": line.department_code, "MA_GIUONG": line.bed_code if line.cost_group in BED_GROUPS else None,
            "MA_BAC_SI": line.doctor_code or ep.doctor_code, "NGUOI_THUC_HIEN": line.performer_code,
            "MA_BENH": ";".join(line.diagnosis_codes), "NGAY_YL": dt12(line.ordered_at),
            "NGAY_TH_YL": dt12(line.executed_at), "NGAY_KQ": dt12(line.result_at), "MA_PTTT": FEE_FOR_SERVICE,
            "MA_MAY": line.machine_code})
    return rows


def xml4(ep: Episode) -> list[dict]:
    return [{"MA_LK": ep.link_key, "STT": str(n), "MA_DICH_VU": r.service_code, "MA_CHI_SO": r.code,
             "TEN_CHI_SO": r.name, "GIA_TRI": r.value, "DON_VI_DO": r.unit, "MO_TA": r.description,
             "KET_LUAN": r.conclusion, "NGAY_KQ": dt12(r.reported_at)} for n, r in enumerate(ep.results, start=1)]


def xml5(ep: Episode) -> list[dict]:
    """The clinical course as his recorded it: why the patient was admitted, and the discharge note."""
    notes = [(ep.admission_reason, ep.inpatient_at), (ep.discharge_note, ep.ended_at)]
    return [{"MA_LK": ep.link_key, "STT": str(n), "DIEN_BIEN_LS": text, "THOI_DIEM_DBLS": dt12(at),
             "NGUOI_THUC_HIEN": ep.doctor_code}
            for n, (text, at) in enumerate([(t, a) for t, a in notes if t and a], start=1)]


def xml7(ep: Episode, head_id: str | None) -> dict:
    return {"MA_LK": ep.link_key, "SO_LUU_TRU": ep.link_key, "MA_YTE": ep.patient_code,
            "MA_KHOA_RV": ep.department_codes[-1] if ep.department_codes else None, "NGAY_VAO": dt12(ep.started_at),
            "NGAY_RA": dt12(ep.ended_at), "CHAN_DOAN_RV": "; ".join(ep.diagnosis_texts),
            "PP_DIEUTRI": ep.discharge_note,
            "MA_TTDV": head_id, "MA_BS": ep.doctor_code, "TEN_BS": ep.doctor_name,
            "NGAY_CT": d8(ep.ended_at.astimezone(DEFAULT_TZ).date() if ep.ended_at else None)}


def checkin(ep: Episode, facility_code: str) -> dict:
    """The check-in record (state of the visit at its start), with the first cost that arose."""
    first = min(ep.lines, key=lambda x: x.ordered_at, default=None)
    kind = None if first is None else ("drug" if first in ep.drug_lines else
                                       "supply" if first.cost_group in SUPPLY_GROUPS else "service")
    return {"MA_LK": ep.link_key, "STT": "1", "MA_BN": ep.patient_code, "HO_TEN": ep.full_name,
            "SO_CCCD": ep.national_id, "NGAY_SINH": birth12(ep), "GIOI_TINH": SEX[ep.sex],
            "MA_THE_BHYT": ep.card_number, "MA_DKBD": ep.card_facility, "GT_THE_TU": d8(ep.card_from),
            "GT_THE_DEN": d8(ep.card_to), "MA_DOITUONG_KCB": VISIT_CATEGORY[ep.route],
            "NGAY_VAO": dt12(ep.started_at), "NGAY_VAO_NOI_TRU": dt12(ep.inpatient_at),
            "LY_DO_VNT": ep.admission_reason,
            "MA_LOAI_KCB": care_type(ep), "MA_CSKCB": facility_code,
            "MA_DICH_VU": first.code if kind == "service" else None,
            "TEN_DICH_VU": first.name if kind == "service" else None,
            "MA_THUOC": first.code if kind == "drug" else None, "TEN_THUOC": first.name if kind == "drug" else None,
            "MA_VAT_TU": first.code if kind == "supply" else None,
            "TEN_VAT_TU": first.name if kind == "supply" else None,
            "NGAY_YL": dt12(first.ordered_at) if first else dt12(ep.started_at)}


def tables(ep: Episode, facility_code: str, head_id: str | None, made_on: date) -> dict[str, list[dict]]:
    """The tables of one claim (HOSO), by LOAIHOSO, each a list of rows."""
    result = {"CHECKIN": [checkin(ep, facility_code)], "XML1": [xml1(ep, facility_code, head_id, made_on)]}
    drugs, services = xml2(ep), xml3(ep)
    if drugs:
        result["XML2"] = drugs
    if services:
        result["XML3"] = services
    if ep.results:
        result["XML4"] = xml4(ep)
    if care_type(ep) in CLINICAL_COURSE_TYPES:
        result["XML5"] = xml5(ep)
    if ep.kind in ("inpatient", "day_treatment") and ep.ended_at is not None:
        result["XML7"] = [xml7(ep, head_id)]
    return result
