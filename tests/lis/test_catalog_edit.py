"""Editing the lab catalogue on PostgreSQL: a test with its ranges, members and analyser codes
through the screen, every refused input with its exact message and nothing changed, the listener's
catalogue snapshot seeing each edit, deactivation instead of deletion, and the Excel export and its
all-or-nothing, repeatable import."""

from __future__ import annotations

import io
from decimal import Decimal

import pytest
from openpyxl import load_workbook
from sqlalchemy import func, select

from core.audit import Actor
from core.models import AuditEvent
from lis import catalog, catalog_edit, catalog_excel, inbox
from lis.models import Analyser, AnalyserCode, LabTest, PanelMember, ReferenceRange
from tests.conftest import csrf_token, login
from tests.lis.conftest import TODAY
from tests.lis.messages import oul_r22

ADMIN = Actor(id=None, name="bs.quantri", ip="10.0.0.7")
D = Decimal


def _admin(app, make_user, name="bs.quantri"):
    make_user(name, "lab_physician")
    client = app.test_client()
    login(client, name)
    return client


def _post(client, path, data, page):
    return client.post(path, data={"csrf_token": csrf_token(client, page), **data})


def _state(session) -> tuple:
    """The whole catalogue as plain values: equal before and after a refused change."""
    session.expire_all()
    tests = [(t.code, t.name, t.loinc, t.unit, t.value_type, t.specimen_type, t.service_code, t.delta_percent,
              t.position, t.active, t.is_panel) for t in session.scalars(select(LabTest).order_by(LabTest.id))]
    ranges = [(r.id, r.test_id, r.sex, r.age_from_months, r.age_to_months, r.low, r.high, r.critical_low,
               r.critical_high, r.text) for r in session.scalars(select(ReferenceRange).order_by(ReferenceRange.id))]
    members = [(m.id, m.panel_id, m.test_id, m.position) for m in session.scalars(select(PanelMember)
                                                                                   .order_by(PanelMember.id))]
    codes = [(c.id, c.analyser_id, c.code, c.test_id) for c in session.scalars(select(AnalyserCode)
                                                                                .order_by(AnalyserCode.id))]
    return tests, ranges, members, codes


def _events(session, action: str) -> list[AuditEvent]:
    return list(session.scalars(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)))


def _form(lab, **extra) -> dict:
    bs480 = lab["analysers"]["BS480"]
    return {"code": "hba1c", "name": "HbA1c", "unit": "%", "value_type": "NM", "specimen_type": "WB",
            "service_code": "XN.HBA1C", "loinc": "4548-4", "delta_percent": "20", "position": "40", "active": "1",
            "range_count": "3", "range-0-sex": "", "range-0-age_from_months": "216", "range-0-low": "4,0",
            "range-0-high": "6.0", "range-0-critical_high": "15", "range-1-sex": "male",
            "range-1-age_to_months": "216", "range-1-low": "4.0", "range-1-high": "5.7",
            f"codes-{bs480}": "A1C", **extra}


