"""A person at a browser: headless Debian Chromium against the real server (`vnhis serve`) on PostgreSQL."""

from pathlib import Path

import pytest
from sqlalchemy import select

from core.db import make_engine, make_session_factory
from core.models import AuditEvent
from tests.browser import server_env, serving, vnhis

pytestmark = pytest.mark.browser

PASSWORD = "mat-khau-bac-si-lan"


@pytest.fixture
def server(committed_db_url, tmp_path):
    """`vnhis serve` on PostgreSQL with one doctor, created the way an operator would."""
    env = server_env(tmp_path, VNHIS_ENV="development", VNHIS_DATABASE_URL=committed_db_url, VNHIS_SECRET_KEY="b" * 48)
    created = vnhis(env, "admin", "create-user", "bacsi.lan", "--full-name", "Trần Thị Lan", "--role", "doctor",
                    "--password-stdin", stdin=PASSWORD + "\n")
    assert created.returncode == 0, created.stderr
    yield from serving("serve", env)


@pytest.fixture
def demo_server(tmp_path):
    """The README's demo: embedded SQLite under a fresh var/, in-process jobs, seeded accounts."""
    yield from serving("demo", server_env(tmp_path))


def test_log_in_see_the_dashboard_and_log_out(server, page, committed_db_url):
    page.goto(f"{server}/")
    assert page.url.startswith(f"{server}/login")
    assert page.locator("h1").inner_text() == "Đăng nhập"

    # A wrong password: the Vietnamese error, and an audit event.
    page.fill("#username", "bacsi.lan")
    page.fill("#password", "khong-dung")
    page.click("#login-submit")
    assert page.locator("#login-error").inner_text() == "Sai tên đăng nhập hoặc mật khẩu."
    engine = make_engine(committed_db_url)
    with make_session_factory(engine)() as session:
        event = session.scalar(select(AuditEvent).where(AuditEvent.action == "auth.login_failed")
                               .order_by(AuditEvent.seq.desc()).limit(1))
        assert event.actor_name == "bacsi.lan" and event.detail["reason"] == "wrong_password"
        assert event.ip == "127.0.0.1"
    engine.dispose()

    page.fill("#password", PASSWORD)
    page.click("#login-submit")
    page.wait_for_url(f"{server}/")
    assert page.locator("h1").inner_text() == "Trang chính"
    body = page.locator("main").inner_text()
    assert "Trần Thị Lan" in body and "Bác sĩ" in body
    assert page.locator("nav.mainnav").get_by_text("Nhật ký truy cập").count() == 0  # not a doctor's screen

    page.click("#logout")
    page.wait_for_url(f"{server}/login")
    assert "Bạn đã đăng xuất" in page.locator("main").inner_text()
    page.goto(f"{server}/")
    assert page.url.startswith(f"{server}/login")


def test_the_demo_admin_from_the_readme_logs_in(demo_server, page):
    from core.demo import ADMIN_USER, DEMO_PASSWORD

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert f"**`{ADMIN_USER}`** with password\n**`{DEMO_PASSWORD}`**" in readme
    page.goto(f"{demo_server}/login")
    page.fill("#username", ADMIN_USER)
    page.fill("#password", DEMO_PASSWORD)
    page.click("#login-submit")
    page.wait_for_url(f"{demo_server}/")
    assert page.locator("h1").inner_text() == "Trang chính"
    page.locator("nav.mainnav").get_by_text("Nhật ký truy cập").click()
    page.wait_for_url(f"{demo_server}/admin/audit")
    assert "auth.login" in page.locator("table.grid").inner_text()
