"""The facility's enveloped XML signature (XML-DSig, RSA-SHA256, C14N 1.1 as signxml
does by default) in CHUKYDONVI, verifiable with `xmlsec1 --verify --pubkey-cert-pem CERT FILE`.

The key is loaded once per process as a key object: passing PEM bytes makes signxml parse it again on
every call (40 ms instead of 0.7 ms, bhyt-xml.md §3). The exact profile BHXH expects (algorithm,
reference URI, certificate chain) is [U]: it lives here only.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from lxml import etree
from signxml import DigestAlgorithm, SignatureMethod, XMLSigner

from billing.giamdinh import DSIG_NS
from core.config import ConfigError


@dataclass(frozen=True)
class Signer:
    key: object
    cert_pem: bytes
    key_path: str
    cert_path: str
    passphrase: str | None = None

    def sign(self, envelope: bytes) -> bytes:
        root = etree.fromstring(envelope, parser=etree.XMLParser(huge_tree=True))
        holder = root.find("CHUKYDONVI")
        etree.SubElement(holder, f"{{{DSIG_NS}}}Signature", Id="placeholder")
        signer = XMLSigner(signature_algorithm=SignatureMethod.RSA_SHA256, digest_algorithm=DigestAlgorithm.SHA256)
        signed = signer.sign(root, key=self.key, cert=self.cert_pem.decode())
        return etree.tostring(signed, xml_declaration=True, encoding="utf-8")

    def __reduce__(self):
        """Pickled as its paths, for the export's worker processes: each loads the key from its file
        (a key object cannot be pickled, and the unencrypted key must not travel through pipes)."""
        return load, (self.key_path, self.cert_path, self.passphrase)


def load(key_path: str, cert_path: str, passphrase: str | None = None) -> Signer:
    """passphrase: of an encrypted PEM key (VNHIS_BILLING_SIGNING_KEY_PASSPHRASE)."""
    try:
        key = serialization.load_pem_private_key(Path(key_path).read_bytes(),
                                                 password=passphrase.encode() if passphrase else None)
        cert = Path(cert_path).read_bytes()
        x509.load_pem_x509_certificate(cert)
    except TypeError:  # cryptography's answer to a password missing for an encrypted key, or given for a plain one
        need = "unset" if passphrase else "set"
        state = "not encrypted" if passphrase else "encrypted"
        raise ConfigError(f"the claim signing key {key_path} is {state}: {need} VNHIS_BILLING_SIGNING_KEY_PASSPHRASE"
                          ) from None
    except (OSError, ValueError) as exc:
        reason = " ".join(str(exc).split())
        raise ConfigError(f"cannot load the claim signing key/certificate ({key_path}, {cert_path}): {reason}"
                          ) from None
    return Signer(key, cert, key_path, cert_path, passphrase)


def make_self_signed(directory: Path, common_name: str = "vnhis development") -> tuple[Path, Path]:
    """A key and certificate for development, the demo and tests (never for production claims)."""
    directory.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=3650)).sign(key, hashes.SHA256()))
    key_path, cert_path = directory / "signing-key.pem", directory / "signing-cert.pem"
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path