def test_a_test_is_created_then_edited_with_ranges_and_analyser_codes(app, db_session, lab, make_user):
    admin = _admin(app, make_user)
    page = admin.get("/lis/catalogue/tests/new")
    assert page.status_code == 200 and "Thêm xét nghiệm hoặc nhóm" in page.get_data(as_text=True)
    made = _post(admin, "/lis/catalogue/tests/new", _form(lab), "/lis/catalogue/tests/new")
    assert made.status_code == 302
    test = db_session.scalar(select(LabTest).where(LabTest.code == "HBA1C"))
    assert made.location == f"/lis/catalogue/tests/{test.id}"
    assert (test.name, test.unit, test.value_type, test.specimen_type, test.service_code, test.delta_percent,
            test.position, test.active, test.is_panel) == ("HbA1c", "%", "NM", "WB", "XN.HBA1C", D(20), 40, True,
                                                           False)
    assert [(r.sex, r.age_from_months, r.age_to_months, r.low, r.high, r.critical_high) for r in test.ranges] == [
        (None, 216, None, D(4), D(6), D(15)), ("male", None, 216, D(4), D("5.7"), None)]
    assert [(c.analyser.code, c.code) for c in db_session.scalars(select(AnalyserCode).where(
        AnalyserCode.test_id == test.id))] == [("BS480", "A1C")]
    created = _events(db_session, "lis.catalogue.test.create")
    assert len(created) == 1 and created[0].detail["after"]["fields"]["code"] == "HBA1C"

    path = f"/lis/catalogue/tests/{test.id}"
    edit = admin.get(path).get_data(as_text=True)
    assert 'name="range-0-low" value="4"' in edit and 'value="A1C"' in edit
    changed = _post(admin, path, _form(lab, unit="mmol/mol", **{"range-1-high": "5.6"}), path)
    assert changed.status_code == 302
    db_session.expire_all()
    assert test.unit == "mmol/mol" and test.ranges[1].high == D("5.6")
    update = _events(db_session, "lis.catalogue.test.update")
    assert len(update) == 1
    assert update[0].detail["before"]["fields"] == {"unit": "%"}
    assert update[0].detail["after"]["fields"] == {"unit": "mmol/mol"}
    assert update[0].detail["before"]["ranges"][1]["high"] == "5.7"
    assert update[0].detail["after"]["ranges"][1]["high"] == "5.6" and "codes" not in update[0].detail["after"]
    # the same form again: nothing changes, no event
    again = _post(admin, path, _form(lab, unit="mmol/mol", **{"range-1-high": "5.6"}), path)
    assert again.status_code == 302 and "Không có gì thay đổi." in admin.get(path).get_data(as_text=True)
    assert len(_events(db_session, "lis.catalogue.test.update")) == 1
    listing = admin.get("/lis/catalogue").get_data(as_text=True)
    assert f'<a href="{path}"><code>HBA1C</code></a>' in listing


def test_only_lab_admins_edit_the_catalogue(app, db_session, lab, make_user):
    make_user("ktv.xem", "lab_technician")
    tech = app.test_client()
    login(tech, "ktv.xem")
    assert tech.get("/lis/catalogue/tests/new").status_code == 403
    assert tech.get("/lis/catalogue.xlsx").status_code == 403
    before = _state(db_session)
    token = csrf_token(tech, "/lis/")
    assert tech.post("/lis/catalogue/tests/new", data={"csrf_token": token, **_form(lab)}).status_code == 403
    assert _state(db_session) == before
    admin = _admin(app, make_user)
    assert admin.post("/lis/catalogue/tests/new", data=_form(lab)).status_code == 400  # no CSRF token
    assert _state(db_session) == before


@pytest.mark.parametrize(("extra", "field", "message"), [
    ({"range-0-low": "bốn"}, "range-0-low", "«bốn» không phải là số (ví dụ viết 3.5)"),
    ({"range-0-low": "7"}, "range-0-high", "giới hạn cao nhỏ hơn giới hạn thấp"),
    ({"range-0-critical_high": "5.5"}, "range-0-critical_high",
     "ngưỡng nguy hiểm cao không được nằm trong khoảng bình thường"),
    ({"range-0-critical_low": "4.5"}, "range-0-critical_low",
     "ngưỡng nguy hiểm thấp không được nằm trong khoảng bình thường"),
    ({"range-1-sex": "", "range-1-age_to_months": "240"}, "range-1-age_from_months",
     "khoảng tuổi trùng với khoảng 216–… tháng cùng giới"),
    ({"range-1-age_from_months": "216"}, "range-1-age_to_months", "tuổi đến phải lớn hơn tuổi từ"),
    ({"range-2-sex": "female"}, "range-2-low", "nhập giới hạn hoặc kết quả bằng chữ, ví dụ «Âm tính»"),
    ({"range-0-age_from_months": "1,5"}, "range-0-age_from_months", "tuổi tính bằng số tháng nguyên, từ 0 đến 1800"),
    ({"code": "GLU"}, "code", "đã có xét nghiệm khác mang mã GLU"),
    ({"code": "HB A1C"}, "code", "mã tối đa 30 ký tự: chữ cái, chữ số và các dấu # % . _ / + -"),
    ({"name": " "}, "name", "thiếu dữ liệu bắt buộc"),
    ({"value_type": "XX"}, "value_type", "một trong các giá trị NM, ST, TX, CE, SN"),
    ({"delta_percent": "0"}, "delta_percent", "tỷ lệ phần trăm lớn hơn 0 và không quá 1000"),
    ({"members": "WBC"}, "members", "chỉ nhóm xét nghiệm mới có thành phần"),
])
def test_a_bad_field_is_refused_where_it_is_and_nothing_changes(app, db_session, lab, make_user, extra, field,
                                                                message):
    admin = _admin(app, make_user)
    before = _state(db_session)
    refused = _post(admin, "/lis/catalogue/tests/new", _form(lab, **extra), "/lis/catalogue/tests/new")
    html = refused.get_data(as_text=True)
    assert refused.status_code == 422
    assert f'<div class="field-error" data-field="{field}">{message}</div>' in html.replace("&#34;", '"') \
        .replace("&#39;", "'").replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    assert "Chưa lưu: hãy sửa các ô được đánh dấu bên dưới." in html
    assert _state(db_session) == before
    assert _events(db_session, "lis.catalogue.test.create") == []


