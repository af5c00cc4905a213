"""Organisation fixtures for his tests: a clinic with an exam room and its queue."""

from datetime import date

import pytest

from core.audit import Actor
from his.models.org import Department, Room, ServicePoint

DESK = Actor(id=None, name="tiepdon", ip="10.0.0.2")
TODAY = date(2026, 12, 1)


def make_clinic(session) -> dict:
    """Khoa Khám bệnh with exam room P101 and its queue PK101 (flushed, not committed)."""
    dept = Department(code="KKB", name="Khoa Khám bệnh", bhyt_code="K01", is_clinical=True, active=True)
    session.add(dept)
    session.flush()
    room = Room(department_id=dept.id, code="P101", name="Phòng khám Nội 1", kind="exam", active=True)
    session.add(room)
    session.flush()
    point = ServicePoint(code="PK101", name="Phòng khám Nội 1", kind="exam_room", room_id=room.id,
                         normal_per_priority=2, active=True)
    session.add(point)
    session.flush()
    return {"department": dept, "room": room, "point": point}


@pytest.fixture
def clinic(db_session):
    made = make_clinic(db_session)
    db_session.commit()
    return made
