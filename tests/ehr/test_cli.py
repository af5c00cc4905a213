"""`vnhis ehr export / verify / import` as an operator runs them, against a real committed database;
the exported CMS files verify with the openssl command line, and one changed byte fails both checks."""

import base64
import json
import subprocess
from datetime import date

import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import close_all_sessions

from core.db import make_engine, make_session_factory
from ehr import records, signing
from ehr.keystore import SoftwareKeyStore
from ehr.models import Certificate
from his import encounters
from his.models.patients import Patient
from tests.browser import server_env, vnhis
from tests.ehr.conftest import PASSPHRASE, SYSTEM, TREATMENT, make_certificates, make_hospital


@pytest.fixture
def signed(committed_db_url, tmp_path):
    engine = make_engine(committed_db_url)
    with make_session_factory(engine)() as session:
        hospital = make_hospital(session)
        keys = SoftwareKeyStore(PASSPHRASE)
        make_certificates(session, keys, hospital)
        actor = hospital.actor(hospital.doctor)
        record = records.open_record(session, actor, hospital.encounter)
        doc = records.add_document(session, actor, record, "36/BV2", TREATMENT, on=date.today())
        signing.sign(session, actor, records.current(session, doc), keys)
        session.commit()
        record_id = record.id
    close_all_sessions()
    engine.dispose()
    env = server_env(tmp_path, VNHIS_ENV="development", VNHIS_DATABASE_URL=committed_db_url,
                     VNHIS_SECRET_KEY="e" * 48, VNHIS_MODULES="his,ehr", VNHIS_EHR_KEY_PASSPHRASE=PASSPHRASE)
    return env, record_id


def test_export_then_verify_and_a_tampered_bundle_names_the_failing_signature(signed, tmp_path):
    env, record_id = signed
    out = tmp_path / "hsba.fhir.json"
    done = vnhis(env, "ehr", "export", "--record", str(record_id), "--format", "fhir", "--out", str(out))
    assert done.returncode == 0, done.stderr
    ok = vnhis(env, "ehr", "verify", str(out))
    assert ok.returncode == 0 and ok.stdout.splitlines()[-1] == "1 signature(s), 0 failed"
    assert ok.stdout.startswith("OK   document ")
    data = json.loads(out.read_bytes())
    ref = next(e["resource"] for e in data["entry"] if e["resource"]["resourceType"] == "DocumentReference")
    attachment = ref["content"][0]["attachment"]
    attachment["data"] = base64.b64encode(base64.b64decode(attachment["data"]).replace(b"88", b"89")).decode()
    out.write_text(json.dumps(data))
    bad = vnhis(env, "ehr", "verify", str(out))
    assert bad.returncode == 1 and bad.stdout.splitlines()[-1] == "1 signature(s), 1 failed"
    assert "FAIL document" in bad.stdout and "broken: the content does not match the signature" in bad.stdout


def test_exported_cms_files_verify_with_openssl(signed, tmp_path):
    env, record_id = signed
    out = tmp_path / "cms"
    done = vnhis(env, "ehr", "export", "--record", str(record_id), "--format", "cms", "--out", str(out))
    assert done.returncode == 0, done.stderr
    [p7s] = out.glob("*.p7s")
    content = p7s.with_suffix(".json")
    command = ["openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in", str(p7s), "-content", str(content),
               "-CAfile", str(out / "ca.pem"), "-purpose", "any", "-out", "/dev/null"]
    good = subprocess.run(command, capture_output=True, text=True, timeout=30)
    assert good.returncode == 0 and "Verification successful" in good.stderr
    data = bytearray(content.read_bytes())
    data[10] ^= 0x20
    content.write_bytes(bytes(data))
    bad = subprocess.run(command, capture_output=True, text=True, timeout=30)
    assert bad.returncode != 0 and "content verify error" in bad.stderr.lower()


def test_other_formats_and_an_unknown_record(signed, tmp_path):
    env, record_id = signed
    for fmt, start in (("xml", b"<?xml"), ("pdf", b"%PDF-")):
        out = tmp_path / f"hsba.{fmt}"
        done = vnhis(env, "ehr", "export", "--record", str(record_id), "--format", fmt, "--out", str(out))
        assert done.returncode == 0, done.stderr
        assert out.read_bytes().startswith(start)
    missing = vnhis(env, "ehr", "export", "--record", "999999", "--format", "xml", "--out", str(tmp_path / "x"))
    assert missing.returncode == 2 and missing.stderr.strip() == "vnhis: no medical record 999999"


def test_check_reverifies_the_whole_database_and_finds_a_rewritten_version(signed, committed_db_url):
    env, _record_id = signed
    ok = vnhis(env, "ehr", "check")
    assert ok.returncode == 0 and ok.stdout.strip() == "1 version(s), 1 signature(s), 0 failed"
    engine = make_engine(committed_db_url)
    with engine.begin() as conn:  # what only a database superuser could do, bypassing the trigger
        conn.execute(text("ALTER TABLE ehr_versions DISABLE TRIGGER ehr_versions_no_update"))
        conn.exec_driver_sql("UPDATE ehr_versions SET canonical = convert_to(replace(convert_from(canonical, 'UTF8'), "
                             "'\"pulse\":88', '\"pulse\":99'), 'UTF8')")
        conn.execute(text("ALTER TABLE ehr_versions ENABLE TRIGGER ehr_versions_no_update"))
    engine.dispose()
    bad = vnhis(env, "ehr", "check")
    assert bad.returncode == 1 and bad.stdout.splitlines()[-1] == "1 version(s), 1 signature(s), 2 failed"
    assert "content does not match its hash" in bad.stdout and "Trần Văn Hùng): broken" in bad.stdout


def test_import_a_transferred_record_from_the_command_line(signed, committed_db_url, tmp_path):
    env, record_id = signed
    engine = make_engine(committed_db_url)
    with make_session_factory(engine)() as session:
        patient = session.scalars(select(Patient)).one()
        arrival = encounters.open_encounter(session, SYSTEM, patient, kind="outpatient", day=date.today())
        (tmp_path / "sender-ca.pem").write_text(session.scalars(select(Certificate.pem)
                                                                .where(Certificate.kind == "ca")).one())
        session.commit()
        arrival_id = arrival.id
    close_all_sessions()
    engine.dispose()
    bundle = tmp_path / "transfer.fhir.json"
    exported = vnhis(env, "ehr", "export", "--record", str(record_id), "--format", "fhir", "--out", str(bundle))
    assert exported.returncode == 0, exported.stderr
    done = vnhis(env, "ehr", "import", str(bundle), "--encounter", str(arrival_id),
                 "--ca", str(tmp_path / "sender-ca.pem"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("imported as record ")
    check = vnhis(env, "ehr", "check")
    assert check.stdout.strip() == "2 version(s), 2 signature(s), 0 failed"


def test_a_restored_backup_still_verifies_every_record_signature(signed, empty_database, tmp_path):
    env, _record_id = signed
    done = vnhis(env, "backup", "--out", str(tmp_path / "bk"))
    assert done.returncode == 0, done.stderr
    restored = vnhis({**env, "VNHIS_DATABASE_URL": empty_database, "VNHIS_STORAGE_DIR": str(tmp_path / "store2")},
                     "restore", str(tmp_path / "bk"))
    assert restored.returncode == 0, restored.stderr
    assert "ok    ehr: 1 record version(s) and 1 signature(s) verified" in restored.stdout
    assert "ok    audit chain intact" in restored.stdout