def test_analyser_codes_and_panel_members_are_checked_against_the_catalogue(app, db_session, lab, make_user):
    admin = _admin(app, make_user)
    before = _state(db_session)
    bs480 = lab["analysers"]["BS480"]
    taken = db_session.scalar(select(AnalyserCode).where(AnalyserCode.analyser_id == bs480))
    clash = _post(admin, "/lis/catalogue/tests/new", _form(lab, **{f"codes-{bs480}": taken.code}),
                  "/lis/catalogue/tests/new")
    assert clash.status_code == 422
    assert (f'data-field="codes-{bs480}">máy BS480 đã dùng mã {taken.code} cho xét nghiệm {taken.test.code}'
            in clash.get_data(as_text=True))
    panel = {"code": "MO", "name": "Mỡ máu", "value_type": "NM", "specimen_type": "SER", "is_panel": "1",
             "active": "1", "range_count": "0"}
    for members, message in (("GLU\nNOSUCH", "không có xét nghiệm nào mang mã NOSUCH"),
                             ("CBC", "CBC là một nhóm: nhóm chỉ gồm các xét nghiệm đơn"),
                             ("GLU, URE, GLU", "GLU được ghi hai lần")):
        refused = _post(admin, "/lis/catalogue/tests/new", {**panel, "members": members}, "/lis/catalogue/tests/new")
        assert refused.status_code == 422 and f'data-field="members">{message}</div>' in refused.get_data(as_text=True)
    assert _state(db_session) == before
    made = _post(admin, "/lis/catalogue/tests/new", {**panel, "members": "glu\nure"}, "/lis/catalogue/tests/new")
    assert made.status_code == 302
    mo = db_session.scalar(select(LabTest).where(LabTest.code == "MO"))
    assert [m.test.code for m in db_session.scalars(select(PanelMember).where(PanelMember.panel_id == mo.id)
                                                    .order_by(PanelMember.position))] == ["GLU", "URE"]


