"""Where signing keys live. `KeyStore` is the interface the signing code uses; `SoftwareKeyStore`
keeps keys in the database encrypted (AES-256-GCM over PKCS#8, the key-encryption key derived with
scrypt from VNHIS_EHR_KEY_PASSPHRASE and a random salt of that key; outside production, from the secret
key when the passphrase is unset). A USB token
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

MIN_PASSPHRASE = 16
SALT_BYTES, NONCE_BYTES = 16, 12  # a stored key is salt + nonce + AES-GCM(PKCS#8)


class KeyStore(Protocol):
    def store(self, session: Session, certificate: Certificate, private_key) -> None: ...

    def private_key(self, session: Session, certificate: Certificate): ...


class KeyMissing(LookupError):
    pass


@functools.lru_cache(maxsize=256)
def _kek(passphrase: str, salt: bytes) -> bytes:
    # scrypt once per process, passphrase and key: slow on purpose against guessing, not per signature.
    return hashlib.scrypt(passphrase.encode(), salt=salt, n=2 ** 14, r=8, p=1, dklen=32)


class SoftwareKeyStore:
    def __init__(self, passphrase: str):
        if len(passphrase) < MIN_PASSPHRASE:
            raise ConfigError(f"VNHIS_EHR_KEY_PASSPHRASE must have at least {MIN_PASSPHRASE} characters")
        self._passphrase = passphrase
        self._cache: dict[str, object] = {}

    def store(self, session: Session, certificate: Certificate, private_key) -> None:
        der = private_key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption())
        salt, nonce = os.urandom(SALT_BYTES), os.urandom(NONCE_BYTES)
        sealed = salt + nonce + AESGCM(_kek(self._passphrase, salt)).encrypt(nonce, der,
                                                                             certificate.fingerprint.encode())
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
        salt, nonce, body = sealed[:SALT_BYTES], sealed[SALT_BYTES:][:NONCE_BYTES], sealed[SALT_BYTES + NONCE_BYTES:]
        der = AESGCM(_kek(self._passphrase, salt)).decrypt(nonce, body, certificate.fingerprint.encode())
        key = serialization.load_der_private_key(der, password=None)
        self._cache[certificate.fingerprint] = key
        return key


def from_config(cfg) -> SoftwareKeyStore:
    """The configured key store (software keys; the passphrase from the environment)."""
    passphrase = cfg.setting("VNHIS_EHR_KEY_PASSPHRASE")
    if passphrase is None:
        if cfg.is_production:  # the signing keys must not hang on the web session secret
            raise ConfigError("VNHIS_EHR_KEY_PASSPHRASE must be set in production (the signing keys' passphrase)")
        passphrase = hashlib.sha256(b"vnhis.ehr.keys:" + cfg.secret_key.encode()).hexdigest()
    return SoftwareKeyStore(passphrase)
