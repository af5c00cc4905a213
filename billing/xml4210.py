"""Claims in the legacy QĐ 4210 format (XML1–XML5), for encounters of the time before QĐ 130.
Field names and codes of that format live here only."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from billing import xml130
from billing.claimdata import Episode
from billing.terms import BED_GROUPS, SUPPLY_GROUPS
from billing.xml130 import amount, d8, dt12, number

FORMAT = "4210"
CARE_TYPE = {"outpatient": "1", "emergency": "1", "inpatient": "3", "day_treatment": "3"}
VISIT_REASON = {"correct": "1", "referred": "1", "emergency": "2", "self_referred": "3", None: "3"}
OUTCOME = {"cured": "1", "improved": "2", "unchanged": "3", "worse": "4", "died": "5"}
DISCHARGE = {"home": "1", "referred": "2", "referred_at_request": "2", "absconded": "3", "at_request": "4"}


def _birth(ep: Episode) -> str:
    return ep.birth_date.strftime("%Y%m%d") if ep.birth_date else f"{ep.birth_year:04d}"


def xml1(ep: Episode, facility_code: str, made_on: date) -> dict:
    year, month = xml130.settlement(ep, made_on)
    weight = ep.supplement.get("weight_kg")
    return {
        "MA_LK": ep.link_key, "STT": "1", "MA_BN": ep.patient_code, "HO_TEN": ep.full_name, "NGAY_SINH": _birth(ep),
        "GIOI_TINH": xml130.SEX[ep.sex], "DIA_CHI": ep.address, "MA_THE": ep.card_number, "MA_DKBD": ep.card_facility,
        "GT_THE_TU": d8(ep.card_from), "GT_THE_DEN": d8(ep.card_to), "TEN_BENH": "; ".join(ep.diagnosis_texts),
        "MA_BENH": ep.main_icd, "MA_BENHKHAC": ";".join(ep.other_icds), "MA_LYDO_VVIEN": VISIT_REASON[ep.route],
        "MA_NOI_CHUYEN": ep.referred_from, "NGAY_VAO": dt12(ep.started_at), "NGAY_RA": dt12(ep.ended_at),
        "SO_NGAY_DTRI": xml130.treatment_days(ep) if CARE_TYPE[ep.kind] != "1" else "0",
        "KET_QUA_DTRI": OUTCOME.get(ep.outcome, "3"), "TINH_TRANG_RV": DISCHARGE.get(ep.discharge_type, "1"),
        "NGAY_TTOAN": dt12(ep.settled_at), "T_THUOC": amount(ep.drug_total), "T_VTYT": amount(ep.supply_total),
        "T_TONGCHI": amount(ep.total("cost")), "T_BNTT": amount(ep.total("self_pay")),
        "T_BNCCT": amount(ep.total("copay")), "T_BHTT": amount(ep.total("insurer")), "T_NGUONKHAC": "0.00",
        "T_NGOAIDS": amount(ep.total("insurer")), "NAM_QT": year, "THANG_QT": month, "MA_LOAI_KCB": CARE_TYPE[ep.kind],
        "MA_KHOA": ";".join(ep.department_codes), "MA_CSKCB": facility_code,
        "CAN_NANG": f"{Decimal(str(weight)):.2f}" if weight is not None else None,
    }


def _money(line) -> dict:
    return {"THANH_TIEN": amount(line.cost), "MUC_HUONG": str(line.benefit), "T_NGUONKHAC": "0.00",
            "T_BNTT": amount(line.self_pay), "T_BHTT": amount(line.insurer), "T_BNCCT": amount(line.copay),
            "T_NGOAIDS": amount(line.insurer)}


def xml2(ep: Episode) -> list[dict]:
    return [{"MA_LK": ep.link_key, "STT": str(n), "MA_THUOC": line.code, "MA_NHOM": str(line.cost_group),
             "TEN_THUOC": line.name, "DON_VI_TINH": line.unit, "HAM_LUONG": line.strength,
             "DUONG_DUNG": xml130.ROUTES.get((line.route or "").strip().lower()), "LIEU_DUNG": line.dosage,
             "SO_DANG_KY": line.registration_number, "TT_THAU": line.tender,
             "PHAM_VI": "1" if line.in_scope_item else "2", "TYLE_TT": str(line.payment_ratio),
             "SO_LUONG": number(line.quantity), "DON_GIA": number(line.unit_price), **_money(line),
             "MA_KHOA": line.department_code, "MA_BAC_SI": line.doctor_code or ep.doctor_code,
             "MA_BENH": ";".join(line.diagnosis_codes),
             "NGAY_YL": dt12(line.ordered_at), "MA_PTTT": xml130.FEE_FOR_SERVICE}
            for n, line in enumerate(ep.drug_lines, start=1)]


def xml3(ep: Episode) -> list[dict]:
    rows = []
    for n, line in enumerate(ep.service_lines, start=1):
        supply = line.cost_group in SUPPLY_GROUPS
        rows.append({
            "MA_LK": ep.link_key, "STT": str(n), "MA_DICH_VU": None if supply else line.code,
            "MA_VAT_TU": line.code if supply else None, "MA_NHOM": str(line.cost_group),
            "TEN_VAT_TU": line.name if supply else None, "TEN_DICH_VU": None if supply else line.name,
            "DON_VI_TINH": line.unit, "PHAM_VI": "1" if line.in_scope_item else "2", "SO_LUONG": number(line.quantity),
            "DON_GIA": number(line.unit_price), "TT_THAU": line.tender, "TYLE_TT": str(line.payment_ratio),
            **_money(line), "MA_KHOA": line.department_code,
            "MA_GIUONG": line.bed_code if line.cost_group in BED_GROUPS else None,
            "MA_BAC_SI": line.doctor_code or ep.doctor_code, "MA_BENH": ";".join(line.diagnosis_codes),
            "NGAY_YL": dt12(line.ordered_at), "NGAY_KQ": dt12(line.result_at), "MA_PTTT": xml130.FEE_FOR_SERVICE})
    return rows


def xml4(ep: Episode) -> list[dict]:
    return [{"MA_LK": ep.link_key, "STT": str(n), "MA_DICH_VU": r.service_code, "MA_CHI_SO": r.code,
             "TEN_CHI_SO": r.name, "GIA_TRI": r.value, "MA_MAY": r.machine_code, "MO_TA": r.description,
             "KET_LUAN": r.conclusion, "NGAY_KQ": dt12(r.reported_at)} for n, r in enumerate(ep.results, start=1)]


def xml5(ep: Episode) -> list[dict]:
    return [{"MA_LK": r["MA_LK"], "STT": r["STT"], "DIEN_BIEN": r["DIEN_BIEN_LS"], "NGAY_YL": r["THOI_DIEM_DBLS"]}
            for r in xml130.xml5(ep)]


def tables(ep: Episode, facility_code: str, head_id: str | None, made_on: date) -> dict[str, list[dict]]:
    result = {"XML1": [xml1(ep, facility_code, made_on)]}
    drugs, services = xml2(ep), xml3(ep)
    if drugs:
        result["XML2"] = drugs
    if services:
        result["XML3"] = services
    if ep.results:
        result["XML4"] = xml4(ep)
    if CARE_TYPE[ep.kind] == "3":
        result["XML5"] = xml5(ep)
    return result
