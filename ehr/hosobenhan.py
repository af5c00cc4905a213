"""The record as `HoSoBenhAn` (CV 365 III.1.1 d and its annex "Mô tả dữ liệu trao đổi HSBA điện tử"),
in JSON or XML, with its 11 groups. This is the only module that speaks the annex's field names.

The annex's exact names and lengths beyond those quoted in ../shared/reference/emr.md §2 (cccd_so 15,
maicd 7, mathuocvattu_byt, machidinh, machiso) are our reading and must be checked against the annex.
The schema has no signature field, only the signer's name (chuky_hoten): the signatures travel in the
FHIR export and the signed PDF.
"""

from __future__ import annotations

import json

from lxml import etree
from sqlalchemy import select
from sqlalchemy.orm import Session

from ehr.models import Document, MedicalRecord, Version
from ehr.records import signed_content
from his.models.encounters import Encounter
from his.models.orders import Order

GROUPS = ("ThongTinBenhNhan", "ThongTinVaoVien", "ThongTinDieuTri", "YLenhThuocVatTu", "PhieuChiDinh",
          "KetQuaChanDoanHinhAnh", "KetQuaXetNghiem", "GiayChuyenVien", "HoSoCapCuu", "PhieuThuThuat",
          "PhieuPhauThuat")
# The annex's maximum lengths that we check before anything leaves (a too-long value is an error, never cut).
MAX_LENGTHS = {"cccd_so": 15, "maicd": 7, "maicd_truoc": 7, "maicd_sau": 7, "ma_lk": 100, "ma_bn": 100,
               "hoten": 255, "machiso": 50, "mathuocvattu_byt": 255, "machidinh": 50}
ITEM_TAGS = {"ChanDoan": "chan_doan", "ToDieuTri": "to_dieu_tri", "PhieuChamSoc": "phieu_cham_soc",
             "ChiTiet": "chi_tiet"}
SEX = {"male": 1, "female": 2, "unknown": 3}


class ExportError(ValueError):
    pass


def _iso(value) -> str | None:
    return value.isoformat() if value is not None else None


def _docs(session: Session, record: MedicalRecord) -> list[tuple[Document, dict]]:
    rows = session.execute(select(Document, Version).join(Version, (Version.document_id == Document.id)
                                                          & (Version.number == Document.current_version))
                           .where(Document.record_id == record.id, Document.status == "active")
                           .order_by(Document.clinical_time, Document.id)).all()
    return [(d, signed_content(v)) for d, v in rows]


def _of(docs, *codes):
    return [(d, v) for d, v in docs if d.form_code in codes]