def test_an_edit_reaches_the_catalogue_snapshot(db_session, lab):
    glu = db_session.scalar(select(LabTest).where(LabTest.code == "GLU"))
    held = catalog.snapshot(db_session)
    assert catalog.snapshot(db_session) is held  # nothing changed: the same snapshot
    draft = catalog_edit.draft_of(db_session, glu)
    draft.fields = catalog_edit.TestFields(**{**draft.fields.__dict__, "unit": "mg/dL", "delta_percent": D(30),
                                              "value_type": "NM", "name": "Glucose máu"})
    catalog_edit.save(db_session, ADMIN, [draft])
    seen = catalog.snapshot(db_session).tests[glu.id]
    assert (seen.unit, seen.delta_percent, seen.name) == ("mg/dL", D(30), "Glucose máu")
    draft = catalog_edit.draft_of(db_session, glu)
    draft.ranges = [catalog_edit.RangeFields(None, None, None, D("4.1"), D("5.9"), D(2), D(30), None)]
    bs480 = lab["analysers"]["BS480"]
    draft.codes = [(bs480, "GLU-X")]
    catalog_edit.save(db_session, ADMIN, [draft])
    shot = catalog.snapshot(db_session)
    assert [(r.low, r.high, r.display) for r in shot.tests[glu.id].ranges] == [(D("4.1"), D("5.9"), "4.1-5.9")]
    sender = db_session.get(Analyser, bs480).sender
    assert shot.analysers[sender].codes["GLU-X"] == glu.id
    # the listener trusts its snapshot for a moment only; past it, the edit is seen
    catalog.trust_seconds = 1.0
    try:
        trusted = catalog.snapshot(db_session)
        draft = catalog_edit.draft_of(db_session, glu)
        draft.fields = catalog_edit.TestFields(**{**draft.fields.__dict__, "value_type": "ST"})
        catalog_edit.save(db_session, ADMIN, [draft])
        assert catalog.snapshot(db_session) is trusted
        trusted.checked_at -= 1.0
        assert catalog.snapshot(db_session).tests[glu.id].value_type == "ST"
    finally:
        catalog.trust_seconds = 0.0


def test_a_test_with_results_is_deactivated_never_deleted(app, db_session, lab, make_user):
    admin = _admin(app, make_user)
    inbox.process(db_session, oul_r22(lab["serum"], "C1", {"2951-2": "139"}), today=TODAY)
    db_session.commit()
    na = db_session.scalar(select(LabTest).where(LabTest.code == "NA"))
    path = f"/lis/catalogue/tests/{na.id}"
    assert "Ngừng sử dụng" in admin.get(path).get_data(as_text=True)
    assert _post(admin, f"{path}/remove", {}, path).location == path
    db_session.expire_all()
    assert db_session.get(LabTest, na.id).active is False
    assert [e.detail for e in _events(db_session, "lis.catalogue.test.deactivate")] == [
        {"code": "NA", "before": {"active": True}, "after": {"active": False}}]
    again = _post(admin, f"{path}/remove", {}, path)
    assert "xét nghiệm này đã ngừng sử dụng" in admin.get(again.location).get_data(as_text=True)
    # a panel whose members were asked of specimens is what was ordered: kept too
    dgd = db_session.scalar(select(LabTest).where(LabTest.code == "DGD"))
    assert catalog_edit.remove(db_session, ADMIN, dgd) == "deactivated"
    assert db_session.scalar(select(func.count()).select_from(PanelMember).where(PanelMember.panel_id == dgd.id)) == 3
    # a test nothing refers to goes for good
    _post(admin, "/lis/catalogue/tests/new", _form(lab), "/lis/catalogue/tests/new")
    new_id = db_session.scalar(select(LabTest.id).where(LabTest.code == "HBA1C"))
    new_path = f"/lis/catalogue/tests/{new_id}"
    assert _post(admin, f"{new_path}/remove", {}, new_path).location == "/lis/catalogue"
    db_session.expire_all()
    assert db_session.scalar(select(LabTest).where(LabTest.code == "HBA1C")) is None
    assert db_session.scalar(select(func.count()).select_from(ReferenceRange).where(
        ReferenceRange.test_id == new_id)) == 0
    deleted = _events(db_session, "lis.catalogue.test.delete")
    assert deleted[0].detail["before"]["fields"]["code"] == "HBA1C"


# --- Excel ------------------------------------------------------------------------------------------

def _workbook(data: bytes):
    return load_workbook(io.BytesIO(data))


def _bytes(workbook) -> bytes:
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


def _import(admin, data: bytes, name="danh-muc.xlsx"):
    return admin.post("/lis/catalogue/import", data={"csrf_token": csrf_token(admin, "/lis/catalogue"),
                                                     "workbook": (io.BytesIO(data), name)},
                      content_type="multipart/form-data")


