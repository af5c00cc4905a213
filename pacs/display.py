"""DICOM values as the screens show them: DA as dd/mm/yyyy and TM as HH:mm, like every other date of the app
(DICOMweb and JSON keep the raw values). A value that is not a well-formed date or time is shown as stored."""

from __future__ import annotations

from datetime import datetime

from flask_babel import lazy_gettext as _l

from core.i18n import format_date

# The labels of render.PRESETS (the names stay the values the preview URL takes).
PRESET_LABELS = {"brain": _l("Brain"), "subdural": _l("Subdural"), "stroke": _l("Stroke"), "lung": _l("Lung"),
                 "mediastinum": _l("Mediastinum"), "abdomen": _l("Abdomen"), "liver": _l("Liver"),
                 "bone": _l("Bone")}


def dicom_date(value: str | None) -> str:
    """'20261202' → '02/12/2026'."""
    text = (value or "").strip()
    try:
        return format_date(datetime.strptime(text, "%Y%m%d").date())
    except ValueError:
        return text


def dicom_time(value: str | None) -> str:
    """'093012.5', '0930' or the old '09:30:12' → '09:30'."""
    text = (value or "").strip().replace(":", "")
    hours, minutes = text[:2], text[2:4] or "00"
    if len(hours) == 2 and (hours + minutes).isdigit() and int(hours) < 24 and int(minutes) < 60:
        return f"{hours}:{minutes}"
    return (value or "").strip()
