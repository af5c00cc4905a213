"""Catalogue operations: resolve an ICD-10 code as of a date and for a diagnosis position, find the
price in force, change a price (closing the row in force), search by code or folded name.

Operations flush and never commit; errors carry a code for machines and a lazy message for people.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal

from flask_babel import lazy_gettext as _l
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from core import audit
from core.audit import Actor
from core.permissions import declare
from his.models.catalog import PAYERS, SEXES, Drug, DrugPrice, Icd10Code, Service, ServicePrice, Supply, SupplyPrice
from his.text import fold

# Reading catalogues is part of every clinical and administrative job; editing is his.catalog.manage.
declare("his.catalog.read", _l("View catalogues (services, drugs, ICD-10)"),
        ["receptionist", "doctor", "nurse", "lab_technician", "lab_physician", "radiographer", "radiologist",
         "pharmacist", "cashier", "insurance_officer", "admin"], "his")

POSITIONS = ("principal", "secondary", "cause_of_death")
PRICE_TABLE = {Service: (ServicePrice, "service_id"), Drug: (DrugPrice, "drug_id"), Supply: (SupplyPrice, "supply_id")}
PRICE_QUANTUM = Decimal("0.001")  # DON_GIA has 3 decimals


@dataclass
class CatalogError(Exception):
    code: str
    message: object  # a lazy string, rendered in the reader's language
    params: dict = field(default_factory=dict)

    def __str__(self) -> str:
        return str(self.message)


def search_form(text: str | None) -> str:
    """The folded form names are stored and searched in; punctuation counts as a space ('x-quang')."""
    return " ".join(_PUNCTUATION.sub(" ", fold(text)).split())


_PUNCTUATION = re.compile(r"[^0-9a-z]+")


def _day(value: date) -> str:
    return value.strftime("%d/%m/%Y")


# --- ICD-10 -------------------------------------------------------------------------------------

_ICD_RE = re.compile(r"^([A-Z][0-9][0-9A-Z])\.?([0-9A-Z]{0,4})$")


def normalise_icd10(code: str | None) -> str | None:
    """'b1800', 'B18.00 ', 'A17.0†' → 'B18.00' / 'A17.0'; None when it cannot be an ICD-10 code."""
    if not code:
        return None
    match = _ICD_RE.match(code.strip().upper().rstrip("†*+ "))
    if not match:
        return None
    head, tail = match.groups()
    return f"{head}.{tail}" if tail else head


def _in_force(column_from, column_to, on: date):
    return (column_from <= on) & (or_(column_to.is_(None), column_to >= on))


def resolve_icd10(session: Session, code: str, *, on: date, position: str = "principal") -> Icd10Code:
    """The code of the list in force on `on` (the episode end date), if it may stand in `position`.

    Warnings (discouraged as principal, sex mismatch) do not block: see `icd10_warnings`.
    """
    if position not in POSITIONS:
        raise ValueError(f"unknown diagnosis position {position!r}")
    normal = normalise_icd10(code)
    row = None
    if normal:
        row = session.scalars(
            select(Icd10Code).where(Icd10Code.code == normal, Icd10Code.active,
                                    _in_force(Icd10Code.valid_from, Icd10Code.valid_to, on))
            .order_by(Icd10Code.valid_from.desc()).limit(1)).first()
    shown = (normal or (code or "").strip())[:20]
    if row is None:
        raise CatalogError("icd10_unknown", _l("ICD-10 code «%(code)s» is not in the catalogue in force on %(day)s.",
                                               code=shown, day=_day(on)), {"code": shown})
    if row.not_for_use:
        raise CatalogError("icd10_not_for_use", _l("ICD-10 code «%(code)s» may not be used: choose a more "
                                                   "specific 4- or 5-character code.", code=row.code),
                           {"code": row.code})
    if row.cause_of_death_only and position != "cause_of_death":
        raise CatalogError("icd10_cause_of_death_only", _l("ICD-10 code «%(code)s» may only be used as the "
                                                           "cause of death.", code=row.code), {"code": row.code})
    if row.not_principal and position == "principal":
        raise CatalogError("icd10_not_principal", _l("ICD-10 code «%(code)s» may not be the main diagnosis; "
                                                     "record it as a secondary diagnosis.", code=row.code),
                           {"code": row.code})
    return row


def icd10_warnings(row: Icd10Code, *, position: str = "principal", sex: str | None = None) -> list:
    """Rules that warn without blocking (TT 06/2026 columns 25, 28, 29). sex: 'female' or 'male'."""
    warnings = []
    if row.discouraged_principal and position == "principal":
        warnings.append(_l("ICD-10 code «%(code)s» should not normally be the main diagnosis.", code=row.code))
    if row.sex and sex in SEXES and sex != row.sex:
        warnings.append(_l("ICD-10 code «%(code)s» applies to female patients.", code=row.code) if row.sex == "female"
                        else _l("ICD-10 code «%(code)s» applies to male patients.", code=row.code))
    return warnings


# --- prices -------------------------------------------------------------------------------------

def _price_rows(session: Session, item, payer: str | None):
    price_cls, fk = PRICE_TABLE[type(item)]
    stmt = select(price_cls).where(getattr(price_cls, fk) == item.id, price_cls.active)
    if price_cls is ServicePrice:
        stmt = stmt.where(ServicePrice.payer == payer)
    return price_cls, fk, session.scalars(stmt.order_by(price_cls.valid_from)).all()


def price_row(session: Session, item, on: date, payer: str | None = None):
    """The price row of `item` (a Service needs a payer) in force on `on`, or None."""
    _cls, _fk, rows = _price_rows(session, item, payer)
    return next((r for r in rows if r.valid_from <= on and (r.valid_to is None or r.valid_to >= on)), None)


def prices_in_force(session: Session, items, on: date) -> dict[int, dict]:
    """{item id: {payer or None: price}} for a page of items of one kind, in one query."""
    items = list(items)
    if not items:
        return {}
    price_cls, fk = PRICE_TABLE[type(items[0])]
    rows = session.scalars(select(price_cls).where(getattr(price_cls, fk).in_([i.id for i in items]), price_cls.active,
                                                   _in_force(price_cls.valid_from, price_cls.valid_to, on)))
    result: dict[int, dict] = {i.id: {} for i in items}
    for row in rows:
        result[getattr(row, fk)][getattr(row, "payer", None)] = row.price
    return result


def price_of(session: Session, service_code: str, payer: str, on: date) -> Decimal | None:
    """The service's price for `payer` ('bhyt', 'fee', 'on_demand') on `on`; None if it has none then."""
    if payer not in PAYERS:
        raise ValueError(f"unknown payer {payer!r}")
    service = session.scalar(select(Service).where(Service.code == service_code))
    if service is None:
        raise CatalogError("service_unknown", _l("Service «%(code)s» is not in the catalogue.", code=service_code),
                           {"code": service_code})
    row = price_row(session, service, on, payer)
    return None if row is None else row.price


