"""Where signing keys live. `KeyStore` is the interface the signing code uses; `SoftwareKeyStore`
keeps keys in the database encrypted (AES-256-GCM over PKCS#8, the key-encryption key derived with
scrypt from VNHIS_EHR_KEY_PASSPHRASE, or from the secret key when that is unset). A USB token
(PKCS#11) or a remote signing service implements the same two methods and keeps its keys itself.
"""

from __future__ import annotations

import functools
import hashlib
import os
from typing import Protocol

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.config import ConfigError
from ehr.models import Certificate, SoftwareKey

_SALT = b"vnhis.ehr.keystore.v1"
MIN_PASSPHRASE = 16


class KeyStore(Protocol):
    def store(self, session: Session, certificate: Certificate, private_key) -> None: ...

    def private_key(self, session: Session, certificate: Certificate): ...


class KeyMissing(LookupError):
    pass


@functools.lru_cache(maxsize=8)
def _kek(passphrase: str) -> bytes:
    # scrypt once per process and passphrase: slow on purpose against guessing, not per signature.
    return hashlib.scrypt(passphrase.encode(), salt=_SALT, n=2 ** 14, r=8, p=1, dklen=32)


class SoftwareKeyStore:
    def __init__(self, passphrase: str):
        if len(passphrase) < MIN_PASSPHRASE:
            raise ConfigError(f"VNHIS_EHR_KEY_PASSPHRASE must have at least {MIN_PASSPHRASE} characters")
        self._aead = AESGCM(_kek(passphrase))
        self._cache: dict[str, object] = {}

    def store(self, session: Session, certificate: Certificate, private_key) -> None:
        der = private_key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption())
        nonce = os.urandom(12)
        sealed = nonce + self._aead.encrypt(nonce, der, certificate.fingerprint.encode())
        session.add(SoftwareKey(certificate_id=certificate.id, encrypted_pkcs8=sealed))
        session.flush()

    def private_key(self, session: Session, certificate: Certificate):
        cached = self._cache.get(certificate.fingerprint)
        if cached is not None:
            return cached
        sealed = session.scalar(select(SoftwareKey.encrypted_pkcs8)
                                .where(SoftwareKey.certificate_id == certificate.id))
        if sealed is None:
            raise KeyMissing(certificate.fingerprint)
        der = self._aead.decrypt(sealed[:12], sealed[12:], certificate.fingerprint.encode())
        key = serialization.load_der_private_key(der, password=None)
        self._cache[certificate.fingerprint] = key
        return key


def from_config(cfg) -> SoftwareKeyStore:
    """The configured key store (software keys; the passphrase from the environment)."""
    passphrase = cfg.setting("VNHIS_EHR_KEY_PASSPHRASE") or hashlib.sha256(
        b"vnhis.ehr.keys:" + cfg.secret_key.encode()).hexdigest()
    return SoftwareKeyStore(passphrase)
