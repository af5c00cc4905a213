"""Leniency for queries that send UTF-8 text without declaring a character set.

DCMTK's findscu (and many modalities) send what the operator typed, e.g. "Dương*", as UTF-8 bytes with no
Specific Character Set (0008,0005); pydicom then decodes them in the default repertoire and the name
matches nothing. Real PACS accept such bytes as UTF-8: bytes that are valid UTF-8 but not ASCII are
almost never meant as Latin-1, and ASCII decodes the same either way.
"""

from __future__ import annotations

from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset

CHARACTER_SET = 0x00080005
TEXT_VRS = {"SH", "LO", "ST", "LT", "UC", "UT", "PN"}  # the VRs Specific Character Set applies to
PADDING = b" \x00"


def assume_utf8(ds: Dataset) -> Dataset:
    """Decode, in place, the still-undecoded text values of `ds` (and of its sequence items) as UTF-8 when
    `ds` declares no character set and their bytes are valid UTF-8 but not ASCII. Call it before anything
    reads the values: pydicom decodes a value on first access and keeps the result."""
    if CHARACTER_SET in ds:
        return ds
    for tag in list(ds.keys()):
        elem = ds.get_item(tag)
        if isinstance(elem, RawDataElement):
            vr = elem.VR or _dictionary_vr(tag)
            if vr == "SQ":
                for item in ds[tag].value:
                    assume_utf8(item)
            elif vr in TEXT_VRS and elem.value and not elem.value.isascii():
                try:
                    text = elem.value.rstrip(PADDING).decode("utf-8")
                except UnicodeDecodeError:
                    continue
                ds[tag] = DataElement(tag, vr, text)
        elif elem.VR == "SQ":
            for item in elem.value:
                assume_utf8(item)
    return ds


def _dictionary_vr(tag) -> str | None:
    try:
        return dictionary_VR(tag)
    except KeyError:  # a private or unknown tag: not ours to reinterpret
        return None
