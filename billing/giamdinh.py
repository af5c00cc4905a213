"""The GIAMDINHHS envelope and the inner table documents (shared/reference/bhyt-xml.md §2–§4): writing
them fast as text, reading them back for validation. Signing is billing.signing's.

Inner documents: UTF-8, an XML declaration, no namespace, every field of the table in its order
(empty ones as empty elements). Envelope: MACSKCB, NGAYLAP, SOLUONGHOSO, one HOSO per claim with
one FILEHOSO per table (LOAIHOSO, NOIDUNGFILE = base64 of the inner document), CHUKYDONVI.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from functools import cache
from xml.sax.saxutils import escape

from lxml import etree

from billing import fieldspec

DECLARATION = '<?xml version="1.0" encoding="utf-8"?>\n'
DSIG_NS = "http://www.w3.org/2000/09/xmldsig#"

# Table → (root, list, record) element names; (root, None, None) when the root is the record.
# XML1–XML5 are confirmed by real exports; the check-in table's transport and root are not known
# publicly [U]: its root name below is ours.
TAGS = {
    "CHECKIN": ("CHI_TIEU_TRANG_THAI_KCB", None, None),
    "XML1": ("TONG_HOP", None, None),
    "XML2": ("CHITIEU_CHITIET_THUOC", "DSACH_CHI_TIET_THUOC", "CHI_TIET_THUOC"),
    "XML3": ("CHITIEU_CHITIET_DVKT_VTYT", "DSACH_CHI_TIET_DVKT", "CHI_TIET_DVKT"),
    "XML4": ("CHITIEU_CHITIET_DICHVUCANLAMSANG", "DSACH_CHI_TIET_CLS", "CHI_TIET_CLS"),
    "XML5": ("CHITIEU_CHITIET_DIENBIENLAMSANG", "DSACH_CHI_TIET_DIEN_BIEN_BENH", "CHI_TIET_DIEN_BIEN_BENH"),
    "XML7": ("CHI_TIEU_DU_LIEU_GIAY_RA_VIEN", None, None),
}


@cache
def _template(fmt: str, table: str, tag: str) -> str:
    """The record with a slot per field, in order; empty fields stay as empty elements (<X></X>)."""
    return f"<{tag}>" + "".join(f"<{n}>{{}}</{n}>" for n in fieldspec.names(fmt, table)) + f"</{tag}>"


def _record(template: str, names: tuple[str, ...], row: dict) -> str:
    get = row.get
    return template.format(*["" if v is None else str(v).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
                             for v in map(get, names)])


def render_table(fmt: str, table: str, rows: list[dict]) -> bytes:
    """One inner document; every row has exactly the table's fields, in order."""
    names = fieldspec.names(fmt, table)
    root, listing, record = TAGS[table]
    if listing is None:
        (row,) = rows
        return (DECLARATION + _record(_template(fmt, table, root), names, row)).encode("utf-8")
    template = _template(fmt, table, record)
    body = "".join(_record(template, names, row) for row in rows)
    return f"{DECLARATION}<{root}><{listing}>{body}</{listing}></{root}>".encode()


def envelope(facility_code: str, made_on: str, claims: list[list[tuple[str, bytes]]]) -> bytes:
    """The unsigned envelope: `claims` is one list of (LOAIHOSO, inner document) per HOSO."""
    hoso = []
    for files in claims:
        parts = "".join(f"<FILEHOSO><LOAIHOSO>{kind}</LOAIHOSO><NOIDUNGFILE>{base64.b64encode(content).decode()}"
                        f"</NOIDUNGFILE></FILEHOSO>" for kind, content in files)
        hoso.append(f"<HOSO>{parts}</HOSO>")
    return (f"{DECLARATION}<GIAMDINHHS><THONGTINDONVI><MACSKCB>{escape(facility_code)}</MACSKCB></THONGTINDONVI>"
            f"<THONGTINHOSO><NGAYLAP>{made_on}</NGAYLAP><SOLUONGHOSO>{len(claims)}</SOLUONGHOSO>"
            f"<DANHSACHHOSO>{''.join(hoso)}</DANHSACHHOSO></THONGTINHOSO><CHUKYDONVI/></GIAMDINHHS>").encode()


# --- reading ------------------------------------------------------------------------------------

class EnvelopeError(ValueError):
    pass


@dataclass
class Table:
    kind: str  # XML1 …
    root: str
    # Each record as (field names in document order, {name: text}).
    records: list[tuple[list[str], dict[str, str]]]


@dataclass
class Envelope:
    facility_code: str | None
    made_on: str | None
    declared_count: str | None
    claims: list[list[Table]]
    signed: bool


def _text(element) -> str:
    return (element.text or "").strip()


def parse_table(kind: str, content: bytes) -> Table:
    if content.startswith(b"\xef\xbb\xbf"):  # readers accept a BOM (writers never emit one)
        content = content[3:]
    try:
        root = etree.fromstring(content, parser=etree.XMLParser(resolve_entities=False, no_network=True))
    except etree.XMLSyntaxError as exc:
        raise EnvelopeError(f"{kind}: not well-formed XML ({exc})") from None
    tags = TAGS.get(kind)
    if tags is None or tags[1] is None:
        records = [root]
    else:
        listing = root.find(tags[1])
        records = [] if listing is None else list(listing)
    return Table(kind, root.tag, [([child.tag for child in rec], {child.tag: _text(child) for child in rec})
                                  for rec in records])


def parse(content: bytes) -> Envelope:
    try:
        root = etree.fromstring(content, parser=etree.XMLParser(resolve_entities=False, no_network=True,
                                                                huge_tree=True))
    except etree.XMLSyntaxError as exc:
        raise EnvelopeError(f"not well-formed XML ({exc})") from None
    if root.tag != "GIAMDINHHS":
        raise EnvelopeError(f"the root element is {root.tag}, not GIAMDINHHS")
    claims = []
    for hoso in root.iterfind("THONGTINHOSO/DANHSACHHOSO/HOSO"):
        tables = []
        for item in hoso.iterfind("FILEHOSO"):
            kind = _text(item.find("LOAIHOSO")) if item.find("LOAIHOSO") is not None else ""
            try:
                inner = base64.b64decode(_text(item.find("NOIDUNGFILE")), validate=True)
            except (ValueError, TypeError, AttributeError):
                raise EnvelopeError(f"{kind or 'FILEHOSO'}: NOIDUNGFILE is not base64") from None
            tables.append(parse_table(kind, inner))
        claims.append(tables)
    signature = root.find(f"CHUKYDONVI/{{{DSIG_NS}}}Signature")
    return Envelope(root.findtext("THONGTINDONVI/MACSKCB"), root.findtext("THONGTINHOSO/NGAYLAP"),
                    root.findtext("THONGTINHOSO/SOLUONGHOSO"), claims, signature is not None)
