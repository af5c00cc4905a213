"""Signing a version: detached CMS with the signer's certificate and signing time, checked by us and by the
openssl command line; a signed version is frozen; bad certificates are refused; RFC 3161 time-stamps."""

import hashlib
import subprocess
from datetime import date, timedelta

import pytest
from sqlalchemy import func, select

from core.db import utcnow
from ehr import cms, pki, records, signing, tsa
from ehr.models import Certificate, Signature
from ehr.records import RecordError
from tests.ehr.conftest import PASSPHRASE, SYSTEM, TREATMENT
from tests.ehr.tsa_server import serving

TODAY = date.today()


@pytest.fixture
def vi(app):
    with app.test_request_context():
        yield


@pytest.fixture
def sheet(db_session, hospital, ca):
    record = records.open_record(db_session, hospital.actor(hospital.doctor), hospital.encounter)
    doc = records.add_document(db_session, hospital.actor(hospital.doctor), record, "36/BV2", TREATMENT, on=TODAY)
    db_session.commit()
    return doc


def _signatures(session) -> int:
    return session.scalar(select(func.count()).select_from(Signature))


def test_a_signature_is_detached_cms_over_the_stored_bytes_and_verifies(db_session, hospital, keys, sheet, vi):
    version = records.current(db_session, sheet)
    sig = signing.sign(db_session, hospital.actor(hospital.doctor), version, keys)
    assert (sheet.signed_version, sig.signer_name, sig.signer_title) == (1, "Trần Văn Hùng", "BSCKI")
    checked = cms.check(sig.cms, version.canonical, pki.trusted_cas(db_session))
    assert checked.status == "valid" and checked.signer.subject.rfc4514_string().startswith("CN=Trần Văn Hùng")
    assert abs(checked.signing_time - sig.signed_at) < timedelta(seconds=5)
    verdict = signing.verify(db_session, sig)
    assert (verdict.status, str(verdict.label)) == ("valid", "Chữ ký hợp lệ")
    tampered = version.canonical.replace(b"Ceftriaxon", b"Cefotaxim")
    assert cms.check(sig.cms, tampered, pki.trusted_cas(db_session)).status == "broken"
    [event] = [e for e in db_session.info["vnhis.audit.pending"] if e["action"] == "ehr.document.sign"]
    assert event["detail"]["hash"] == version.content_hash


def test_a_signed_version_is_frozen_and_an_edit_makes_an_unsigned_new_version(db_session, hospital, keys, sheet, vi):
    actor = hospital.actor(hospital.doctor)
    signing.sign(db_session, actor, records.current(db_session, sheet), keys)
    with pytest.raises(RecordError) as err:
        records.edit(db_session, actor, sheet, TREATMENT | {"orders": "Đổi kháng sinh"}, expected_version=1, on=TODAY)
    assert str(err.value) == ("Phiên bản 1 đã ký, không thể thay đổi: hãy nhập lý do sửa đổi (tạo phiên bản mới "
                              "phải ký lại).")
    assert sheet.current_version == 1
    v2 = records.edit(db_session, actor, sheet, TREATMENT | {"orders": "Đổi kháng sinh"}, expected_version=1,
                      reason="Kháng sinh đồ", on=TODAY)
    assert (v2.number, v2.signatures, sheet.signed_version) == (2, [], 1)
    with pytest.raises(RecordError) as err:
        signing.sign(db_session, actor, sheet.versions[0], keys)
    assert str(err.value) == "Chỉ ký được phiên bản mới nhất (2)."
    signing.sign(db_session, actor, v2, keys)
    assert sheet.signed_version == 2 and _signatures(db_session) == 2


