"""Administrative units: both schemes, the old→new mapping, validation messages, CLI and JSON API."""

import pytest
from click.testing import CliRunner

from his import geo
from his.geo_cli import build_from_gso
from tests.conftest import login


def _vi(app, message) -> str:
    with app.test_request_context():  # no session, no user: the default locale, Vietnamese
        return str(message)


def test_counts_per_scheme():
    assert len(geo.provinces("post2025")) == 34
    assert sum(len(geo.wards(p.code, "post2025")) for p in geo.provinces("post2025")) == 3321
    assert len(geo.provinces("pre2025")) == 63
    assert sum(len(geo.districts(p.code)) for p in geo.provinces("pre2025")) == 696
    # GSO export of 18/07/2025; the January 2025 list had 10,051 (see the data README).
    assert sum(len(geo.wards(p.code, "pre2025")) for p in geo.provinces("pre2025")) == 10035


def test_every_old_ward_maps_and_every_new_ward_is_reached():
    reached = set()
    for prov in geo.provinces("pre2025"):
        for ward in geo.wards(prov.code, "pre2025"):
            conv = geo.new_ward_for(ward.code)
            assert conv.suggested in conv.new
            reached.update(u.code for u in conv.new)
    for island in ("318", "471", "498", "536", "755"):
        reached.update(u.code for u in geo.new_ward_for(island).new)
    assert len(reached) == 3321


def test_known_old_wards():
    # Phường Phúc Xá (Ba Đình) went whole into the new Phường Hồng Hà.
    conv = geo.new_ward_for("00001")
    assert (conv.old.name, conv.old.district_code) == ("Phường Phúc Xá", "001")
    assert [(u.code, u.name) for u in conv.new] == [("00097", "Phường Hồng Hà")]
    assert not conv.is_split
    # Phường Kim Mã was split across three new wards; one is only a suggestion.
    split = geo.new_ward_for("00028")
    assert split.is_split
    assert {u.name for u in split.new} == {"Phường Ba Đình", "Phường Ngọc Hà", "Phường Giảng Võ"}
    assert split.suggested in split.new
    # An island district without wards became a special zone.
    assert geo.new_ward_for("755").suggested.name == "Đặc khu Côn Đảo"


def test_same_code_means_different_wards_in_each_scheme():
    assert geo.lookup_ward("00004", "pre2025").name == "Phường Trúc Bạch"
    assert geo.lookup_ward("00004", "post2025").name == "Phường Ba Đình"
    assert geo.lookup_ward("00001", "post2025") is None


def test_valid_addresses():
    assert geo.validate_address("post2025", "01", "00004").name == "Phường Ba Đình"
    assert geo.validate_address("pre2025", "01", "00001", district_code="001").name == "Phường Phúc Xá"
    assert geo.validate_address("pre2025", "77", None, district_code="755").name == "Huyện Côn Đảo"


@pytest.mark.parametrize(("args", "field", "text"), [
    (("post2025", "99", "00004"), "province_code",
     "Mã tỉnh/thành phố 99 không có trong danh mục từ 01/07/2025 (34 tỉnh/thành phố)."),
    (("pre2025", "99", "00001", "001"), "province_code",
     "Mã tỉnh/thành phố 99 không có trong danh mục trước 01/07/2025 (63 tỉnh/thành phố)."),
    (("post2025", "01", "99999"), "ward_code",
     "Mã phường/xã 99999 không có trong danh mục từ 01/07/2025 (34 tỉnh/thành phố)."),
    (("post2025", "01", "26740"), "ward_code",
     "Phường Sài Gòn (26740) thuộc Thành phố Hồ Chí Minh, không thuộc Thành phố Hà Nội."),
    (("post2025", "01", None), "ward_code", "Phường/xã là trường bắt buộc."),
    (("post2025", "01", "00004", "001"), "district_code",
     "Địa chỉ từ 01/07/2025 không còn cấp quận/huyện: để trống trường này."),
    (("pre2025", "01", "00001"), "district_code", "Địa chỉ trước 01/07/2025 phải có quận/huyện."),
    (("pre2025", "01", "00001", "999"), "district_code",
     "Mã quận/huyện 999 không có trong danh mục trước 01/07/2025 (63 tỉnh/thành phố)."),
    (("pre2025", "01", "00001", "002"), "ward_code",
     "Phường Phúc Xá (00001) thuộc Quận Ba Đình, không thuộc Quận Hoàn Kiếm."),
    (("pre2025", "79", "26830", "001"), "district_code",
     "Quận Ba Đình (001) thuộc Thành phố Hà Nội, không thuộc Thành phố Hồ Chí Minh."),
    (("pre2025", "01", None, "001"), "ward_code", "Phường/xã là trường bắt buộc."),
    (("2025", "01", "00004"), "scheme", "Hệ địa chỉ 2025 không hợp lệ: dùng post2025 hoặc pre2025."),
])
def test_invalid_addresses_say_exactly_what_is_wrong(app, args, field, text):
    with pytest.raises(geo.AddressError) as caught:
        geo.validate_address(*args)
    assert caught.value.field == field
    assert _vi(app, caught.value.message) == text


