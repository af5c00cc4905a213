"""Demo signing: a facility CA and a staff certificate (key kept encrypted in the software key store) for
each demo clinician, so the demo doctor and nurse can sign. Running it again changes nothing."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from core import config
from core.audit import Actor
from core.models import User
from ehr import keystore, pki
from ehr.models import Certificate

CA_NAME = "vnhis Demo CA"
ORGANISATION = "Bệnh viện Đa khoa vnhis (demo)"
SIGNING_ROLES = {"doctor", "nurse", "lab_physician", "radiologist", "pharmacist"}


def seed(session: Session, actor: Actor, keys: keystore.KeyStore | None = None) -> None:
    keys = keys or keystore.from_config(config.load())
    ca = session.scalar(select(Certificate).where(Certificate.kind == "ca", Certificate.subject.contains(CA_NAME)))
    if ca is None:
        ca = pki.create_ca(session, actor, keys, CA_NAME, ORGANISATION)
    users = session.scalars(select(User).where(User.is_active, User.is_machine.is_(False))).all()
    for user in users:
        if user.role_codes & SIGNING_ROLES and pki.signing_certificate(session, user.id) is None:
            pki.issue(session, actor, keys, ca, common_name=user.full_name, organisation=ORGANISATION, user_id=user.id)
    session.flush()
