"""Claims: built from the encounter, checked, signed (verified by xmlsec1), field names and order as in
the insurer's lists; each bad input named by claim, table, line and field."""

import base64
import csv
import shutil
import subprocess
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from lxml import etree

from billing import claims, fieldspec, giamdinh, signing
from billing.models import Claim
from tests.billing.conftest import SYSTEM, claimable_visit, settings_for_tests

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "reference" / "bhyt"
D = Decimal


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    key, cert = signing.make_self_signed(tmp_path_factory.mktemp("keys"))
    return signing.load(str(key), str(cert)), cert


def _build(session, encounter, keys, fmt="qd130", **settings):
    (built,) = claims.build(session, SYSTEM, [encounter.id], fmt, settings_for_tests(**settings),
                            made_on=date(2026, 12, 2))
    return built


def _fields(fmt):
    """The insurer's lists: shared/reference when beside the project, else the copies in billing/data."""
    source = SHARED / fieldspec.FILES[fmt] if SHARED.exists() else fieldspec.DATA / fieldspec.FILES[fmt]
    lists: dict[str, list[str]] = {}
    with open(source, encoding="utf-8") as handle:
        for row in sorted(csv.DictReader(handle), key=lambda r: (r["table"], int(r["order"]))):
            lists.setdefault(row["table"], []).append(row["name"])
    return lists


def test_the_copies_of_the_field_lists_are_the_insurers():
    if not SHARED.exists():
        pytest.skip("shared/reference is not beside the project")
    for name in fieldspec.FILES.values():
        assert (fieldspec.DATA / name).read_bytes() == (SHARED / name).read_bytes()


def test_a_claim_passes_our_checks_and_its_signature_verifies(db_session, clinic, keys, tmp_path):
    made = claimable_visit(db_session, clinic)
    key = made["encounter"].code
    built = _build(db_session, made["encounter"], keys)
    assert [str(p) for p in built.problems] == [f"{key} · XML1 · STT 1 · CAN_NANG: required field is empty"]
    assert built.claim.status == "invalid"
    claims.set_supplement(db_session, SYSTEM, built.claim, weight_kg="56.5")  # the officer adds it
    built = _build(db_session, made["encounter"], keys)
    assert [str(p) for p in built.problems] == []
    claim = built.claim
    assert (claim.status, claim.version, claim.link_key) == ("valid", 2, key)
    content = claims.signed(claim, keys[0])
    path = tmp_path / "claim.xml"
    path.write_bytes(content)
    verify = subprocess.run([shutil.which("xmlsec1") or "xmlsec1", "--verify", "--pubkey-cert-pem", str(keys[1]),
                             str(path)], capture_output=True, text=True)
    assert verify.returncode == 0, verify.stderr
    assert claims.check_file(content) == ("qd130", [])
    assert [p.code for p in claims.check_file(claims.envelope_of(claim))[1]] == ["unsigned"]  # what the row keeps

    envelope = giamdinh.parse(content)
    lists = _fields("qd130")
    (tables,) = envelope.claims
    assert [t.kind for t in tables] == ["CHECKIN", "XML1", "XML2", "XML3"]
    for table in tables:
        for order, _values in table.records:
            assert order == lists[table.kind]
    summary = tables[1].records[0][1]
    # 80 % card, 2026-12 rule: CTM 46,200 + glucose 21,500 + amlodipin 30 × 450 = 81,200 < 379,500 → 100 %.
    assert (summary["T_TONGCHI_BV"], summary["T_BHTT"], summary["T_BNCCT"], summary["MA_LOAI_KCB"]) == (
        "81200.00", "81200.00", "0.00", "01")
    assert summary["MA_THE_BHYT"] == "DN4010123456789" and summary["MA_CSKCB"] == "79001"
    raw = etree.fromstring(content)
    first = base64.b64decode(raw.findtext("THONGTINHOSO/DANHSACHHOSO/HOSO/FILEHOSO/NOIDUNGFILE"))
    assert first.startswith(b'<?xml version="1.0" encoding="utf-8"?>')

    tampered = content.replace(b"<SOLUONGHOSO>1</SOLUONGHOSO>", b"<SOLUONGHOSO>2</SOLUONGHOSO>")
    path.write_bytes(tampered)
    assert subprocess.run(["xmlsec1", "--verify", "--pubkey-cert-pem", str(keys[1]), str(path)],
                          capture_output=True).returncode != 0
    assert [(p.table, p.field, p.code) for p in claims.check_file(tampered)[1]] == [
        ("GIAMDINHHS", "SOLUONGHOSO", "count")]


