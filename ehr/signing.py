"""Sign a document version (detached CMS over its canonical bytes, the signer's certificate, the signing
time, optionally an RFC 3161 token over the signature value) and check stored signatures.

Before signing, the certificate must belong to the signer, be in its validity period, not be revoked,
and chain to a trusted CA (NĐ 23/2025 Đ15). A signed version is frozen: the next edit makes a new version
that needs its own signature.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace

from flask_babel import lazy_gettext as _l
from sqlalchemy import select
from sqlalchemy.orm import Session

from core import audit
from core.audit import Actor
from core.db import utcnow
from core.models import User
from core.permissions import ROLES
from ehr import access, cms, pki, tsa
from ehr.form_defs import FORMS
from ehr.keystore import KeyStore
from ehr.models import Certificate, Signature, Version
from ehr.records import RecordError, authorise, lock, person, sha256

STATUS_LABELS = {"valid": _l("Valid signature"), "broken": _l("Broken: the content or signature was changed"),
                 "untrusted": _l("Certificate not issued by a trusted CA"),
                 "expired": _l("Certificate expired at the signing time"),
                 "revoked": _l("Certificate revoked")}


def _date(value) -> str:
    return value.strftime("%d/%m/%Y")


def _certificate_for(session: Session, actor: Actor, certificate: Certificate | None) -> Certificate:
    if certificate is None:
        certificate = pki.signing_certificate(session, actor.id) if actor.id is not None else None
        if certificate is None:
            raise RecordError("no_certificate", _l("You have no signing certificate: ask the administrator to issue "
                                                   "or register one."))
    if certificate.user_id != actor.id or certificate.kind != "staff":
        raise RecordError("not_your_certificate", _l("This certificate does not belong to you."))
    now = utcnow()
    if certificate.revoked_at is not None:
        raise RecordError("revoked", _l("Your certificate was revoked on %(day)s: it can no longer sign.",
                                        day=_date(certificate.revoked_at)))
    if now > certificate.not_after:
        raise RecordError("expired", _l("Your certificate expired on %(day)s: it can no longer sign.",
                                        day=_date(certificate.not_after)))
    if now < certificate.not_before:
        raise RecordError("not_yet_valid", _l("Your certificate is valid only from %(day)s.",
                                              day=_date(certificate.not_before)))
    cert = pki.load(certificate)
    issuer = next((ca for ca in pki.trusted_cas(session, external=False) if ca.subject == cert.issuer), None)
    if issuer is None:
        raise RecordError("untrusted", _l("Your certificate was not issued by a CA this facility trusts."))
    return certificate


def sign(session: Session, actor: Actor, version: Version, keys: KeyStore, *, certificate: Certificate | None = None,
         stamper: tsa.TimeStamper | None = None, cfg=None) -> Signature:
    document = lock(session, version.document_id)
    how = authorise(session, actor, document.record, "sign", cfg)
    if document.status == "cancelled":
        raise RecordError("cancelled", _l("This document was cancelled: it cannot be signed."))
    if version.number != document.current_version:
        raise RecordError("not_current", _l("Only the newest version (%(n)d) can be signed.",
                                            n=document.current_version))
    if session.scalar(select(Signature.id).where(Signature.version_id == version.id,
                                                 Signature.signer_id == actor.id)) is not None:
        raise RecordError("already_signed", _l("You have already signed this version."))
    form = FORMS[document.form_code]
    user = session.get(User, actor.id) if actor.id is not None else None
    if user is None or not user.role_codes & set(form.signers):
        raise RecordError("not_a_signer", _l("«%(form)s» is signed by: %(roles)s.", form=form.title,
                                             roles=", ".join(str(ROLES[r]) for r in form.signers)))
    certificate = _certificate_for(session, actor, certificate)
    der = cms.sign(version.canonical, pki.load(certificate), keys.private_key(session, certificate))
    token = token_time = None
    if stamper is not None:
        value = cms.signed_data(der)["signer_infos"][0]["signature"].native
        token, token_time = stamper.stamp(hashlib.sha256(value).digest())
    name, title = person(session, actor)
    signature = Signature(version_id=version.id, certificate_id=certificate.id, signer_id=actor.id, signer_name=name,
                          signer_title=title, content_hash=version.content_hash, cms=der, signed_at=utcnow(),
                          tsa_token=token, tsa_time=token_time)
    session.add(signature)
    document.signed_version = version.number
    session.flush()
    audit.record(session, actor, "ehr.document.sign", document,
                 {"record_id": document.record_id, "patient_id": document.record.patient_id,
                  "version": version.number, "hash": version.content_hash, "certificate": certificate.serial,
                  "timestamped": token is not None} | access.flagged(how))
    return signature


@dataclass(frozen=True)
class Verdict:
    status: str
    detail: str
    signer: str | None
    signing_time: object
    timestamp: str | None = None  # the RFC 3161 token's check, when there is one

    @property
    def ok(self) -> bool:
        return self.status == "valid"

    @property
    def label(self):
        return STATUS_LABELS[self.status]


def verify_bytes(der: bytes, content: bytes, cas, revoked_at=None, signed_at=None) -> Verdict:
    """A signature over `content`: broken, untrusted, expired, revoked, or valid. Revocation is judged at
    `signed_at`, the time this server recorded (a time-stamp's or its own clock), never at the signing time
    written inside the CMS, which the signer chose."""
    checked = cms.check(der, content, cas)
    signer = checked.signer.subject.rfc4514_string() if checked.signer is not None else None
    if checked.ok and revoked_at is not None and (signed_at or checked.signing_time) >= revoked_at:
        return Verdict("revoked", "the certificate was revoked before the signing time", signer, checked.signing_time)
    return Verdict(checked.status, checked.detail, signer, checked.signing_time)


def verify(session: Session, signature: Signature) -> Verdict:
    """Check a stored signature against the stored bytes and this facility's CAs and revocations."""
    version = signature.version
    if sha256(version.canonical) != signature.content_hash:
        return Verdict("broken", "the stored content no longer matches its signed hash", signature.signer_name,
                       signature.signed_at)
    cas = pki.trusted_cas(session)
    verdict = verify_bytes(signature.cms, version.canonical, cas, signature.certificate.revoked_at,
                           signature.tsa_time or signature.signed_at)
    if signature.tsa_token is None:
        return verdict
    value = cms.signed_data(signature.cms)["signer_infos"][0]["signature"].native
    return replace(verdict, timestamp=tsa.check(signature.tsa_token, hashlib.sha256(value).digest(), cas))
