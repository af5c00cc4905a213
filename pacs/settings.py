"""The node's settings from the environment, checked with one clear line each."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from core.config import Config, ConfigError


@dataclass(frozen=True)
class PacsSettings:
    ae_title: str
    port: int
    check_calling_ae: bool
    min_free_bytes: int
    storage_root: Path


def check_ae_title(value: str, name: str = "AE title") -> str:
    title = (value or "").strip()
    if not 1 <= len(title) <= 16 or "\\" in title or not title.isprintable() or not title.isascii():
        raise ConfigError(f"{name} must be 1-16 printable ASCII characters without a backslash, got {value!r}")
    return title


def _int(cfg: Config, name: str, default: int, low: int, high: int) -> int:
    raw = cfg.setting(name, str(default))
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low} and {high}, got {value}")
    return value


def load(cfg: Config) -> PacsSettings:
    flag = (cfg.setting("VNHIS_PACS_CHECK_CALLING_AE", "0") or "0").lower()
    if flag not in ("0", "1", "true", "false", "yes", "no"):
        raise ConfigError(f"VNHIS_PACS_CHECK_CALLING_AE must be 0 or 1, got {flag!r}")
    return PacsSettings(
        ae_title=check_ae_title(cfg.setting("VNHIS_PACS_AE_TITLE", "VNHIS"), "VNHIS_PACS_AE_TITLE"),
        port=_int(cfg, "VNHIS_PACS_PORT", 11112, 1, 65535),
        check_calling_ae=flag in ("1", "true", "yes"),
        min_free_bytes=_int(cfg, "VNHIS_PACS_MIN_FREE_MB", 200, 0, 10**7) * 1024 * 1024,
        storage_root=storage_root(cfg),
    )


def storage_root(cfg: Config) -> Path:
    """Where instances are filed: `dicom/` under VNHIS_STORAGE_DIR."""
    return Path(cfg.storage_dir) / "dicom"