def apply_price(session: Session, item, price: Decimal, valid_from: date, payer: str | None = None):
    """Make `price` the item's price from `valid_from`; returns the new row, or None if it already was.

    The row in force that day is closed the day before (or, starting the same day, marked inactive:
    a correction); a price set before a later one ends where the later one begins.
    """
    price = Decimal(price).quantize(PRICE_QUANTUM)
    if price < 0:
        raise ValueError("negative price")
    price_cls, fk, rows = _price_rows(session, item, payer)
    current = next((r for r in rows if r.valid_from <= valid_from and (r.valid_to is None or r.valid_to >= valid_from)),
                   None)
    if current is not None and current.price == price:
        return None
    if current is not None:
        valid_to = current.valid_to
        if current.valid_from == valid_from:
            current.active = False
        else:
            current.valid_to = valid_from - timedelta(days=1)
    else:
        later = next((r for r in rows if r.valid_from > valid_from), None)
        valid_to = None if later is None else later.valid_from - timedelta(days=1)
    row = price_cls(price=price, valid_from=valid_from, valid_to=valid_to, **{fk: item.id})
    if payer is not None:
        row.payer = payer
    session.add(row)
    session.flush()
    return row


def save_item(session: Session, model, fields: dict, prices, valid_from: date, *, known: dict | None = None):
    """Create or correct a service/drug/supply by its code and apply its prices from `valid_from`.

    prices: [(payer or None, Decimal)]; returns (item, 'created' | 'updated' | 'unchanged', new price rows).
    known: {code: item} already loaded by a caller saving many (an import).
    """
    # A drug is found by its brand name or its active ingredient.
    fields = {**fields, "name_folded": search_form(" ".join(filter(None, (fields["name"],
                                                                           fields.get("active_ingredient")))))}
    item = known.get(fields["code"]) if known is not None else \
        session.scalar(select(model).where(model.code == fields["code"]))
    status = "unchanged"
    if item is None:
        item = model(**fields, valid_from=valid_from, active=True)
        session.add(item)
        session.flush()
        status = "created"
    else:
        changed = {k: v for k, v in fields.items() if getattr(item, k) != v}
        if not item.active:
            changed["active"] = True
        for key, value in changed.items():
            setattr(item, key, value)
        status = "updated" if changed else status
    if known is not None:
        known[item.code] = item
    new_prices = sum(1 for payer, price in prices
                     if price is not None and apply_price(session, item, price, valid_from, payer) is not None)
    if status == "unchanged" and new_prices:
        status = "updated"
    return item, status, new_prices


