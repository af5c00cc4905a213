"""Configuration: defaults, and one clear line for every bad value."""

import pytest

from core.config import ConfigError, load

GOOD_KEY = "k" * 48


def test_embedded_defaults(tmp_path):
    cfg = load({"VNHIS_ENV": "development", "VNHIS_VAR_DIR": str(tmp_path)})
    assert cfg.database_url == f"sqlite:///{tmp_path / 'vnhis.db'}"
    assert cfg.redis_url is None
    assert cfg.timezone == "Asia/Ho_Chi_Minh"
    assert cfg.storage_dir == tmp_path / "storage"
    # a random key is generated once and kept
    assert len(cfg.secret_key) >= 32
    assert load({"VNHIS_ENV": "development", "VNHIS_VAR_DIR": str(tmp_path)}).secret_key == cfg.secret_key


def test_production_reads_everything(tmp_path):
    cfg = load({"VNHIS_SECRET_KEY": GOOD_KEY, "VNHIS_DATABASE_URL": "postgresql://u:p@db/vnhis",
                "VNHIS_REDIS_URL": "redis://cache:6379/0", "VNHIS_STORAGE_DIR": str(tmp_path),
                "VNHIS_TIMEZONE": "UTC"})
    assert cfg.is_production
    assert cfg.database_url == "postgresql+psycopg://u:p@db/vnhis"
    assert cfg.redis_url == "redis://cache:6379/0"
    assert cfg.storage_dir == tmp_path and cfg.timezone == "UTC"


@pytest.mark.parametrize(("environ", "message"), [
    ({}, "VNHIS_SECRET_KEY is not set"),
    ({"VNHIS_SECRET_KEY": "change-me"}, "VNHIS_SECRET_KEY is a default or too short"),
    ({"VNHIS_SECRET_KEY": "short"}, "VNHIS_SECRET_KEY is a default or too short"),
    ({"VNHIS_SECRET_KEY": GOOD_KEY, "VNHIS_ENV": "prod"}, "VNHIS_ENV must be one of"),
    ({"VNHIS_SECRET_KEY": GOOD_KEY, "VNHIS_DATABASE_URL": "not a url"}, "VNHIS_DATABASE_URL is not a database URL"),
    ({"VNHIS_SECRET_KEY": GOOD_KEY, "VNHIS_DATABASE_URL": "postgresql://u:p@h:abc/db"},
     "VNHIS_DATABASE_URL is not a database URL"),
    ({"VNHIS_SECRET_KEY": GOOD_KEY, "VNHIS_DATABASE_URL": "mysql://u:p@h/d"}, "vnhis supports postgresql and sqlite"),
    ({"VNHIS_SECRET_KEY": GOOD_KEY, "VNHIS_REDIS_URL": "localhost:6379"}, "VNHIS_REDIS_URL must start with"),
    ({"VNHIS_SECRET_KEY": GOOD_KEY, "VNHIS_TIMEZONE": "Mars/Olympus"}, "VNHIS_TIMEZONE 'Mars/Olympus' is not"),
    ({"VNHIS_SECRET_KEY": GOOD_KEY, "VNHIS_SESSION_IDLE_MINUTES": "abc"}, "must be a whole number"),
    ({"VNHIS_SECRET_KEY": GOOD_KEY, "VNHIS_MODULES": "his,nope"}, "unknown modules: nope"),
])
def test_bad_values_are_one_clear_line(environ, message):
    with pytest.raises(ConfigError) as info:
        load(environ)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_modules_read_their_own_settings(tmp_path):
    cfg = load({"VNHIS_ENV": "development", "VNHIS_VAR_DIR": str(tmp_path), "VNHIS_EXAMPLE_URL": "http://x",
                "VNHIS_EMPTY": "", "OTHER": "1"})
    assert cfg.setting("VNHIS_EXAMPLE_URL") == "http://x"
    assert cfg.setting("VNHIS_EMPTY", "default") == "default"
    assert cfg.setting("OTHER") is None
