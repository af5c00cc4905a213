"""How a prescription is written on paper (TT 26/2025, shared/reference/his.md §7): the drug's name
(INN for a single ingredient, the brand in brackets; the brand for a combination), quantities under
10 with a leading zero, narcotic quantities also in words, toxic (N, H) drugs first."""

from __future__ import annotations

from decimal import Decimal

from his.models.catalog import Drug
from his.models.orders import OrderLine

_DIGITS = ["không", "một", "hai", "ba", "bốn", "năm", "sáu", "bảy", "tám", "chín"]


def quantity_text(quantity: Decimal | int) -> str:
    """'05' for 5, '12' for 12, '0,5' for a half: whole numbers under 10 get a leading zero."""
    value = Decimal(quantity)
    if value == value.to_integral_value():
        return f"{int(value):02d}"
    return format(value.normalize(), "f").replace(".", ",")


def _below_thousand(n: int, full: bool) -> str:
    hundreds, tens, units = n // 100, n // 10 % 10, n % 10
    words = []
    if full or hundreds:
        words += [_DIGITS[hundreds], "trăm"]
    if tens == 0:
        if units and words:
            words.append("linh")
    elif tens == 1:
        words.append("mười")
    else:
        words += [_DIGITS[tens], "mươi"]
    if units:
        if units == 1 and tens > 1:
            words.append("mốt")
        elif units == 5 and tens > 0:
            words.append("lăm")
        else:
            words.append(_DIGITS[units])
    return " ".join(words)


def number_words(n: int) -> str:
    """A whole number in Vietnamese words: 21 → 'hai mươi mốt', 105 → 'một trăm linh năm'."""
    if n < 0:
        raise ValueError("negative")
    if n == 0:
        return "không"
    groups, scales = [], ["", "nghìn", "triệu", "tỷ"]
    while n:
        groups.append(n % 1000)
        n //= 1000
    if len(groups) > len(scales):
        raise ValueError("too large")
    words = []
    for power in range(len(groups) - 1, -1, -1):
        group = groups[power]
        if group == 0:
            continue
        words.append(_below_thousand(group, full=power < len(groups) - 1))
        if scales[power]:
            words.append(scales[power])
    return " ".join(words)


def category(drug: Drug) -> str:
    """'narcotic' (an N prescription), 'psychotropic' (an H prescription) or 'ordinary'."""
    return "narcotic" if drug.is_narcotic else "psychotropic" if drug.is_psychotropic else "ordinary"


def drug_label(drug: Drug) -> str:
    """The name as prescribed: 'Paracetamol 500 mg (Panadol)' for one ingredient, the brand for a mix."""
    ingredient = (drug.active_ingredient or "").strip()
    combination = "+" in ingredient or not ingredient
    if combination:
        return drug.name
    label = f"{ingredient} {drug.strength}".strip() if drug.strength else ingredient
    brand = drug.name.strip()
    # A generic whose catalogue name is only the ingredient and strength needs no brand after it.
    if brand.casefold().replace(" ", "") in (label.casefold().replace(" ", ""), ingredient.casefold()):
        return label
    return f"{label} ({brand})"


def toxic_first(lines: list[OrderLine]) -> list[OrderLine]:
    """Narcotic and psychotropic drugs are listed before the others, each group in the order typed."""
    return sorted(lines, key=lambda line: (not (line.drug and (line.drug.is_narcotic or line.drug.is_psychotropic)),
                                           line.position))
