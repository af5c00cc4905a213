"""`vnhis claims export` and `vnhis claims validate` as an operator runs them, on PostgreSQL."""

import subprocess
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import close_all_sessions

from billing import claims
from billing.models import Claim
from core.db import make_engine, make_session_factory
from tests.billing.conftest import SYSTEM, claimable_visit, today_local
from tests.browser import server_env, vnhis
from tests.his.conftest import make_clinic


def test_export_validate_and_verify(committed_db_url, tmp_path):
    engine = make_engine(committed_db_url)
    with make_session_factory(engine)() as session:
        key = claimable_visit(session, make_clinic(session))["encounter"].code
        session.commit()
    env = server_env(tmp_path, VNHIS_ENV="development", VNHIS_DATABASE_URL=committed_db_url,
                     VNHIS_BILLING_FACILITY_CODE="79001", VNHIS_BILLING_HEAD_ID="7900012345")
    day = today_local()
    span = ["--from", (day - timedelta(days=1)).isoformat(), "--to", (day + timedelta(days=1)).isoformat()]
    out = tmp_path / "out"
    first = vnhis(env, "claims", "export", *span, "--format", "qd130", "--out", str(out))
    assert first.returncode == 1, first.stderr
    assert f"{key} · XML1 · STT 1 · CAN_NANG: trường bắt buộc đang trống" in first.stderr
    assert "1 claim(s) written" in first.stdout

    with make_session_factory(engine)() as session:
        claims.set_supplement(session, SYSTEM, session.scalar(select(Claim)), weight_kg="61.2")
        session.commit()
    second = vnhis(env, "claims", "export", *span, "--out", str(out))
    assert second.returncode == 0, second.stderr
    files = sorted(p.name for p in out.glob("*.xml"))
    assert files == [f"{key}_qd130_v1.xml", f"{key}_qd130_v2.xml"]
    checked = vnhis(env, "claims", "validate", str(out / f"{key}_qd130_v2.xml"))
    assert (checked.returncode, checked.stdout.strip()) == (0, f"{key}_qd130_v2.xml: qd130, 0 problem(s)")
    old = vnhis(env, "claims", "validate", str(out / f"{key}_qd130_v1.xml"))
    assert old.returncode == 1 and "CAN_NANG" in old.stderr
    cert = tmp_path / "var" / "storage" / "billing" / "signing-cert.pem"
    verify = subprocess.run(["xmlsec1", "--verify", "--pubkey-cert-pem", str(cert), str(out / f"{key}_qd130_v2.xml")],
                            capture_output=True, text=True)
    assert verify.returncode == 0, verify.stderr

    legacy = vnhis(env, "claims", "export", *span, "--format", "4210", "--out", str(tmp_path / "old"))
    assert legacy.returncode == 0, legacy.stderr
    (path,) = (tmp_path / "old").glob("*.xml")
    assert vnhis(env, "claims", "validate", str(path)).stdout.strip().endswith(": 4210, 0 problem(s)")
    broken = tmp_path / "broken.xml"
    broken.write_bytes(b"<GIAMDINHHS><oops></GIAMDINHHS>")
    unreadable = vnhis(env, "claims", "validate", str(broken))
    assert unreadable.returncode == 2 and "không đọc được tệp" in unreadable.stderr
    close_all_sessions()
    engine.dispose()
