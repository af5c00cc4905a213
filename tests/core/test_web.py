"""The web shell over a real PostgreSQL session: login, CSRF, permissions, errors, health, API."""

from datetime import timedelta

from sqlalchemy import select

from core.db import utcnow
from core.models import AuditEvent, UserSession
from tests.conftest import PASSWORD, csrf_token, login


def _last_event(db_session, action):
    return db_session.scalar(select(AuditEvent).where(AuditEvent.action == action)
                             .order_by(AuditEvent.seq.desc()).limit(1))


def test_login_page_is_vietnamese(client):
    html = client.get("/login").get_data(as_text=True)
    assert "Đăng nhập" in html and "Tên đăng nhập" in html and "Mật khẩu" in html


def test_pages_need_a_login(client):
    response = client.get("/admin/users")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login?next=/admin/users")


def test_login_dashboard_logout(client, make_user, db_session):
    make_user("bacsi.hung", "doctor")
    response = login(client, "bacsi.hung")
    assert response.status_code == 302 and response.headers["Location"] == "/"
    html = client.get("/").get_data(as_text=True)
    assert "Trang chính" in html and "Bác sĩ" in html and "Đăng xuất" in html
    assert "Nhật ký truy cập" not in html  # a doctor is not offered the audit log
    sid = db_session.scalar(select(UserSession.id).where(UserSession.ended_at.is_(None))
                            .order_by(UserSession.created_at.desc()).limit(1))
    response = client.post("/logout", data={"csrf_token": csrf_token(client, "/")})
    assert response.status_code == 302
    assert db_session.get(UserSession, sid, populate_existing=True).end_reason == "logout"
    assert client.get("/").status_code == 302


def test_wrong_password_shows_vietnamese_error_and_is_audited(client, make_user, db_session):
    user = make_user("tiepdon.hoa", "receptionist")
    response = login(client, "tiepdon.hoa", "sai-mat-khau")
    assert response.status_code == 401
    assert "Sai tên đăng nhập hoặc mật khẩu." in response.get_data(as_text=True)
    event = _last_event(db_session, "auth.login_failed")
    assert event.target_id == str(user.id) and event.detail["reason"] == "wrong_password"


def test_locked_account_message(client, make_user, db_session):
    user = make_user("khoa.tam", "nurse")
    user.failed_logins, user.locked_until = 5, utcnow() + timedelta(minutes=10)
    db_session.commit()
    html = login(client, "khoa.tam").get_data(as_text=True)
    assert "Tài khoản tạm khóa" in html and "10 phút" in html


def test_missing_csrf_token_is_refused_and_audited(client, make_user, db_session):
    make_user("bacsi.csrf", "doctor")
    response = client.post("/login", data={"username": "bacsi.csrf", "password": PASSWORD})
    assert response.status_code == 400
    assert "mã bảo mật" in response.get_data(as_text=True)
    assert _last_event(db_session, "security.csrf_failed").detail["path"] == "/login"
    assert _last_event(db_session, "auth.login") is None


def test_permission_denied_is_vietnamese_and_audited(client, make_user, db_session):
    make_user("thungan.b", "cashier")
    login(client, "thungan.b")
    response = client.get("/admin/audit")
    assert response.status_code == 403
    assert "Không có quyền" in response.get_data(as_text=True)
    event = _last_event(db_session, "permission.denied")
    assert event.actor_name == "thungan.b" and event.detail["permission"] == "admin.audit"


def test_expired_session_asks_to_log_in_again(client, make_user, db_session):
    make_user("dieuduong.c", "nurse")
    login(client, "dieuduong.c")
    record = db_session.scalar(select(UserSession).order_by(UserSession.created_at.desc()).limit(1))
    record.last_seen_at = utcnow() - timedelta(hours=2)
    db_session.commit()
    response = client.get("/", follow_redirects=True)
    assert "Phiên làm việc đã hết hạn" in response.get_data(as_text=True)
    assert _last_event(db_session, "auth.session_expired") is not None


def test_admin_screens(client, make_user, db_session):
    make_user("quantri", "admin")
    login(client, "quantri")
    for path, text in [("/admin/users", "Người dùng"), ("/admin/roles", "Vai trò"),
                       ("/admin/audit", "Nhật ký truy cập"), ("/admin/jobs", "Tác vụ nền")]:
        response = client.get(path)
        assert response.status_code == 200, path
        assert text in response.get_data(as_text=True), path
    # Filtering the audit log by action prefix
    html = client.get("/admin/audit?action=auth.").get_data(as_text=True)
    assert "auth.login" in html and "permission.denied" not in html


def test_admin_creates_user_with_precise_errors(client, make_user, db_session):
    make_user("quantri2", "admin")
    login(client, "quantri2")
    token = csrf_token(client, "/admin/users/new")
    response = client.post("/admin/users/new", data={"username": "X Y", "full_name": "", "password": "123",
                                                     "csrf_token": token})
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    assert "Trường bắt buộc" in html and "Ít nhất 10 ký tự" in html and "Chọn ít nhất một vai trò" in html
    response = client.post("/admin/users/new", data={"username": "dd.mai", "full_name": "Mai", "roles": ["nurse"],
                                                     "csrf_token": token})
    assert response.status_code == 422 and 'id="error-password"' in response.get_data(as_text=True)
    response = client.post("/admin/users/new", data={"username": "ktv.xn", "full_name": "Phạm Tuấn",
                                                     "password": PASSWORD, "roles": ["lab_technician"],
                                                     "csrf_token": token})
    assert response.status_code == 302
    assert _last_event(db_session, "user.create").detail["username"] == "ktv.xn"


