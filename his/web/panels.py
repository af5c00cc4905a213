"""Sections that other modules add to his pages without his importing them.

A module calls `add(app, "encounter", key, render, ...)` in its init_app; the encounter page (and the
patient page, with "patient") then shows, in `order`, the panels whose permission the user holds.
`render(record)` returns HTML (usually `render_template(...)`), escaped as usual by its own template.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from flask import current_app
from markupsafe import Markup

from core.permissions import has_permission
from core.web import current_user

PAGES = ("encounter", "patient")


@dataclass(frozen=True)
class Panel:
    key: str
    render: Callable[[object], str]
    order: int = 500
    permission: str | None = None


def add(app, page: str, key: str, render: Callable[[object], str], *, order: int = 500,
        permission: str | None = None) -> None:
    if page not in PAGES:
        raise ValueError(f"unknown page {page!r}; one of {PAGES}")
    panels = app.extensions.setdefault("his.panels", {p: {} for p in PAGES})
    panels[page][key] = Panel(key, render, order, permission)


def render_all(page: str, record) -> Markup:
    """The panels of `page` for `record` that the current user may see, concatenated in order."""
    user = current_user()
    panels = current_app.extensions.get("his.panels", {}).get(page, {}).values()
    html = [panel.render(record) for panel in sorted(panels, key=lambda p: (p.order, p.key))
            if panel.permission is None or has_permission(user, panel.permission)]
    return Markup("").join(Markup(part) for part in html)  # noqa: S704 (each part is a rendered template)