def test_the_exported_workbook_imports_back_unchanged_and_an_edit_applies_once(app, db_session, lab, make_user):
    admin = _admin(app, make_user)
    exported = admin.get("/lis/catalogue.xlsx")
    assert exported.status_code == 200
    assert exported.mimetype == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    assert 'filename="danh-muc-xet-nghiem-' in exported.headers["Content-Disposition"]
    workbook = _workbook(exported.data)
    assert workbook.sheetnames == ["Xét nghiệm", "Thành phần nhóm", "Khoảng tham chiếu", "Mã máy"]
    tests = workbook["Xét nghiệm"]
    assert [c.value for c in tests[1]] == ["Mã", "Tên", "LOINC", "Đơn vị", "Kiểu kết quả", "Loại mẫu", "Mã dịch vụ",
                                          "Delta (%)", "Thứ tự", "Nhóm", "Đang dùng"]
    count = db_session.scalar(select(func.count()).select_from(LabTest))
    assert tests.max_row == count + 1
    before = _state(db_session)
    same = _import(admin, exported.data)
    assert same.status_code == 302
    assert f"Thêm mới 0 xét nghiệm, thay đổi 0, giữ nguyên {count}." in admin.get("/lis/catalogue").get_data(
        as_text=True)
    assert _state(db_session) == before and _events(db_session, "lis.catalogue.test.update") == []

    # change the glucose limits and add a test with a text range, then import twice
    ranges = workbook["Khoảng tham chiếu"]
    glu_row = next(r for r in ranges.iter_rows(min_row=2) if r[0].value == "GLU")
    glu_row[5].value = 6.1
    tests.append(["HCV", "Anti-HCV", None, None, "CE", "SER", "XN.HCV", None, 310, None, "x"])
    ranges.append(["HCV", None, None, None, None, None, None, None, "Âm tính"])
    edited = _bytes(workbook)
    assert _import(admin, edited).status_code == 302
    db_session.expire_all()
    glu = db_session.scalar(select(LabTest).where(LabTest.code == "GLU"))
    hcv = db_session.scalar(select(LabTest).where(LabTest.code == "HCV"))
    assert [(r.low, r.high) for r in glu.ranges] == [(D("3.9"), D("6.1"))]
    assert (hcv.value_type, [catalog.range_text(r) for r in hcv.ranges]) == ("CE", ["Âm tính"])
    assert len(_events(db_session, "lis.catalogue.test.update")) == 1
    assert len(_events(db_session, "lis.catalogue.test.create")) == 1
    after = _state(db_session)
    assert _import(admin, edited).status_code == 302
    assert _state(db_session) == after
    assert len(_events(db_session, "lis.catalogue.test.update")) == 1
    assert len(_events(db_session, "lis.catalogue.import")) == 3


