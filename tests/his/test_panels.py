"""Other modules add sections to the encounter page through his.web.panels, by permission."""

from sqlalchemy import select

from his.models.encounters import Encounter
from his.web import panels
from tests.conftest import login
from tests.his.test_web_reception import _scan


def test_a_registered_panel_shows_for_users_holding_its_permission(app, client, make_user, clinic, db_session):
    panels.add(app, "encounter", "lab", lambda e: f'<section id="lab-panel">{e.code}</section>', order=10,
               permission="lis.result.read")
    panels.add(app, "encounter", "secret", lambda e: '<section id="secret-panel"></section>',
               permission="billing.claim.export")
    make_user("tiepdon.panel", "receptionist")
    login(client, "tiepdon.panel")
    _scan(client, clinic["point"])
    encounter = db_session.scalars(select(Encounter)).one()
    make_user("bacsi.panel", "doctor")
    doctor = app.test_client()
    login(doctor, "bacsi.panel")
    html = doctor.get(f"/encounters/{encounter.id}").get_data(as_text=True)
    assert f'<section id="lab-panel">{encounter.code}</section>' in html
    assert "secret-panel" not in html
