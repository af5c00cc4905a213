"""Detached CMS (PKCS#7, RFC 5652) signatures: make one over exact bytes, and check one without trusting
anything but the given CA certificates. The same check serves the UI, `vnhis ehr verify` and import;
`openssl cms -verify -binary -inform DER -content <bytes> -CAfile ca.pem -purpose any` agrees with it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from asn1crypto import cms as asn1_cms
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import pkcs7

_HASHES = {"sha256": hashes.SHA256, "sha384": hashes.SHA384, "sha512": hashes.SHA512}


def sign(content: bytes, cert: x509.Certificate, key) -> bytes:
    """DER of a detached signature with the signer's certificate and a signing-time attribute."""
    return (pkcs7.PKCS7SignatureBuilder().set_data(content).add_signer(cert, key, hashes.SHA256())
            .sign(serialization.Encoding.DER, [pkcs7.PKCS7Options.DetachedSignature, pkcs7.PKCS7Options.Binary]))


@dataclass(frozen=True)
class Checked:
    """What a signature says and whether it holds. status: valid, broken, untrusted, expired, revoked."""

    status: str
    signer: x509.Certificate | None
    signing_time: datetime | None
    detail: str = ""
    signature_value: bytes = b""

    @property
    def ok(self) -> bool:
        return self.status == "valid"


def _attr(signed_attrs, name: str):
    for attr in signed_attrs:
        if attr["type"].native == name:
            return attr["values"][0].native
    return None


def _verify_raw(public_key, signature: bytes, data: bytes, digest_name: str) -> None:
    algorithm = _HASHES[digest_name]()
    if isinstance(public_key, rsa.RSAPublicKey):
        public_key.verify(signature, data, padding.PKCS1v15(), algorithm)
    elif isinstance(public_key, ec.EllipticCurvePublicKey):
        public_key.verify(signature, data, ec.ECDSA(algorithm))
    else:
        raise InvalidSignature("unsupported key type")


def signed_data(der: bytes):
    info = asn1_cms.ContentInfo.load(der)
    if info["content_type"].native != "signed_data":
        raise ValueError("not a CMS SignedData")
    return info["content"]


def _signer(data, info) -> x509.Certificate:
    serial = info["sid"].chosen["serial_number"].native
    certs = (x509.load_der_x509_certificate(c.chosen.dump()) for c in data["certificates"])
    return next(c for c in certs if c.serial_number == serial)


def signer_certificate(der: bytes) -> x509.Certificate:
    data = signed_data(der)
    return _signer(data, data["signer_infos"][0])


def check(der: bytes, content: bytes | None, cas: list[x509.Certificate]) -> Checked:
    """Check the first signer of `der` over `content` (None: the encapsulated content, as in a TSA token)."""
    try:
        data = signed_data(der)
        info = data["signer_infos"][0]
        signer = _signer(data, info)
        digest_name = info["digest_algorithm"]["algorithm"].native
        if content is None:
            content = data["encap_content_info"]["content"].contents
        attrs = info["signed_attrs"]
        signing_time = _attr(attrs, "signing_time")
    except (ValueError, KeyError, StopIteration, TypeError) as exc:
        return Checked("broken", None, None, f"unreadable signature: {exc}")
    if _attr(attrs, "message_digest") != hashlib.new(digest_name, content).digest():
        return Checked("broken", signer, signing_time, "the content does not match the signature (changed)")
    to_verify = b"\x31" + attrs.dump()[1:]  # signed attributes are signed as a SET OF, not [0] IMPLICIT
    signature = info["signature"].native
    try:
        _verify_raw(signer.public_key(), signature, to_verify, digest_name)
    except InvalidSignature:
        return Checked("broken", signer, signing_time, "the signature value does not verify")
    issuer = next((ca for ca in cas if ca.subject == signer.issuer), None)
    try:
        if issuer is None:
            raise ValueError("issuer not trusted")
        signer.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return Checked("untrusted", signer, signing_time,
                       f"not issued by a trusted CA: {signer.issuer.rfc4514_string()}", signature)
    if signing_time is None or not signer.not_valid_before_utc <= signing_time <= signer.not_valid_after_utc:
        return Checked("expired", signer, signing_time, "the certificate was not valid at the signing time", signature)
    return Checked("valid", signer, signing_time, "", signature)