def test_certificates_that_cannot_sign_are_refused_and_nothing_is_signed(db_session, hospital, keys, sheet, ca, vi):
    version = records.current(db_session, sheet)
    doctor = hospital.actor(hospital.doctor)
    with pytest.raises(RecordError) as err:  # the facility's rule: the treating doctor signs a treatment sheet
        signing.sign(db_session, hospital.actor(hospital.nurse), version, keys)
    assert str(err.value) == "«Tờ điều trị» do Bác sĩ ký."
    nurse_cert = pki.signing_certificate(db_session, hospital.nurse.id)
    with pytest.raises(RecordError) as err:
        signing.sign(db_session, doctor, version, keys, certificate=nurse_cert)
    assert str(err.value) == "Chứng thư số này không phải của bạn."
    old = pki.issue(db_session, SYSTEM, keys, ca, common_name="Trần Văn Hùng", organisation="BV",
                    user_id=hospital.doctor.id, not_before=utcnow() - timedelta(days=800), days=365)
    with pytest.raises(RecordError) as err:
        signing.sign(db_session, doctor, version, keys, certificate=old)
    assert str(err.value) == f"Chứng thư số của bạn đã hết hạn ngày {old.not_after:%d/%m/%Y}: không thể ký nữa."
    current = pki.signing_certificate(db_session, hospital.doctor.id)
    pki.revoke(db_session, SYSTEM, current, "Mất thiết bị")
    with pytest.raises(RecordError) as err:
        signing.sign(db_session, doctor, version, keys)
    assert str(err.value) == f"Chứng thư số của bạn đã bị thu hồi ngày {utcnow():%d/%m/%Y}: không thể ký nữa."
    assert _signatures(db_session) == 0 and sheet.signed_version is None


def test_a_certificate_revoked_after_signing_shows_as_revoked_only_if_before(db_session, hospital, keys, sheet, vi):
    sig = signing.sign(db_session, hospital.actor(hospital.doctor), records.current(db_session, sheet), keys)
    cert = db_session.get(Certificate, sig.certificate_id)
    cert.revoked_at = sig.signed_at + timedelta(hours=1)  # revoked later: the signature stands (NĐ 23 Đ16)
    assert signing.verify(db_session, sig).status == "valid"
    cert.revoked_at = sig.signed_at - timedelta(hours=1)
    assert signing.verify(db_session, sig).status == "revoked"


def test_a_certificate_from_an_untrusted_ca_cannot_sign(db_session, hospital, keys, sheet, vi):
    rogue_ca = pki.create_ca(db_session, SYSTEM, keys, "Rogue CA", "Khác")
    rogue_ca.kind = "organisation"  # no longer a CA this facility trusts
    db_session.flush()
    for cert in db_session.scalars(select(Certificate).where(Certificate.user_id == hospital.doctor.id)):
        cert.revoked_at = utcnow()
    rogue = pki.issue(db_session, SYSTEM, keys, rogue_ca, common_name="Trần Văn Hùng", organisation="Khác",
                      user_id=hospital.doctor.id)
    with pytest.raises(RecordError) as err:
        signing.sign(db_session, hospital.actor(hospital.doctor), records.current(db_session, sheet), keys,
                     certificate=rogue)
    assert str(err.value) == "Chứng thư số của bạn không do CA mà cơ sở tin cậy cấp."


