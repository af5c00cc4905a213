"""Printed matter: the 50×25 mm Code 128 tube label and the result report, as HTML and as PDF."""

from __future__ import annotations

import io
import re

from barcode import Code128
from barcode.writer import SVGWriter
from markupsafe import Markup


def code128_svg(value: str) -> Markup:
    """An inline SVG of the barcode, sized to fit a 50 mm label with its quiet zones."""
    out = io.BytesIO()
    Code128(value, writer=SVGWriter()).write(out, options={
        "module_width": 0.3, "module_height": 11.0, "quiet_zone": 2.0, "write_text": False})
    svg = out.getvalue().decode("utf-8")
    svg = svg[svg.index("<svg"):]
    return Markup(re.sub(r"<!--.*?-->", "", svg, flags=re.S))  # noqa: S704 (SVG we generated from a barcode)


def pdf(html: str, base_url: str | None = None) -> bytes:
    from weasyprint import HTML

    return HTML(string=html, base_url=base_url).write_pdf()