def set_price(session: Session, actor: Actor, item, price: Decimal, valid_from: date, payer: str | None = None):
    """`apply_price` for one edit, audited (an import audits once for the whole sheet)."""
    row = apply_price(session, item, price, valid_from, payer)
    if row is not None:
        audit.record(session, actor, "catalog.price_set", item,
                     {"code": item.code, "payer": payer, "price": row.price, "valid_from": valid_from})
    return row


# --- search -------------------------------------------------------------------------------------

def _search(session: Session, model, query: str | None, *, on: date | None, page: int, per_page: int):
    stmt = select(model).where(model.active)
    text = (query or "").strip()
    if text:
        # Catalogues are tens of thousands of rows: a contains-match on the folded name is fast enough.
        stmt = stmt.where(or_(model.code.startswith(text.upper(), autoescape=True),
                              model.bhyt_code.startswith(text.upper(), autoescape=True),
                              model.name_folded.contains(search_form(text), autoescape=True)))
    if on is not None:
        stmt = stmt.where(or_(model.valid_from.is_(None), model.valid_from <= on),
                          or_(model.valid_to.is_(None), model.valid_to >= on))
    total = session.scalar(select(func.count()).select_from(stmt.subquery()))
    rows = session.scalars(stmt.order_by(model.code).offset((page - 1) * per_page).limit(per_page)).all()
    return list(rows), total


def search_services(session: Session, query: str | None = None, *, on: date | None = None, page: int = 1,
                    per_page: int = 50):
    return _search(session, Service, query, on=on, page=page, per_page=per_page)


def search_drugs(session: Session, query: str | None = None, *, on: date | None = None, page: int = 1,
                 per_page: int = 50):
    return _search(session, Drug, query, on=on, page=page, per_page=per_page)


def search_supplies(session: Session, query: str | None = None, *, on: date | None = None, page: int = 1,
                    per_page: int = 50):
    return _search(session, Supply, query, on=on, page=page, per_page=per_page)


def search_icd10(session: Session, query: str | None = None, *, on: date | None = None, page: int = 1,
                 per_page: int = 50):
    """Codes by code prefix (with or without the dot) or folded Vietnamese/English name."""
    normal = normalise_icd10(query) if query else None
    stmt = select(Icd10Code).where(Icd10Code.active)
    text = (query or "").strip()
    if text:
        code_prefix = (normal or text.upper()).rstrip(".")
        stmt = stmt.where(or_(Icd10Code.code.startswith(code_prefix, autoescape=True),
                              Icd10Code.name_folded.contains(search_form(text), autoescape=True)))
    if on is not None:
        stmt = stmt.where(_in_force(Icd10Code.valid_from, Icd10Code.valid_to, on))
    total = session.scalar(select(func.count()).select_from(stmt.subquery()))
    rows = session.scalars(stmt.order_by(Icd10Code.code, Icd10Code.valid_from.desc())
                           .offset((page - 1) * per_page).limit(per_page)).all()
    return list(rows), total