def test_a_rebuild_keeps_the_version_unless_the_claim_changed(db_session, clinic, keys):
    made = claimable_visit(db_session, clinic)
    first = _build(db_session, made["encounter"], keys).claim
    again = _build(db_session, made["encounter"], keys).claim
    assert again is first and again.version == 1
    claims.set_supplement(db_session, SYSTEM, first, weight_kg="56,5")
    changed = _build(db_session, made["encounter"], keys).claim
    assert (changed.version, changed.supplement, changed.status) == (2, {"weight_kg": "56.50"}, "valid")
    summary = giamdinh.parse(claims.envelope_of(changed)).claims[0][1].records[0][1]
    assert summary["CAN_NANG"] == "56.50"
    with pytest.raises(claims.ClaimError):
        claims.set_supplement(db_session, SYSTEM, first, weight_kg="nặng")


def test_no_main_diagnosis_and_an_expired_card_are_named(db_session, clinic, keys):
    from his import encounters

    made = claimable_visit(db_session, clinic, valid_to=date(2026, 6, 30))
    for diagnosis in made["encounter"].diagnoses:
        encounters.remove_diagnosis(db_session, SYSTEM, diagnosis)
    db_session.expire(made["encounter"], ["diagnoses"])
    built = _build(db_session, made["encounter"], keys)
    found = {(p.link_key, p.table, p.row, p.field, p.code) for p in built.problems}
    key = made["encounter"].code
    assert (key, "XML1", 1, "MA_BENH_CHINH", "required") in found
    assert (key, "XML1", None, "GT_THE_DEN", "card_validity") in found
    assert built.claim.status == "invalid"
    messages = {str(p) for p in built.problems}
    assert f"{key} · XML1 · STT 1 · MA_BENH_CHINH: required field is empty" in messages
    stored = [tuple(e[k] for k in ("table", "field", "code")) for e in built.claim.errors]
    assert ("XML1", "MA_BENH_CHINH", "required") in stored
    # An uninsured-by-expiry visit: the patient pays, and the totals still add up (no "sum" problem).
    assert not any(p.code in ("sum", "line_total", "fund_formula") for p in built.problems)


def test_the_4210_format(db_session, clinic, keys):
    made = claimable_visit(db_session, clinic)
    built = _build(db_session, made["encounter"], keys, fmt="4210")
    assert [str(p) for p in built.problems] == []  # CAN_NANG is optional in 4210
    lists = _fields("4210")
    (tables,) = giamdinh.parse(claims.envelope_of(built.claim)).claims
    assert [t.kind for t in tables] == ["XML1", "XML2", "XML3"]
    for table in tables:
        assert all(order == lists[table.kind] for order, _v in table.records)
    assert claims.check_file(claims.signed(built.claim, keys[0])) == ("4210", [])


