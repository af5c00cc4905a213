"""Billing settings (one clear line per bad value) and why a card shown does not count."""

from datetime import date
from types import SimpleNamespace

import pytest

from billing import bills, settings
from core.config import ConfigError
from tests.conftest import make_config


def _load(tmp_path, **extra):
    return settings.load(make_config(tmp_path, extra=extra))


def test_defaults_and_bad_values(tmp_path):
    conf = _load(tmp_path)
    assert (conf.facility_level, conf.facility_code, conf.webhook_secret) == ("provincial", None, None)
    cases = [({"VNHIS_BILLING_FACILITY_LEVEL": "huyen"},
              "VNHIS_BILLING_FACILITY_LEVEL must be one of central, provincial, district, got 'huyen'"),
             ({"VNHIS_BILLING_FACILITY_CODE": "7900"},
              "VNHIS_BILLING_FACILITY_CODE must be a 5-character facility code (MA_CSKCB), got '7900'"),
             ({"VNHIS_BILLING_BANK_BIN": "97043"}, "VNHIS_BILLING_BANK_BIN must be the bank's 6-digit NAPAS BIN, "
                                                   "got '97043'"),
             ({"VNHIS_BILLING_WEBHOOK_SECRET": "short"},
              "VNHIS_BILLING_WEBHOOK_SECRET must have at least 16 characters")]
    for extra, message in cases:
        with pytest.raises(ConfigError) as err:
            _load(tmp_path, **extra)
        assert str(err.value) == message


def _encounter(number, valid_from=date(2026, 1, 1), valid_to=date(2026, 12, 31), level="4"):
    card = SimpleNamespace(number=number, valid_from=valid_from, valid_to=valid_to, benefit_level=level)
    return SimpleNamespace(bhyt_card=card)


def test_card_problems():
    day = date(2026, 12, 2)
    assert bills.card_problem(_encounter("DN4010123456789"), day) is None
    assert bills.card_problem(_encounter("0123456789", level="4"), day) is None  # the 10-digit BHXH number
    assert str(bills.card_problem(_encounter("DN40101234"), day)) == "The BHYT card number «DN40101234» is malformed."
    assert str(bills.card_problem(_encounter("DN4010123456789", valid_to=date(2026, 11, 30)), day)) == \
        "The BHYT card expired on 30/11/2026."
    assert str(bills.card_problem(_encounter("DN4010123456789", valid_from=date(2026, 12, 3)), day)) == \
        "The BHYT card is valid only from 03/12/2026."
    assert str(bills.card_problem(_encounter("0123456789", level=None), day)) == \
        "The card's benefit level is not known: check the card on the portal."
    assert str(bills.card_problem(SimpleNamespace(bhyt_card=None), day)) == "No BHYT card on the encounter."


def _encrypted_key(tmp_path, passphrase: bytes):
    from cryptography.hazmat.primitives import serialization

    from billing import signing

    key_path, cert_path = signing.make_self_signed(tmp_path)
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.BestAvailableEncryption(passphrase)))
    return str(key_path), str(cert_path)


def test_an_encrypted_signing_key_needs_its_passphrase(tmp_path):
    import pickle

    from billing import signing

    key, cert = _encrypted_key(tmp_path, b"cum-tu-bi-mat")
    conf = _load(tmp_path, VNHIS_BILLING_SIGNING_KEY=key, VNHIS_BILLING_SIGNING_CERT=cert,
                 VNHIS_BILLING_SIGNING_KEY_PASSPHRASE="cum-tu-bi-mat")
    assert conf.signing_key_passphrase == "cum-tu-bi-mat"
    with pytest.raises(ConfigError) as err:
        signing.load(key, cert)
    assert str(err.value) == f"the claim signing key {key} is encrypted: set VNHIS_BILLING_SIGNING_KEY_PASSPHRASE"
    with pytest.raises(ConfigError) as err:
        signing.load(key, cert, "sai")
    assert str(err.value).startswith(f"cannot load the claim signing key/certificate ({key}, {cert}): ")
    assert "\n" not in str(err.value)
    signer = signing.load(key, cert, conf.signing_key_passphrase)
    envelope = b"<GIAMDINHHS><CHUKYDONVI/></GIAMDINHHS>"
    assert b"SignatureValue" in signer.sign(envelope)
    # The export's worker processes get the paths, never the key itself, and load it from its file.
    pickled = pickle.dumps(signer)
    assert b"PRIVATE KEY" not in pickled and key.encode() in pickled
    assert b"SignatureValue" in pickle.loads(pickled).sign(envelope)  # noqa: S301 (our own pickle)
