"""`vnhis demo` gives the demo clinicians certificates from a demo CA, once; their keys sign."""

from cryptography.hazmat.primitives import serialization
from sqlalchemy import select

from core.audit import Actor
from ehr import demo, pki
from ehr.models import Certificate, SoftwareKey


def test_the_demo_ca_and_staff_certificates_are_made_once(db_session, keys, make_user):
    doctor = make_user("bacsi", "doctor")
    make_user("dieuduong", "nurse")
    make_user("quantri", "admin")
    demo.seed(db_session, Actor.system("demo"), keys)
    demo.seed(db_session, Actor.system("demo"), keys)
    rows = db_session.scalars(select(Certificate).order_by(Certificate.id)).all()
    assert [(r.kind, r.subject.split(",")[0]) for r in rows] == [
        ("ca", "CN=vnhis Demo CA"), ("staff", "CN=Bacsi"), ("staff", "CN=Dieuduong")]
    cert = pki.signing_certificate(db_session, doctor.id)
    assert cert.issuer == rows[0].subject
    stored = db_session.scalar(select(SoftwareKey.encrypted_pkcs8).where(SoftwareKey.certificate_id == cert.id))
    key = keys.private_key(db_session, cert)
    plain = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption())
    assert key.key_size == 2048 and plain not in stored and plain[16:48] not in stored  # kept encrypted
