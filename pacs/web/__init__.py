"""The pacs web edge: the imaging UI (studies, viewer, reports, remote nodes) and DICOMweb."""

from __future__ import annotations

from flask import render_template
from flask_babel import lazy_gettext as _l
from sqlalchemy import select

from core import audit
from core.web import NavEntry, add_nav, current_actor, db_session
from core.web.security import add_api_prefix, allow_preflight
from his.models.orders import Order
from his.web import panels
from pacs.display import dicom_date, dicom_time
from pacs.models import Report, Study


def _studies_panel(studies: list[Study], record) -> str:
    reports = {r.study_pk: r for r in db_session().scalars(select(Report).where(
        Report.study_pk.in_([s.id for s in studies])))} if studies else {}
    audit.record(db_session(), current_actor(), "pacs.study.list", record,
                 {"patient_id": getattr(record, "patient_id", getattr(record, "id", None)), "count": len(studies)})
    return render_template("pacs/panel.html", studies=studies, reports=reports)


def _patient_panel(patient) -> str:
    studies = list(db_session().scalars(select(Study).where(Study.patient_id == patient.id)
                                        .order_by(Study.study_date.desc(), Study.id.desc())))
    return _studies_panel(studies, patient)


def _encounter_panel(encounter) -> str:
    studies = list(db_session().scalars(select(Study).join(Order, Study.order_id == Order.id)
                                        .where(Order.encounter_id == encounter.id)
                                        .order_by(Study.study_date.desc(), Study.id.desc())))
    return _studies_panel(studies, encounter)


def init_app(app) -> None:
    from pacs import worklist
    from pacs.web import dicomweb, ui

    worklist.station_aes(app.extensions["vnhis.config"].setting("VNHIS_PACS_STATION_AES"))  # refused at start-up
    app.jinja_env.filters.update(dicom_date=dicom_date, dicom_time=dicom_time)
    app.register_blueprint(ui.bp)
    app.register_blueprint(dicomweb.bp)
    if app.extensions["vnhis.config"].setting("VNHIS_PACS_CORS_ORIGIN"):
        allow_preflight(app, dicomweb.bp.name)  # a viewer on another origin: dicomweb.preflight answers them
    add_api_prefix(app, "/dicom-web/")  # viewers get 401, not the login page
    add_nav(app, NavEntry("pacs.studies", _l("Imaging"), "pacs.image.view", _l("Imaging"), 400))
    add_nav(app, NavEntry("pacs.remotes_page", _l("DICOM nodes"), "pacs.admin", _l("Imaging"), 410))
    panels.add(app, "patient", "pacs.studies", _patient_panel, order=600, permission="pacs.image.view")
    panels.add(app, "encounter", "pacs.studies", _encounter_panel, order=600, permission="pacs.image.view")