def test_english_is_available(client, make_user):
    client.get("/lang/en")
    assert "Log in" in client.get("/login").get_data(as_text=True)


def test_healthz(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json == {"status": "ok", "database": {"ok": True}, "redis": {"configured": False, "ok": None}}


def test_healthz_503_when_database_is_down(tmp_path):
    from core.app import create_app
    from tests.conftest import make_config

    app = create_app(make_config(tmp_path, database_url="postgresql+psycopg://postgres@127.0.0.1:1/none"),
                     check_database=False)
    response = app.test_client().get("/healthz")
    assert response.status_code == 503 and response.json["database"]["ok"] is False


def test_healthz_reports_redis_down(tmp_path, session_factory):
    from core.app import create_app
    from tests.conftest import make_config

    app = create_app(make_config(tmp_path, redis_url="redis://127.0.0.1:1/0"), session_factory=session_factory)
    body = app.test_client().get("/healthz").json
    assert body["status"] == "degraded" and body["redis"]["ok"] is False


def test_api_with_token_and_openapi(client, make_user, db_session):
    from core import auth
    from core.audit import Actor

    machine = make_user("orthanc-bridge", "integration", machine=True)
    token, _ = auth.create_token(db_session, Actor.system("test"), machine, "bridge")
    db_session.commit()
    assert client.get("/api/v1/me").status_code == 401
    me = client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200 and me.json["username"] == "orthanc-bridge"
    assert "lis.result.enter" in me.json["permissions"] and "admin.audit" not in me.json["permissions"]
    denied = client.get("/api/v1/audit/events", headers={"Authorization": f"Bearer {token}"})
    assert denied.status_code == 403 and denied.json["error"]["code"] == 403
    spec = client.get("/api/v1/openapi.json").json
    assert spec["openapi"].startswith("3.") and "/audit/events" in spec["paths"]
    assert "swagger-ui" in client.get("/api/v1/docs").get_data(as_text=True)
    assert client.get("/api/v1/docs/assets/swagger-ui-bundle.js").status_code == 200


def test_api_audit_search_for_admin(client, make_user):
    make_user("quantri3", "admin")
    login(client, "quantri3")
    body = client.get("/api/v1/audit/events?action=auth.login").json
    assert body["total"] >= 1 and body["items"][0]["action"] == "auth.login"


def test_a_nul_byte_in_the_username_is_a_wrong_login_not_a_crash(client):
    response = client.post("/login", data={"username": "admin\x00", "password": "x" * 12,
                                           "csrf_token": csrf_token(client)})
    assert response.status_code == 401
    assert "Sai tên đăng nhập hoặc mật khẩu." in response.get_data(as_text=True)


def test_the_language_chosen_before_login_is_kept(client, make_user):
    make_user("bacsi.en", "doctor")
    client.get("/lang/en")
    login(client, "bacsi.en")
    assert "Home" in client.get("/").get_data(as_text=True)


def test_a_bad_api_token_is_refused_and_audited(client, db_session):
    response = client.get("/api/v1/me", headers={"Authorization": "Bearer vnhis_forged-token-value"})
    assert response.status_code == 401
    event = _last_event(db_session, "auth.token_failed")
    assert event.detail == {"prefix": "vnhis_forged", "path": "/api/v1/me"}


def test_an_unusable_storage_directory_is_one_clear_line(tmp_path, session_factory):
    import pytest

    from core.app import create_app
    from core.config import ConfigError
    from tests.conftest import make_config

    (tmp_path / "a-file").write_text("")
    with pytest.raises(ConfigError, match="VNHIS_STORAGE_DIR .* cannot be created"):
        create_app(make_config(tmp_path, storage_dir=tmp_path / "a-file" / "storage"), session_factory=session_factory)


def test_the_audit_log_shows_details_in_readable_vietnamese(client, make_user, db_session):
    from core import audit
    from core.audit import Actor

    audit.record(db_session, Actor.system("test"), "test.detail", None,
                 {"code": "CDHA.XQN×1.000", "name": "Kiểm tra <b>"})
    db_session.commit()
    make_user("quantri3", "admin")
    login(client, "quantri3")
    html = client.get("/admin/audit?action=test.detail").get_data(as_text=True)
    assert "{&#34;code&#34;: &#34;CDHA.XQN×1.000&#34;, &#34;name&#34;: &#34;Kiểm tra &lt;b&gt;&#34;}" in html
    assert "\\u" not in html


def test_every_page_links_an_icon_that_is_served(client):
    page = client.get("/login").get_data(as_text=True)
    assert '<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">' in page
    icon = client.get("/static/favicon.svg")
    assert icon.status_code == 200 and icon.mimetype == "image/svg+xml" and b"<svg" in icon.get_data()
