"""Settings read from the environment, checked once at start-up.

Every problem is raised as ConfigError with one line that an operator can act on; the CLI
prints it and exits non-zero. Passwords inside URLs are never echoed.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

ENVIRONMENTS = ("production", "development", "test")
DEFAULT_MODULES = ("his", "ehr", "lis", "pacs", "billing")
# Values that appear in documentation; a production server must never run with them.
PLACEHOLDER_SECRETS = {"change-me", "changeme", "secret", "dev", "development", "please-change-me"}
MIN_SECRET_LENGTH = 32


class ConfigError(Exception):
    """A setting is missing or wrong; the message is one line for the operator."""


def safe_url(url: str) -> str:
    """The URL as it can be printed: password masked."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return "<invalid URL>"


@dataclass(frozen=True)
class Config:
    env: str
    database_url: str
    redis_url: str | None
    storage_dir: Path
    secret_key: str
    timezone: str
    modules: tuple[str, ...] = DEFAULT_MODULES
    session_idle_minutes: int = 30
    session_max_hours: int = 12
    proxy_hops: int = 0  # reverse proxies in front whose X-Forwarded-For/-Proto are trusted
    extra: dict = field(default_factory=dict)  # the VNHIS_* environment, for the modules' own settings

    def setting(self, name: str, default: str | None = None) -> str | None:
        """A module's own setting (e.g. VNHIS_BHYT_GATEWAY_URL); the module checks its value."""
        value = self.extra.get(name)
        return default if value in (None, "") else value

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


def _int(environ, name: str, default: int, low: int, high: int) -> int:
    raw = environ.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low} and {high}, got {value}")
    return value


def _var_dir(environ) -> Path:
    return Path(environ.get("VNHIS_VAR_DIR") or Path.cwd() / "var")


def _secret_key(environ, env: str) -> str:
    key = environ.get("VNHIS_SECRET_KEY", "")
    if env == "production":
        if not key:
            raise ConfigError("VNHIS_SECRET_KEY is not set; generate one with: python3 -c "
                              "'import secrets; print(secrets.token_urlsafe(48))'")
        if key.lower() in PLACEHOLDER_SECRETS or len(key) < MIN_SECRET_LENGTH:
            raise ConfigError(f"VNHIS_SECRET_KEY is a default or too short (need {MIN_SECRET_LENGTH}+ "
                              "random characters)")
        return key
    if key:
        return key
    # Development and demo: a random key kept under var/ so sessions survive a restart.
    path = _var_dir(environ) / "secret_key"
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    path.write_text(key)
    path.chmod(0o600)
    return key


def load(environ=None) -> Config:
    environ = os.environ if environ is None else environ
    env = environ.get("VNHIS_ENV", "production")
    if env not in ENVIRONMENTS:
        raise ConfigError(f"VNHIS_ENV must be one of {', '.join(ENVIRONMENTS)}, got {env!r}")

    var_dir = _var_dir(environ)
    database_url = environ.get("VNHIS_DATABASE_URL") or f"sqlite:///{var_dir / 'vnhis.db'}"
    try:
        backend = make_url(database_url).get_backend_name()
    except (ArgumentError, ValueError):
        raise ConfigError("VNHIS_DATABASE_URL is not a database URL (expected e.g. "
                          "postgresql+psycopg://user:password@host/vnhis)") from None
    if backend not in ("postgresql", "sqlite"):
        raise ConfigError(f"VNHIS_DATABASE_URL uses {backend!r}; vnhis supports postgresql and sqlite")
    if backend == "postgresql" and make_url(database_url).drivername == "postgresql":
        # psycopg 3 is the driver we ship; plain postgresql:// would ask for psycopg2.
        database_url = make_url(database_url).set(drivername="postgresql+psycopg").render_as_string(
            hide_password=False)

    redis_url = environ.get("VNHIS_REDIS_URL") or None
    if redis_url and not redis_url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError("VNHIS_REDIS_URL must start with redis://, rediss:// or unix://")

    timezone = environ.get("VNHIS_TIMEZONE") or "Asia/Ho_Chi_Minh"
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"VNHIS_TIMEZONE {timezone!r} is not a known time zone") from None

    modules = tuple(m.strip() for m in (environ.get("VNHIS_MODULES") or ",".join(DEFAULT_MODULES)).split(",")
                    if m.strip())
    unknown = set(modules) - set(DEFAULT_MODULES)
    if unknown:
        raise ConfigError(f"VNHIS_MODULES names unknown modules: {', '.join(sorted(unknown))}")

    return Config(
        env=env,
        database_url=database_url,
        redis_url=redis_url,
        storage_dir=Path(environ.get("VNHIS_STORAGE_DIR") or var_dir / "storage"),
        secret_key=_secret_key(environ, env),
        timezone=timezone,
        modules=modules,
        session_idle_minutes=_int(environ, "VNHIS_SESSION_IDLE_MINUTES", 30, 1, 24 * 60),
        session_max_hours=_int(environ, "VNHIS_SESSION_MAX_HOURS", 12, 1, 72),
        proxy_hops=_int(environ, "VNHIS_PROXY_HOPS", 0, 0, 5),
        extra={k: v for k, v in environ.items() if k.startswith("VNHIS_")},
    )