def test_a_workbook_with_errors_changes_nothing_and_names_each_cell(app, db_session, lab, make_user):
    admin = _admin(app, make_user)
    workbook = _workbook(admin.get("/lis/catalogue.xlsx").data)
    tests, ranges, codes = workbook["Xét nghiệm"], workbook["Khoảng tham chiếu"], workbook["Mã máy"]
    tests.cell(4, 5).value = "NUM"  # Kiểu kết quả of WBC, whose ranges and codes are still checked
    tests.append(["NEW1", "Xét nghiệm mới", None, None, "NM", "SER", None, None, 99, None, "dùng"])
    ranges.cell(2, 5).value = "cao"  # Thấp
    glu = next(r for r in ranges.iter_rows(min_row=2) if r[0].value == "GLU")
    glu[4].value, glu[5].value = 7, 6.4  # low above high
    ranges.append(["NOSUCH", None, None, None, 1, 2, None, None, None])
    codes.append(["BS480", "X1", "GLU"])
    codes.append(["BS480", "X1", "URE"])  # the same analyser code for two tests
    codes.append(["AU9999", "Z", "GLU"])
    before = _state(db_session)
    refused = _import(admin, _bytes(workbook))
    assert refused.status_code == 422
    html = refused.get_data(as_text=True).replace("&#34;", '"').replace("&#39;", "'")
    count = tests.max_row
    glu_row = glu[0].row
    for message in (
            "Trang «Xét nghiệm», dòng 4, cột E «Kiểu kết quả»: một trong các giá trị NM, ST, TX, CE, SN",
            f"Trang «Xét nghiệm», dòng {count}, cột K «Đang dùng»: giá trị «dùng» không hợp lệ (để trống hoặc ghi «x»)",
            "Trang «Khoảng tham chiếu», dòng 2, cột E «Thấp»: «cao» không phải là số (ví dụ viết 3.5)",
            f"Trang «Khoảng tham chiếu», dòng {glu_row}, cột F «Cao»: giới hạn cao nhỏ hơn giới hạn thấp",
            f"Trang «Khoảng tham chiếu», dòng {ranges.max_row}, cột A «Mã xét nghiệm»: xét nghiệm NOSUCH không có "
            "trong trang «Xét nghiệm»",
            f"Trang «Mã máy», dòng {codes.max_row}, cột A «Máy xét nghiệm»: không có máy xét nghiệm nào mang mã "
            "AU9999"):
        assert message in html, message
    assert "Có 6 lỗi. Chưa nhập dòng nào." in html
    assert _state(db_session) == before
    assert len(_events(db_session, "lis.catalogue.import_refused")) == 1
    # the same analyser code for two tests is found once the rows themselves are right
    workbook = _workbook(admin.get("/lis/catalogue.xlsx").data)
    workbook["Mã máy"].append(["BS480", "X1", "GLU"])
    workbook["Mã máy"].append(["BS480", "X1", "URE"])
    refused = _import(admin, _bytes(workbook))
    last = workbook["Mã máy"].max_row
    assert (f"Trang «Mã máy», dòng {last}, cột B «Mã trên máy»: máy BS480 đã dùng mã X1 cho xét nghiệm GLU"
            in refused.get_data(as_text=True))
    assert _state(db_session) == before


def test_an_import_may_move_an_analyser_code_from_one_test_to_another(db_session, lab):
    data = catalog_excel.export(db_session, ADMIN)
    workbook = _workbook(data)
    codes = workbook["Mã máy"]
    row = next(r for r in codes.iter_rows(min_row=2) if r[0].value == "BS480" and r[2].value == "GLU")
    moved_code = row[1].value
    other = next(r for r in codes.iter_rows(min_row=2) if r[0].value == "BS480" and r[2].value == "URE")
    row[2].value, other[2].value = "URE", "GLU"  # swap the two codes
    report = catalog_excel.import_workbook(db_session, ADMIN, _bytes(workbook), "swap.xlsx")
    assert report.errors == [] and report.updated == 2
    ure = db_session.scalar(select(LabTest).where(LabTest.code == "URE"))
    assert db_session.scalar(select(AnalyserCode.test_id).where(
        AnalyserCode.analyser_id == lab["analysers"]["BS480"], AnalyserCode.code == moved_code)) == ure.id


def test_a_file_that_is_not_a_workbook_is_refused(app, db_session, lab, make_user):
    admin = _admin(app, make_user)
    before = _state(db_session)
    refused = _import(admin, b"not a zip", "ghi-chu.txt")
    assert refused.status_code == 422
    assert "Không đọc được tệp này dưới dạng tệp Excel (.xlsx)." in refused.get_data(as_text=True)
    missing = admin.post("/lis/catalogue/import", data={"csrf_token": csrf_token(admin, "/lis/catalogue")})
    assert missing.status_code == 422 and "Hãy chọn tệp Excel (.xlsx) cần nhập." in missing.get_data(as_text=True)
    workbook = _workbook(catalog_excel.export(db_session, ADMIN))
    del workbook["Mã máy"]
    no_sheet = _import(admin, _bytes(workbook))
    assert "Tệp Excel không có trang «Mã máy»." in no_sheet.get_data(as_text=True)
    assert _state(db_session) == before
