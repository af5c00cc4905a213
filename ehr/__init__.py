"""ehr — electronic medical records (TT 46/2018 → TT 13/2025, CV 365): forms, versions, signatures,
access with break-glass, retention, export. Depends on his and core only."""

from __future__ import annotations


def init_app(app) -> None:
    from ehr import keystore, tsa, web
    from his.web import panels

    cfg = app.extensions["vnhis.config"]
    app.extensions["ehr.keys"] = keystore.from_config(cfg)
    app.extensions["ehr.tsa"] = tsa.from_config(cfg)
    app.register_blueprint(web.bp)
    panels.add(app, "encounter", "ehr", web.panel, order=300, permission="ehr.record.read")
    panels.add(app, "patient", "ehr", web.patient_panel, order=300, permission="ehr.record.read")


def register_cli(group) -> None:
    from ehr import cli

    cli.register(group)