def build(session: Session, record: MedicalRecord) -> dict:
    encounter = session.get(Encounter, record.encounter_id)
    patient = encounter.patient
    docs = _docs(session, record)
    main = next((v for d, v in _of(docs, record.form_code)), {})
    card = encounter.bhyt_card
    diagnoses = [{"maicd": d.icd10_code, "ten_benh": d.text, "loai": "chinh" if d.position == "principal" else "kem"}
                 for d in encounter.diagnoses]
    principal = next((d["maicd"] for d in diagnoses if d["loai"] == "chinh"), main.get("principal_icd"))
    discharge = next((v for d, v in _of(docs, "GRV")), {})
    referral = next((v for d, v in _of(docs, "GCT")), None)
    orders = session.scalars(select(Order).where(Order.encounter_id == encounter.id,
                                                 Order.status.notin_(("cancelled", "reversed")))
                             .order_by(Order.ordered_at)).all()
    data = {
        "ThongTinBenhNhan": {"ma_bn": patient.code, "hoten": patient.full_name, "cccd_so": patient.national_id,
                             "ngaysinh": _iso(patient.birth_date), "namsinh": patient.birth_year,
                             "gioitinh": SEX.get(patient.sex, 3), "dienthoai": patient.phone,
                             "diachi": patient.address_text, "quoctich": patient.nationality,
                             "tinh_ma": patient.province_code, "quanhuyen_ma": patient.district_code,
                             "xa_ma": patient.ward_code, "sothe_bhyt": card.number if card else None},
        "ThongTinVaoVien": {"ma_lk": encounter.code, "loai_kcb": encounter.kind, "ngay_vao": _iso(encounter.started_at),
                            "ma_khoa": encounter.department.bhyt_code if encounter.department else None,
                            "ly_do_vao_vien": main.get("admission_reason") or encounter.reason,
                            "mau_benh_an": record.form_code},
        "ThongTinDieuTri": {
            "maicd": principal, "maicd_khac": ";".join(d["maicd"] for d in diagnoses if d["loai"] == "kem") or None,
            "ChanDoan": diagnoses,
            "ToDieuTri": [{"ngay": _iso(d.clinical_time), "dien_bien": v.get("progress"),
                           "y_lenh": v.get("orders"), "chuky_hoten": d.author_name}
                          for d, v in _of(docs, "36/BV2")],
            "PhieuChamSoc": [{"ngay": _iso(d.clinical_time), "cap_cham_soc": v.get("care_level"),
                              "theo_doi": v.get("observations"), "can_thiep": v.get("interventions"),
                              "chuky_hoten": d.author_name} for d, v in _of(docs, "37/BV2")],
            "ngay_ra": discharge.get("discharged_on") or _iso(encounter.ended_at),
            "ket_qua_dieu_tri": discharge.get("result"), "phuong_phap_dieu_tri": discharge.get("treatment"),
        },
        "YLenhThuocVatTu": [{"mathuocvattu_byt": line.item_code, "ten": line.item_name, "soluong": str(line.quantity),
                             "donvi": line.unit, "lieu_dung": line.instructions, "ngay_yl": _iso(order.ordered_at)}
                            for order in orders if order.kind == "prescription" for line in order.lines],
        "PhieuChiDinh": [{"machidinh": line.item_code, "ten": line.item_name, "loai": order.kind,
                          "ngay_yl": _iso(order.ordered_at), "trang_thai": order.status}
                         for order in orders if order.kind != "prescription" for line in order.lines],
        "KetQuaChanDoanHinhAnh": [{"ma_chidinh": v.get("accession_number"),
                                   "dich_vu": v.get("procedure"), "mo_ta": v.get("findings"),
                                   "ket_luan": v.get("conclusion"), "chuky_hoten": v.get("signed_by"),
                                   "ngay_kq": v.get("signed_at")} for d, v in _of(docs, "CDHA")],
        "KetQuaXetNghiem": [{"machiso": r.get("code"), "ten_chiso": r.get("name"), "giatri": r.get("value"),
                             "donvi": r.get("unit"), "chiso_binhthuong": r.get("reference_range"),
                             "canh_bao": r.get("flag"), "ngay_kq": v.get("released_at"),
                             "chuky_hoten": v.get("released_by")}
                            for d, v in _of(docs, "XN") for r in v.get("results") or []],
        "GiayChuyenVien": None if referral is None else {
            "noi_den": referral.get("to_facility"), "ma_noi_den": referral.get("to_facility_code"),
            "maicd": referral.get("principal_icd"), "dau_hieu_lam_sang": referral.get("clinical_summary"),
            "thuoc_da_dung": referral.get("treatment_given"), "tinh_trang": referral.get("condition"),
            "ly_do": referral.get("reason")},
        "HoSoCapCuu": {"ma_lk": encounter.code, "ngay_vao": _iso(encounter.started_at),
                       "ly_do": encounter.reason} if encounter.is_emergency else None,
        "PhieuThuThuat": [_operation(d, v) for d, v in _of(docs, "06/BV2")
                          if v.get("operation_kind") == "procedure"],
        "PhieuPhauThuat": [_operation(d, v) for d, v in _of(docs, "06/BV2")
                           if v.get("operation_kind") == "surgery"],
    }
    _check_lengths(data)
    return data


def _operation(document: Document, c: dict) -> dict:
    return {"ngay_bat_dau": c.get("started_at"), "ngay_ket_thuc": c.get("ended_at"),
            "maicd_truoc": c.get("preop_icd"), "maicd_sau": c.get("postop_icd"), "phuong_phap": c.get("method"),
            "phuong_phap_vo_cam": c.get("anaesthesia"),
            "nguoi_thuc_hien": c.get("surgeon"), "bac_si_gay_me": c.get("anaesthetist"),
            "trinh_tu": c.get("description"), "chuky_hoten": document.author_name}


def _check_lengths(value, path: str = "HoSoBenhAn") -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            limit = MAX_LENGTHS.get(key)
            if limit and item is not None and len(str(item)) > limit:
                raise ExportError(f"{path}/{key} is longer than {limit} characters: {str(item)[:40]!r}")
            _check_lengths(item, f"{path}/{key}")
    elif isinstance(value, list):
        for item in value:
            _check_lengths(item, path)


def to_json(data: dict) -> bytes:
    return json.dumps({"HoSoBenhAn": data}, ensure_ascii=False, indent=1).encode("utf-8")


def _xml(parent, key: str, value) -> None:
    if isinstance(value, list):
        holder = etree.SubElement(parent, key)
        for item in value:
            _xml(holder, ITEM_TAGS.get(key, "muc"), item)
    elif isinstance(value, dict):
        node = etree.SubElement(parent, key)
        for k, v in value.items():
            _xml(node, k, v)
    elif value is not None:
        etree.SubElement(parent, key).text = str(value)
    else:
        etree.SubElement(parent, key)


def to_xml(data: dict) -> bytes:
    root = etree.Element("HoSoBenhAn")
    for group in GROUPS:
        _xml(root, group, data[group])
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)