def test_openssl_verifies_an_exported_signature_and_one_changed_byte_fails(db_session, hospital, keys, sheet,
                                                                           tmp_path, vi):
    from ehr import exchange

    sig = signing.sign(db_session, hospital.actor(hospital.doctor), records.current(db_session, sheet), keys)
    files, ca_pem = exchange.export_signatures(db_session, hospital.actor(hospital.doctor), sheet.record)
    [(name, content, der)] = files
    assert der == sig.cms
    (tmp_path / "doc.json").write_bytes(content)
    (tmp_path / "doc.p7s").write_bytes(der)
    (tmp_path / "ca.pem").write_text(ca_pem)

    def openssl(content_file: str) -> subprocess.CompletedProcess:
        return subprocess.run(["openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in", "doc.p7s",
                               "-content", content_file, "-CAfile", "ca.pem", "-purpose", "any", "-out", "/dev/null"],
                              cwd=tmp_path, capture_output=True, text=True, timeout=30)

    good = openssl("doc.json")
    assert good.returncode == 0 and "Verification successful" in good.stderr
    changed = bytearray(content)
    changed[len(changed) // 2] ^= 0x01
    (tmp_path / "bad.json").write_bytes(bytes(changed))
    bad = openssl("bad.json")
    assert bad.returncode != 0 and "content verify error" in bad.stderr.lower()


def test_a_time_stamp_from_the_tsa_is_kept_with_the_signature(db_session, hospital, keys, sheet, ca, vi):
    tsa_row = pki.issue(db_session, SYSTEM, keys, ca, common_name="Test TSA", organisation="BV", kind="tsa")
    with serving(pki.load(tsa_row), keys.private_key(db_session, tsa_row)) as url:
        sig = signing.sign(db_session, hospital.actor(hospital.doctor), records.current(db_session, sheet), keys,
                           stamper=tsa.HttpTimeStamper(url))
    assert sig.tsa_token and abs(sig.tsa_time - sig.signed_at) < timedelta(seconds=5)
    value = cms.signed_data(sig.cms)["signer_infos"][0]["signature"].native
    cas = pki.trusted_cas(db_session)
    assert tsa.check(sig.tsa_token, hashlib.sha256(value).digest(), cas) == "valid"
    assert tsa.check(sig.tsa_token, hashlib.sha256(b"another signature").digest(), cas) == "broken"
    assert signing.verify(db_session, sig).timestamp == "valid"


def test_an_unreachable_tsa_signs_nothing(db_session, hospital, keys, sheet, vi):
    from tests.browser import free_port

    with pytest.raises(tsa.TimeStampError):
        signing.sign(db_session, hospital.actor(hospital.doctor), records.current(db_session, sheet), keys,
                     stamper=tsa.HttpTimeStamper(f"http://127.0.0.1:{free_port()}/tsa", timeout=2))
    db_session.rollback()
    assert _signatures(db_session) == 0


def _backdated(der: bytes, key, when) -> bytes:
    """The same signature with a signing time the signer chose, re-signed with the signer's key (what
    someone holding a revoked certificate's key can make)."""
    from asn1crypto import cms as asn1_cms
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    info = asn1_cms.ContentInfo.load(der)
    signer = info["content"]["signer_infos"][0]
    attrs = signer["signed_attrs"]
    for attr in attrs:
        if attr["type"].native == "signing_time":
            attr["values"] = [asn1_cms.Time({"utc_time": when})]
    signer["signed_attrs"] = attrs
    signer["signature"] = key.sign(b"\x31" + signer["signed_attrs"].dump(force=True)[1:], padding.PKCS1v15(),
                                   hashes.SHA256())
    return info.dump(force=True)


def test_revocation_is_judged_at_the_server_time_not_a_backdated_signing_time(db_session, hospital, keys, sheet, ca,
                                                                              monkeypatch, vi):
    for old in db_session.scalars(select(Certificate).where(Certificate.user_id == hospital.doctor.id)):
        old.revoked_at = utcnow()
    cert = pki.issue(db_session, SYSTEM, keys, ca, common_name="Trần Văn Hùng", organisation="Bệnh viện Thử nghiệm",
                     user_id=hospital.doctor.id, not_before=utcnow() - timedelta(days=30))
    claimed = (utcnow() - timedelta(days=2)).replace(microsecond=0)
    real_sign = cms.sign
    monkeypatch.setattr(cms, "sign", lambda content, c, key: _backdated(real_sign(content, c, key), key, claimed))
    sig = signing.sign(db_session, hospital.actor(hospital.doctor), records.current(db_session, sheet), keys,
                       certificate=cert)
    assert cms.check(sig.cms, records.current(db_session, sheet).canonical,
                     pki.trusted_cas(db_session)).signing_time == claimed
    cert.revoked_at = sig.signed_at - timedelta(days=1)  # revoked after the claimed time, before the real one
    verdict = signing.verify(db_session, sig)
    assert (verdict.status, verdict.detail) == ("revoked", "the certificate was revoked before the signing time")


def test_each_stored_key_has_its_own_salt_and_production_needs_the_passphrase(db_session, keys, ca, tmp_path):
    from cryptography.exceptions import InvalidTag

    from core.config import ConfigError
    from ehr import keystore
    from ehr.models import SoftwareKey
    from tests.conftest import make_config

    sealed = db_session.scalars(select(SoftwareKey.encrypted_pkcs8)).all()
    assert len(sealed) == 4 and len({s[:keystore.SALT_BYTES] for s in sealed}) == 4
    assert keystore.SoftwareKeyStore(PASSPHRASE).private_key(db_session, ca).key_size == 2048  # a fresh process
    with pytest.raises(InvalidTag):
        keystore.SoftwareKeyStore("another-passphrase-0123").private_key(db_session, ca)
    production = make_config(tmp_path, env="production")
    with pytest.raises(ConfigError) as err:
        keystore.from_config(production)
    assert str(err.value) == "VNHIS_EHR_KEY_PASSPHRASE must be set in production (the signing keys' passphrase)"
    assert isinstance(keystore.from_config(make_config(tmp_path)), keystore.SoftwareKeyStore)  # outside production
