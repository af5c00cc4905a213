"""Small helpers shared by the his screens (a leading underscore: not a blueprint module)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time

from flask import abort
from sqlalchemy import select

from core.web import config, db_session
from his.models.org import ServicePoint


def today() -> date:
    """The hospital's local date (tickets and encounter codes count per local day)."""
    return datetime.now(config().tz).date()


def day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=config().tz).astimezone(UTC)


def point_or_404(code: str) -> ServicePoint:
    point = db_session().scalar(select(ServicePoint).where(ServicePoint.code == code))
    if point is None:
        abort(404)
    return point


def active_points(kinds=None) -> list[ServicePoint]:
    stmt = select(ServicePoint).where(ServicePoint.active).order_by(ServicePoint.kind, ServicePoint.code)
    if kinds:
        stmt = stmt.where(ServicePoint.kind.in_(kinds))
    return list(db_session().scalars(stmt))


def flag(form, name: str) -> bool:
    return form.get(name) in ("1", "on", "true", "yes")
