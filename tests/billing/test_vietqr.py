"""VietQR payloads: the CRC against the two examples of payments.md, strict parsing, our bill QR."""

from decimal import Decimal

import pytest

from billing import vietqr

STATIC = ("00020101021138480010A00000072701300006970403011621129950446040255204581253037045802VN5910PHUONG CAC"
          "6005HANOI62110307NPS686963045802")
DYNAMIC = ("00020101021238570010A00000072701270006970436011300710001234560208QRIBFTTA530370454061500005802VN"
           "62180814VNHIS HD00012363041BFD")


def test_crc_of_the_published_examples():
    assert vietqr.crc16(STATIC[:-4]) == "5802"
    assert vietqr.crc16(DYNAMIC[:-4]) == "1BFD"
    assert vietqr.crc16("123456789") == "29B1"  # the CRC-16/CCITT-FALSE check value


def test_we_build_the_dynamic_example_exactly():
    assert vietqr.payload("970436", "0071000123456", Decimal(150000), "VNHIS HD000123") == DYNAMIC
    decoded = vietqr.decode(DYNAMIC)
    assert decoded == vietqr.Decoded(True, "970436", "0071000123456", "QRIBFTTA", Decimal(150000), "VNHIS HD000123")


def test_static_qr_has_no_amount():
    text = vietqr.payload("970436", "0071000123456", None, "VNHIS")
    assert text.startswith("000201010211")
    assert "54" not in vietqr.parse_tlv(text)
    assert vietqr.decode(text).amount is None


def test_bad_crc_and_bad_nested_length_are_refused():
    with pytest.raises(vietqr.QrError, match="CRC mismatch"):
        vietqr.decode(DYNAMIC[:-4] + "0000")
    broken = DYNAMIC.replace("01130071000123456", "01140071000123456")  # account length that does not add up
    broken = broken[:-4] + vietqr.crc16(broken[:-4])
    with pytest.raises(vietqr.QrError, match="claims"):
        vietqr.decode(broken)


def test_bad_amounts_and_purposes():
    with pytest.raises(vietqr.QrError, match="whole number"):
        vietqr.payload("970436", "0071000123456", Decimal("10.5"), "VNHIS HD1")
    with pytest.raises(vietqr.QrError, match="longer than 25"):
        vietqr.payload("970436", "0071000123456", 1000, "X" * 26)
    with pytest.raises(vietqr.QrError, match="ASCII"):
        vietqr.payload("970436", "0071000123456", 1000, "Viện phí")


def test_svg_image():
    assert vietqr.svg(DYNAMIC).startswith("<svg")