def test_folded_search():
    assert [u.name for u in geo.search("ha noi", level="province")] == ["Thành phố Hà Nội"]
    assert [u.name for u in geo.search("HA  NOI", "pre2025", level="province")] == ["Thành phố Hà Nội"]
    hits = geo.search("dong da", province_code="01")
    assert hits[0].name == "Phường Đống Đa"  # đ folds to d; a name starting with the query comes first
    assert all(u.province_code == "01" for u in hits)
    assert geo.search("   ") == []


def test_gso_import_reads_both_export_layouts(tmp_path):
    old = tmp_path / "Xa_2025-01-04.csv"
    old.write_text("Tỉnh Thành Phố,Mã TP,Quận Huyện,Mã QH,Phường Xã,Mã PX,Cấp,Tên Tiếng Anh\n"
                   "Thành phố Hà Nội,01,Quận Ba Đình,001,Phường Phúc Xá,00001,Phường,\n"
                   "Thành phố Hà Nội,01,Quận Ba Đình,001,Phường Yên Hoà,00172,Phường,\n", encoding="utf-8")
    districts = tmp_path / "districts.csv"
    districts.write_text("\ufeffMã,Tên,Tên Tiếng Anh,Cấp,Mã TP,Tỉnh / Thành Phố\n"
                         "001,Quận Ba Đình,,Quận,01,Thành phố Hà Nội\n"
                         "755,Huyện Côn Đảo,,Huyện,77,Tỉnh Bà Rịa - Vũng Tàu\n", encoding="utf-8")
    counts = build_from_gso([old, districts], tmp_path / "out")
    assert counts == {"pre2025 provinces": 2, "pre2025 wards": 2, "pre2025 districts": 2}
    assert (tmp_path / "out/pre2025/wards.csv").read_text(encoding="utf-8").splitlines() == [
        "code,name,type,province_code,district_code",
        "00001,Phường Phúc Xá,Phường,01,001", "00172,Phường Yên Hoà,Phường,01,001"]
    new = tmp_path / "new.csv"
    new.write_text("Mã,Tên,Tên Tiếng Anh,Cấp,Mã TP,Tỉnh / Thành Phố\n"
                   "00004,Phường Ba Đình,,Phường,01,Thành phố Hà Nội\n", encoding="utf-8")
    assert build_from_gso([new], tmp_path / "out") == {"post2025 provinces": 1, "post2025 wards": 1}


def _cli():
    import click

    from his.geo_cli import register

    root = click.Group("his")
    register(root)
    return root


def test_cli_provinces_wards_convert():
    runner = CliRunner()
    result = runner.invoke(_cli(), ["geo", "provinces"])
    assert result.exit_code == 0 and len(result.output.splitlines()) == 34
    assert "01\tThành phố Hà Nội" in result.output.splitlines()
    result = runner.invoke(_cli(), ["geo", "provinces", "--scheme", "pre2025"])
    assert len(result.output.splitlines()) == 63
    result = runner.invoke(_cli(), ["geo", "wards", "01", "--search", "ba dinh"])
    assert result.output.splitlines() == ["00004\tPhường Ba Đình"]
    result = runner.invoke(_cli(), ["geo", "convert", "00001"])
    assert result.exit_code == 0
    assert result.output.splitlines() == ["old\t00001\tPhường Phúc Xá, Quận Ba Đình, Thành phố Hà Nội",
                                          "new\t00097\tPhường Hồng Hà, Thành phố Hà Nội"]
    result = runner.invoke(_cli(), ["geo", "convert", "00028"])
    assert sum(line.startswith(("suggested", "candidate")) for line in result.output.splitlines()) == 3
    result = runner.invoke(_cli(), ["geo", "convert", "99999"])
    assert result.exit_code == 1 and "99999" in result.output


def test_api_provinces_and_wards(client, make_user):
    make_user("letan.lan", "receptionist")
    login(client, "letan.lan")
    provinces = client.get("/api/v1/geo/provinces").get_json()
    assert len(provinces) == 34 and provinces[0]["code"] == "01"
    assert provinces[0] == {"code": "01", "name": "Thành phố Hà Nội", "short_name": "Hà Nội", "type": "Thành phố",
                            "province_code": None, "district_code": None}
    assert len(client.get("/api/v1/geo/provinces?scheme=pre2025").get_json()) == 63
    wards = client.get("/api/v1/geo/provinces/01/wards?q=ba%20dinh").get_json()
    assert [w["code"] for w in wards] == ["00004"]
    old = client.get("/api/v1/geo/provinces/01/wards?scheme=pre2025&district=001").get_json()
    assert old[0]["name"] == "Phường Phúc Xá" and {w["district_code"] for w in old} == {"001"}
    missing = client.get("/api/v1/geo/provinces/99/wards")
    assert missing.status_code == 404
    assert missing.get_json()["error"]["message"] == (
        "Mã tỉnh/thành phố 99 không có trong danh mục từ 01/07/2025 (34 tỉnh/thành phố).")
    assert client.get("/api/v1/geo/provinces?scheme=x").status_code == 400


def test_api_needs_login_and_permission(client, make_user):
    assert client.get("/api/v1/geo/provinces").status_code == 401
    make_user("quantri.an", "admin")  # admins do not read patients
    login(client, "quantri.an")
    denied = client.get("/api/v1/geo/provinces")
    assert denied.status_code == 403 and denied.get_json()["error"]["code"] == 403


def test_api_is_documented(client):
    paths = client.get("/api/v1/openapi.json").get_json()["paths"]
    assert "/geo/provinces" in paths and "/geo/provinces/{code}/wards" in paths
