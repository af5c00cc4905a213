"""The billing demo seed: bed-day services for the demo wards and drug tender data, idempotent."""

from sqlalchemy import func, select

from billing import demo
from billing.models import DepartmentBedService, ItemTerms
from core.audit import Actor
from his import demo_catalog
from his.models.org import Department


def test_seed_twice_changes_nothing(db_session):
    actor = Actor.system("demo")
    demo_catalog.seed(db_session, actor)
    for code in ("KNOI", "KNGOAI"):
        db_session.add(Department(code=code, name=code, is_clinical=True, active=True))
    db_session.flush()
    demo.seed(db_session, actor)
    counts = (db_session.scalar(select(func.count()).select_from(DepartmentBedService)),
              db_session.scalar(select(func.count()).select_from(ItemTerms)))
    assert counts[0] == 2 and counts[1] > 0  # the two wards present
    demo.seed(db_session, actor)
    assert (db_session.scalar(select(func.count()).select_from(DepartmentBedService)),
            db_session.scalar(select(func.count()).select_from(ItemTerms))) == counts
