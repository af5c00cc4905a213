"""Demo accounts (one per role) and each module's demo data, for the embedded demo only.

The password is public on purpose (README); `vnhis demo` refuses to run in production mode.
"""

from __future__ import annotations

import importlib

from sqlalchemy import select
from sqlalchemy.orm import Session

from core import auth
from core.audit import Actor
from core.models import User

DEMO_PASSWORD = "vnhis-demo-2026"  # noqa: S105 (public demo password, refused in production)
ADMIN_USER = "admin"

# username, full name (Vietnamese order, as written), roles
DEMO_USERS = [
    (ADMIN_USER, "Quản trị hệ thống", ["admin"]),
    ("tiepdon", "Nguyễn Thị Lan", ["receptionist"]),
    ("bacsi", "Trần Văn Hùng", ["doctor"]),
    ("dieuduong", "Lê Thị Hoa", ["nurse"]),
    ("ktvxn", "Phạm Minh Tuấn", ["lab_technician"]),
    ("bsxn", "Đỗ Thu Hà", ["lab_physician"]),
    ("ktvcdha", "Vũ Đức Anh", ["radiographer"]),
    ("bscdha", "Hoàng Văn Nam", ["radiologist"]),
    ("duocsi", "Bùi Thị Mai", ["pharmacist"]),
    ("thungan", "Đặng Thị Thu", ["cashier"]),
    ("giamdinh", "Ngô Quang Minh", ["insurance_officer"]),
]


def seed(session: Session, module_names) -> int:
    """Create what is missing; running it again changes nothing. Returns accounts created."""
    actor = Actor.system("demo")
    existing = set(session.scalars(select(User.username)))
    created = 0
    for username, full_name, roles in DEMO_USERS:
        if username not in existing:
            auth.create_user(session, actor, username=username, full_name=full_name,
                             password=DEMO_PASSWORD, roles=roles)
            created += 1
    for name in module_names:
        try:
            module_demo = importlib.import_module(f"{name}.demo")
        except ModuleNotFoundError as exc:
            if exc.name != f"{name}.demo":
                raise
            continue
        module_demo.seed(session, actor)
    return created
