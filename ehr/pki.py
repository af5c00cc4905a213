"""Certificates: a facility CA (for the demo and small clinics without a public CA), staff and
organisation certificates issued by it, and importing certificates issued by a licensed public CA.

Private keys never leave the key store (ehr.keystore); the certificate rows are public facts.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from sqlalchemy import select
from sqlalchemy.orm import Session

from core import audit
from core.audit import Actor
from core.db import utcnow
from ehr.keystore import KeyStore
from ehr.models import Certificate

CA_KINDS = ("ca", "external_ca")  # external: a sending facility's CA, kept when its record was imported


def _name(common_name: str, organisation: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "VN"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def load(row: Certificate) -> x509.Certificate:
    return x509.load_pem_x509_certificate(row.pem.encode())


def fingerprint(cert: x509.Certificate) -> str:
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def store_certificate(session: Session, cert: x509.Certificate, kind: str, user_id: int | None = None) -> Certificate:
    """The row of this certificate (added once: the same certificate again returns the existing row)."""
    digest = fingerprint(cert)
    row = session.scalar(select(Certificate).where(Certificate.fingerprint == digest))
    if row is not None:
        return row
    row = Certificate(kind=kind, user_id=user_id, subject=cert.subject.rfc4514_string(),
                      issuer=cert.issuer.rfc4514_string(), serial=format(cert.serial_number, "x"), fingerprint=digest,
                      not_before=cert.not_valid_before_utc, not_after=cert.not_valid_after_utc,
                      pem=cert.public_bytes(serialization.Encoding.PEM).decode())
    session.add(row)
    session.flush()
    return row


def create_ca(session: Session, actor: Actor, keys: KeyStore, common_name: str, organisation: str,
              years: int = 10) -> Certificate:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = utcnow()
    name = _name(common_name, organisation)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=365 * years))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    row = store_certificate(session, cert, "ca")
    keys.store(session, row, key)
    audit.record(session, actor, "ehr.certificate.ca_create", row, {"subject": row.subject})
    return row


def issue(session: Session, actor: Actor, keys: KeyStore, ca: Certificate, *, common_name: str, organisation: str,
          kind: str = "staff", user_id: int | None = None, not_before: datetime | None = None,
          days: int = 730) -> Certificate:
    """A signing certificate from the facility CA, its new key kept in `keys`."""
    ca_cert, ca_key = load(ca), keys.private_key(session, ca)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    start = not_before or utcnow() - timedelta(minutes=5)
    usage = ExtendedKeyUsageOID.TIME_STAMPING if kind == "tsa" else ExtendedKeyUsageOID.EMAIL_PROTECTION
    cert = (x509.CertificateBuilder().subject_name(_name(common_name, organisation)).issuer_name(ca_cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(start + timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=True, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=kind == "tsa")
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    row = store_certificate(session, cert, kind, user_id)
    keys.store(session, row, key)
    audit.record(session, actor, "ehr.certificate.issue", row,
                 {"subject": row.subject, "serial": row.serial, "user_id": user_id, "kind": kind})
    return row


def revoke(session: Session, actor: Actor, row: Certificate, reason: str) -> None:
    row.revoked_at, row.revoke_reason = utcnow(), reason.strip()
    session.flush()
    audit.record(session, actor, "ehr.certificate.revoke", row, {"serial": row.serial, "reason": row.revoke_reason})


def trusted_cas(session: Session, *, external: bool = True) -> list[x509.Certificate]:
    """This facility's CAs, and (unless `external` is False, as for signing here) the CAs of facilities
    whose records were imported, so their signatures keep verifying."""
    kinds = CA_KINDS if external else ("ca",)
    return [load(row) for row in session.scalars(select(Certificate).where(Certificate.kind.in_(kinds)))]


def signing_certificate(session: Session, user_id: int) -> Certificate | None:
    """The user's newest staff certificate (which may be expired or revoked: signing says why not)."""
    return session.scalar(select(Certificate).where(Certificate.user_id == user_id, Certificate.kind == "staff")
                          .order_by(Certificate.not_before.desc(), Certificate.id.desc()).limit(1))
