"""Users, argon2 passwords, throttling and locking, sessions, API tokens."""

from datetime import timedelta

import pytest
from sqlalchemy import select

from core import auth
from core.audit import Actor
from core.db import utcnow
from core.models import AuditEvent, User
from tests.conftest import PASSWORD

ADMIN = Actor.system("test-admin")


def _events(session, action):
    session.commit()
    return session.scalars(select(AuditEvent).where(AuditEvent.action == action)
                           .order_by(AuditEvent.seq)).all()


def test_password_is_argon2_hashed(make_user):
    user = make_user("bacsi.an", "doctor")
    assert user.password_hash.startswith("$argon2id$")
    assert PASSWORD not in user.password_hash


@pytest.mark.parametrize(("kwargs", "code"), [
    ({"username": "A B"}, "bad_username"),
    ({"username": "ab"}, "bad_username"),
    ({"password": "short"}, "password_too_short"),
    ({"password": None}, "password_required"),
    ({"roles": ["doctor", "surgeon"]}, "unknown_role"),
    ({"full_name": "  "}, "full_name_required"),
])
def test_create_user_rejects_bad_input(db_session, kwargs, code):
    values = {"username": "dieuduong.lan", "full_name": "Lê Thị Lan", "password": PASSWORD, "roles": ["nurse"]}
    values.update(kwargs)
    before = db_session.scalars(select(User.id)).all()
    with pytest.raises(auth.UserError) as info:
        auth.create_user(db_session, ADMIN, **values)
    assert info.value.code == code
    assert db_session.scalars(select(User.id)).all() == before


def test_duplicate_username(make_user, db_session):
    make_user("thungan1", "cashier")
    with pytest.raises(auth.UserError) as info:
        auth.create_user(db_session, ADMIN, username="THUNGAN1", full_name="X", password=PASSWORD,
                         roles=["cashier"])
    assert info.value.code == "username_taken"


def test_successful_login_is_audited_and_resets_failures(make_user, db_session):
    user = make_user("bacsi.binh", "doctor")
    assert auth.authenticate(db_session, "bacsi.binh", "wrong-password", "1.2.3.4").error == "invalid"
    result = auth.authenticate(db_session, " Bacsi.Binh ", PASSWORD, "1.2.3.4")
    assert result.user is user and user.failed_logins == 0 and user.last_login_at is not None
    assert _events(db_session, "auth.login")[-1].target_id == str(user.id)


def test_unknown_user_and_machine_account_fail_alike(make_user, db_session):
    make_user("may-xn-1", "integration", machine=True)
    assert auth.authenticate(db_session, "nobody", PASSWORD, None).error == "invalid"
    assert auth.authenticate(db_session, "may-xn-1", "", None).error == "invalid"
    reasons = [e.detail["reason"] for e in _events(db_session, "auth.login_failed")[-2:]]
    assert reasons == ["unknown_user", "machine_account"]


def test_failures_are_throttled_then_locked(make_user, db_session):
    user = make_user("tiepdon.a", "receptionist")
    now = utcnow()
    for n in range(auth.THROTTLE_AFTER):
        assert auth.authenticate(db_session, user.username, "bad", None, now=now + timedelta(minutes=n)).error \
            == "invalid"
    # Right after the third failure even the right password must wait.
    soon = now + timedelta(minutes=auth.THROTTLE_AFTER - 1, seconds=1)
    throttled = auth.authenticate(db_session, user.username, PASSWORD, None, now=soon)
    assert throttled.error == "throttled" and throttled.wait_seconds > 0
    later = soon + timedelta(minutes=1)
    assert auth.authenticate(db_session, user.username, "bad", None, now=later).error == "invalid"
    locked = auth.authenticate(db_session, user.username, "bad", None, now=later + timedelta(minutes=1))
    assert locked.error == "locked" and user.failed_logins == auth.LOCK_AFTER
    # While locked the right password is refused too; after the lock it works.
    assert auth.authenticate(db_session, user.username, PASSWORD, None,
                             now=later + timedelta(minutes=5)).error == "locked"
    ok = auth.authenticate(db_session, user.username, PASSWORD, None,
                           now=later + timedelta(minutes=auth.LOCK_MINUTES + 2))
    assert ok.user is user
    assert {e.detail.get("reason") for e in _events(db_session, "auth.login_refused")} >= {"throttled", "locked"}


def test_inactive_user_cannot_log_in(make_user, db_session):
    user = make_user("nghiviec", "nurse")
    user.is_active = False
    assert auth.authenticate(db_session, "nghiviec", PASSWORD, None).error == "inactive"


def test_session_expires_when_idle(make_user, db_session):
    user = make_user("dieuduong.b", "nurse")
    record = auth.start_session(db_session, user, "1.1.1.1", "pytest")
    assert auth.check_session(db_session, record.id, 30, 12)[0] is record
    later = utcnow() + timedelta(minutes=31)
    assert auth.check_session(db_session, record.id, 30, 12, now=later) == (None, "expired")
    assert record.end_reason == "expired"
    assert auth.check_session(db_session, record.id, 30, 12) == (None, "ended")
    assert auth.check_session(db_session, "forged", 30, 12) == (None, "unknown")


def test_api_tokens(make_user, db_session):
    machine = make_user("cobas-6000", "integration", machine=True)
    token, record = auth.create_token(db_session, ADMIN, machine, "Cobas 6000")
    assert token.startswith("vnhis_") and token not in record.token_hash
    assert auth.authenticate_token(db_session, token) is machine
    assert auth.authenticate_token(db_session, token + "x") is None
    auth.revoke_token(db_session, ADMIN, record)
    assert auth.authenticate_token(db_session, token) is None


def test_parallel_guesses_cannot_dodge_the_throttle(committed_db_url):
    import threading

    from core.db import make_engine, make_session_factory

    engine = make_engine(committed_db_url, pool_size=10)
    factory = make_session_factory(engine)
    with factory() as session:
        auth.create_user(session, ADMIN, username="tiepdon.song", full_name="Song", password=PASSWORD,
                         roles=["receptionist"])
        session.commit()
    outcomes, lock = [], threading.Lock()

    def guess():
        with factory() as session:
            result = auth.authenticate(session, "tiepdon.song", "doan-bua", "10.0.0.9")
            session.commit()
        with lock:
            outcomes.append(result.error)

    threads = [threading.Thread(target=guess) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with factory() as session:
        user = session.scalar(select(User).where(User.username == "tiepdon.song"))
        assert user.failed_logins == auth.THROTTLE_AFTER
    assert sorted(outcomes) == ["invalid"] * auth.THROTTLE_AFTER + ["throttled"] * (8 - auth.THROTTLE_AFTER)
    engine.dispose()


@pytest.mark.parametrize("username", ["bac\x00si", "x" * 5000, "tên có dấu"])
def test_a_malformed_username_fails_like_an_unknown_one(db_session, username):
    result = auth.authenticate(db_session, username, PASSWORD, None)
    assert result.error == "invalid"
    event = _events(db_session, "auth.login_failed")[-1]
    assert event.detail["reason"] == "malformed_username" and len(event.detail["username"]) <= 80
