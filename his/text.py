"""Folding Vietnamese text for search: lower case, diacritics removed, đ→d, single spaces.

"Nguyễn Thị Ánh  Đào" → "nguyen thi anh dao". Every search on names (patients, catalogues,
addresses) compares folded forms, so the one rule lives here.
"""

from __future__ import annotations

import unicodedata

_D = str.maketrans({"đ": "d", "Đ": "d"})


def fold(text: str | None) -> str:
    if not text:
        return ""
    decomposed = unicodedata.normalize("NFD", text.translate(_D))
    bare = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(bare.lower().split())
