"""VietQR: the EMVCo merchant-presented QR payload of NAPAS 247 transfers (shared/reference/payments.md).

The text is a sequence of TLV items (2-digit id, 2-digit length, value; templates nest the same way)
ending with `6304` and a CRC-16/CCITT-FALSE over everything before it, `6304` included.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal

import segno

NAPAS_GUID = "A000000727"
TO_ACCOUNT = "QRIBFTTA"
VND = "704"
PURPOSE_MAX = 25


class QrError(ValueError):
    pass


def crc16(text: str) -> str:
    """CRC-16/CCITT-FALSE: poly 0x1021, init 0xFFFF, no reflection, no final xor; 4 upper-case hex digits."""
    crc = 0xFFFF
    for byte in text.encode("utf-8"):
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return f"{crc:04X}"


def tlv(tag: str, value: str) -> str:
    if len(value) > 99:
        raise QrError(f"value of {tag} is longer than 99 characters")
    return f"{tag}{len(value):02d}{value}"


def _ascii(text: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9 ._-]*", text):
        raise QrError("the transfer purpose must be plain ASCII letters, digits and spaces")
    return text


def payload(bin_code: str, account: str, amount: Decimal | int | None, purpose: str, *,
            merchant_name: str | None = None, city: str | None = None) -> str:
    """A dynamic QR (with the amount, for one bill) or a static one (no amount)."""
    if not re.fullmatch(r"\d{6}", bin_code or ""):
        raise QrError("the bank BIN has 6 digits")
    if len(purpose) > PURPOSE_MAX:
        raise QrError(f"the transfer purpose is longer than {PURPOSE_MAX} characters")
    beneficiary = tlv("00", bin_code) + tlv("01", account)
    parts = [tlv("00", "01"), tlv("01", "11" if amount is None else "12"),
             tlv("38", tlv("00", NAPAS_GUID) + tlv("01", beneficiary) + tlv("02", TO_ACCOUNT)), tlv("53", VND)]
    if amount is not None:
        value = Decimal(amount)
        if value <= 0 or value != value.to_integral_value():
            raise QrError("the amount is a positive whole number of đồng")
        parts.append(tlv("54", str(int(value))))
    parts.append(tlv("58", "VN"))
    if merchant_name:
        parts.append(tlv("59", _ascii(merchant_name)[:25]))
    if city:
        parts.append(tlv("60", _ascii(city)[:15]))
    parts.append(tlv("62", tlv("08", _ascii(purpose))))
    body = "".join(parts) + "6304"
    return body + crc16(body)


def parse_tlv(text: str) -> dict[str, str]:
    """Items of one level; a length that runs past the end, or a repeated id, is an error."""
    items: dict[str, str] = {}
    pos = 0
    while pos < len(text):
        head = text[pos:pos + 4]
        if len(head) < 4 or not head.isdigit():
            raise QrError(f"bad TLV header at {pos}")
        tag, size = head[:2], int(head[2:])
        value = text[pos + 4:pos + 4 + size]
        if len(value) != size:
            raise QrError(f"item {tag} claims {size} characters, {len(value)} remain")
        if tag in items:
            raise QrError(f"item {tag} repeated")
        items[tag] = value
        pos += 4 + size
    return items


@dataclass(frozen=True)
class Decoded:
    dynamic: bool
    bin_code: str
    account: str
    service: str
    amount: Decimal | None
    purpose: str | None


def decode(text: str) -> Decoded:
    """Check the CRC and every nested length; raise QrError on anything that does not add up."""
    if len(text) < 8 or text[-8:-4] != "6304":
        raise QrError("no CRC item at the end")
    if crc16(text[:-4]) != text[-4:].upper():
        raise QrError("CRC mismatch")
    top = parse_tlv(text)
    merchant = parse_tlv(top.get("38", ""))
    if merchant.get("00") != NAPAS_GUID:
        raise QrError("not a NAPAS VietQR (GUID)")
    beneficiary = parse_tlv(merchant.get("01", ""))
    extra = parse_tlv(top.get("62", ""))
    return Decoded(top.get("01") == "12", beneficiary.get("00", ""), beneficiary.get("01", ""), merchant.get("02", ""),
                   Decimal(top["54"]) if "54" in top else None, extra.get("08"))


def svg(text: str) -> str:
    """The QR image as inline SVG (no file, no network)."""
    return segno.make(text, error="m").svg_inline(scale=5, border=2)
