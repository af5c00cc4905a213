"""Organisation: add and retire departments, rooms, beds, service points, staff; precise errors."""

import pytest
from sqlalchemy import func, select

from his import org
from his.models.org import Department, Room
from his.org import OrgError
from tests.conftest import csrf_token, login
from tests.his.conftest import DESK


def test_add_the_pieces(db_session):
    dept = org.add_department(db_session, DESK, code="knoi", name="Khoa Nội", bhyt_code="K03")
    room = org.add_room(db_session, DESK, department_id=dept.id, code="N1", name="Buồng 1", kind="ward")
    bed = org.add_bed(db_session, DESK, room_id=room.id, code="N1-G1", bhyt_code="H001")
    point = org.add_service_point(db_session, DESK, code="PKN", name="Phòng khám Nội", kind="exam_room",
                                  room_id=room.id, normal_per_priority=3)
    assert (dept.code, bed.room_id, point.normal_per_priority) == ("KNOI", room.id, 3)
    org.set_active(db_session, DESK, room, False)
    with pytest.raises(OrgError) as info:
        org.add_bed(db_session, DESK, room_id=room.id, code="N1-G2")
    assert info.value.code == "unknown"  # a retired room takes no new beds


@pytest.mark.parametrize(("kwargs", "code", "field"), [
    ({"code": "a b", "name": "x"}, "bad_code", "code"),
    ({"code": "KX", "name": " "}, "name_required", "name"),
    ({"code": "KX", "name": "x", "bhyt_code": "X1"}, "bad_bhyt_code", "bhyt_code"),
])
def test_bad_department(db_session, kwargs, code, field):
    before = db_session.scalar(select(func.count()).select_from(Department))
    with pytest.raises(OrgError) as info:
        org.add_department(db_session, DESK, **kwargs)
    assert (info.value.code, info.value.field) == (code, field)
    assert db_session.scalar(select(func.count()).select_from(Department)) == before


def test_duplicate_code_and_unknown_user(db_session, clinic):
    with pytest.raises(OrgError) as info:
        org.add_room(db_session, DESK, department_id=clinic["department"].id, code="P101", name="x", kind="exam")
    assert info.value.code == "code_taken"
    with pytest.raises(OrgError) as info:
        org.add_staff(db_session, DESK, full_name="BS A", username="khong-co")
    assert info.value.code == "unknown_user"


def test_admin_screen(client, make_user, clinic, db_session):
    make_user("quantri.org", "admin")
    login(client, "quantri.org")
    assert "Khoa Khám bệnh" in client.get("/org").get_data(as_text=True)
    token = csrf_token(client, "/org")
    response = client.post("/org/room", data={"department_id": clinic["department"].id, "code": "P101", "name": "x",
                                             "kind": "exam", "csrf_token": token})
    assert response.status_code == 422 and 'id="error-room-code"' in response.get_data(as_text=True)
    client.post("/org/room", data={"department_id": clinic["department"].id, "code": "P109", "name": "Phòng 9",
                                   "kind": "exam", "csrf_token": token})
    assert db_session.scalar(select(Room).where(Room.code == "P109")) is not None