def test_totals_that_do_not_add_up_and_a_broken_link_key(db_session, clinic, keys):
    made = claimable_visit(db_session, clinic)
    claims.set_supplement(db_session, SYSTEM, _build(db_session, made["encounter"], keys).claim, weight_kg="60")
    content = claims.signed(_build(db_session, made["encounter"], keys).claim, keys[0])
    root = etree.fromstring(content)
    items = root.findall("THONGTINHOSO/DANHSACHHOSO/HOSO/FILEHOSO")
    inner = {i.findtext("LOAIHOSO"): i for i in items}
    xml1 = base64.b64decode(inner["XML1"].findtext("NOIDUNGFILE")).replace(b"<T_BHTT>81200.00</T_BHTT>",
                                                                             b"<T_BHTT>91200.00</T_BHTT>")
    inner["XML1"].find("NOIDUNGFILE").text = base64.b64encode(xml1).decode()
    xml3 = base64.b64decode(inner["XML3"].findtext("NOIDUNGFILE"))
    xml3 = xml3.replace(f"<MA_LK>{made['encounter'].code}</MA_LK>".encode(), b"<MA_LK>KHAC</MA_LK>", 1)
    inner["XML3"].find("NOIDUNGFILE").text = base64.b64encode(xml3).decode()
    _fmt, problems = claims.check_file(etree.tostring(root))
    found = {(p.table, p.row, p.field, p.code) for p in problems}
    assert ("XML1", None, "T_BHTT", "sum") in found
    assert ("XML1", None, "T_BHTT", "fund_formula") in found
    assert ("XML3", 1, "MA_LK", "link_key") in found
    assert Claim.__tablename__ == "billing_claims"


def test_released_results_go_into_xml4_once(db_session, clinic, keys):
    from sqlalchemy import select

    from billing import results
    from billing.models import ClinicalResult
    from core import events
    from core.models import Job
    from his.models.orders import Order

    made = claimable_visit(db_session, clinic)
    claims.set_supplement(db_session, SYSTEM, _build(db_session, made["encounter"], keys).claim, weight_kg="60")
    lab = db_session.scalar(select(Order).where(Order.encounter_id == made["encounter"].id, Order.kind == "lab"))
    payload = {"encounter_id": made["encounter"].id, "patient_id": made["patient"].id, "order_id": lab.id,
               "report_id": "R1", "specimen_barcode": "S1", "released_at": "2026-12-02T09:30:00+07:00",
               "released_by": "BS Nguyễn Văn Xét", "results": [
                   {"code": "WBC", "name": "Số lượng bạch cầu", "value": "7.2", "unit": "G/L", "flag": None,
                    "reference_range": "4-10", "status": "final"},
                   {"code": "GLU", "name": "Glucose", "value": "5.4", "unit": "mmol/L", "flag": None,
                    "reference_range": "3.9-6.4", "status": "final"}]}
    events.emit(db_session, "lis.report.released", payload)  # lis, after its commit
    jobs = db_session.scalars(select(Job).where(Job.name == events.DELIVER_JOB)).all()
    (job,) = [j for j in jobs if j.payload["subscriber"] == "billing.results._lab_released"]
    results._lab_released(db_session, job.payload["payload"])  # what the worker runs
    results._lab_released(db_session, job.payload["payload"])  # delivered twice: nothing added
    assert len(db_session.scalars(select(ClinicalResult)).all()) == 2
    built = _build(db_session, made["encounter"], keys)
    assert [str(p) for p in built.problems] == []
    (tables,) = giamdinh.parse(claims.envelope_of(built.claim)).claims
    xml4 = next(t for t in tables if t.kind == "XML4")
    assert [(v["STT"], v["MA_DICH_VU"], v["MA_CHI_SO"], v["GIA_TRI"], v["DON_VI_DO"], v["NGAY_KQ"])
            for _o, v in xml4.records] == [("1", "22.0120.1370", "WBC", "7.2", "G/L", "202612020930"),
                                           ("2", "22.0120.1370", "GLU", "5.4", "mmol/L", "202612020930")]
    assert all(order == _fields("qd130")["XML4"] for order, _v in xml4.records)
    legacy = _build(db_session, made["encounter"], keys, fmt="4210")
    assert [str(p) for p in legacy.problems] == []
    assert "XML4" in [t.kind for t in giamdinh.parse(claims.envelope_of(legacy.claim)).claims[0]]
