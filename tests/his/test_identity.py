"""CCCD QR, CCCD digits and BHYT card numbers: accepted variants and the exact error for each bad input."""

from datetime import date

import pytest

from his import identity
from his.identity import IdentityError

QR = "001090123456|012345678|Nguyễn Văn An|01011990|Nam|Số 1 Tràng Tiền, Hoàn Kiếm, Hà Nội|15042021"


@pytest.mark.parametrize("raw", [
    QR,
    "001090123456||Nguyễn Văn An|01011990|Nam|Số 1 Tràng Tiền, Hoàn Kiếm, Hà Nội|15042021",  # old id empty
    "001090123456|Nguyễn Văn An|01011990|Nam|Số 1 Tràng Tiền, Hoàn Kiếm, Hà Nội|15042021",   # old id absent
    "CCCD:" + QR + "|\r\n",                                                                  # label, CR/LF
    QR + "|extra|fields",                                                                    # newer cards
])
def test_qr_variants(raw):
    card = identity.parse_cccd_qr(raw)
    assert (card.national_id, card.full_name, card.birth_date, card.sex) == \
        ("001090123456", "Nguyễn Văn An", date(1990, 1, 1), "male")
    assert card.issued_on == date(2021, 4, 15) and card.raw == raw


@pytest.mark.parametrize(("raw", "code", "field", "message"), [
    ("", "qr_empty", "qr", "Mã QR trống"),
    ("001090123456|Nguyễn Văn An", "qr_fields", "qr", "Mã QR có 2 trường"),
    ("00109012345|012345678|Nguyễn Văn An|01011990|Nam|HN|15042021", "cccd_format", "national_id",
     "Số CCCD phải có đúng 12 chữ số (đang có 11 ký tự)"),
    ("001090123456|012345678|Nguyễn Văn An|01011990|Nữ|HN|15042021", "cccd_mismatch", "national_id",
     "giới tính"),
    ("001090123456|012345678|Nguyễn Văn An|01011991|Nam|HN|15042021", "cccd_mismatch", "national_id",
     "sinh năm 1990"),
    ("001090123456|012345678|Nguyễn Văn An|31021990|Nam|HN|15042021", "qr_date", "birth_date", "không tồn tại"),
    ("001090123456|012345678|Nguyễn Văn An|01011990|X|HN|15042021", "qr_sex", "sex", "«X»"),
    ("001090123456|012345678||01011990|Nam|HN|15042021", "qr_name", "full_name", "không có họ tên"),
])
def test_bad_qr(app, raw, code, field, message):
    with app.test_request_context():
        with pytest.raises(IdentityError) as info:
            identity.parse_cccd_qr(raw)
        assert (info.value.code, info.value.field) == (code, field)
        assert message in str(info.value)


def test_cccd_digits_against_typed_data(app):
    with app.test_request_context():
        assert identity.cccd_disagreements("001090123456", date(1990, 5, 1), "male") == []
        assert identity.cccd_disagreements("079203001234", 2003, "male") == []
        assert len(identity.cccd_disagreements("079303001234", 2003, "male")) == 1  # 3 = female born 2000s


@pytest.mark.parametrize(("number", "layout", "bhxh"), [
    ("HS4010120878811", "legacy15", "0120878811"),
    ("hs4 01 0120878811", "legacy15", "0120878811"),
    ("8901234567", "bhxh10", "8901234567"),
])
def test_bhyt_numbers(number, layout, bhxh):
    card = identity.parse_bhyt_number(number)
    assert (card.layout, card.bhxh_number) == (layout, bhxh)


@pytest.mark.parametrize(("number", "code", "message"), [
    ("ZZ4010120878811", "bhyt_group", "«ZZ» không phải mã đối tượng BHYT"),
    ("HS6010120878811", "bhyt_level", "mức hưởng"),
    ("HS40101208788", "bhyt_format", "15 ký tự"),
])
def test_bad_bhyt_numbers(app, number, code, message):
    with app.test_request_context():
        with pytest.raises(IdentityError) as info:
            identity.parse_bhyt_number(number)
        assert info.value.code == code and message in str(info.value)


def test_card_warnings(app):
    with app.test_request_context():
        today = date(2026, 12, 1)
        assert "đã hết hạn" in str(identity.card_validity_warnings(None, date(2026, 11, 30), today)[0])
        assert "hết hạn" in str(identity.card_validity_warnings(None, date(2026, 12, 20), today)[0])
        assert identity.card_validity_warnings(date(2026, 1, 1), date(2027, 12, 31), today) == []
        assert identity.parse_bhyt_number("TE2010120878811").warnings  # TE cards are level 1
