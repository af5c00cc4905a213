"""The billing module's settings, from VNHIS_BILLING_* variables, each checked with one clear line."""

from __future__ import annotations

import re
from dataclasses import dataclass

from billing.rules import FACILITY_LEVELS
from core.config import ConfigError


@dataclass(frozen=True)
class Settings:
    facility_code: str | None  # MA_CSKCB, 5 characters
    facility_level: str
    head_id: str | None  # MA_TTDV: social-insurance number of the head of the facility (10 digits)
    bank_bin: str | None
    bank_account: str | None
    merchant_name: str | None
    webhook_secret: str | None
    signing_key: str | None  # PEM files of the facility's signing key and certificate
    signing_cert: str | None
    signing_key_passphrase: str | None = None  # of an encrypted signing key


def _match(name: str, value: str | None, pattern: str, what: str) -> str | None:
    if value is not None and not re.fullmatch(pattern, value):
        raise ConfigError(f"{name} must be {what}, got {value!r}")
    return value


def load(config) -> Settings:
    get = config.setting
    level = get("VNHIS_BILLING_FACILITY_LEVEL", "provincial")
    if level not in FACILITY_LEVELS:
        raise ConfigError(f"VNHIS_BILLING_FACILITY_LEVEL must be one of {', '.join(FACILITY_LEVELS)}, got {level!r}")
    secret = get("VNHIS_BILLING_WEBHOOK_SECRET")
    if secret is not None and len(secret) < 16:
        raise ConfigError("VNHIS_BILLING_WEBHOOK_SECRET must have at least 16 characters")
    return Settings(
        facility_code=_match("VNHIS_BILLING_FACILITY_CODE", get("VNHIS_BILLING_FACILITY_CODE"), r"[0-9A-Z]{5}",
                             "a 5-character facility code (MA_CSKCB)"),
        facility_level=level,
        head_id=_match("VNHIS_BILLING_HEAD_ID", get("VNHIS_BILLING_HEAD_ID"), r"\d{10}", "10 digits (MA_TTDV)"),
        bank_bin=_match("VNHIS_BILLING_BANK_BIN", get("VNHIS_BILLING_BANK_BIN"), r"\d{6}",
                        "the bank's 6-digit NAPAS BIN"),
        bank_account=_match("VNHIS_BILLING_BANK_ACCOUNT", get("VNHIS_BILLING_BANK_ACCOUNT"), r"[0-9A-Za-z]{4,19}",
                            "an account number of 4 to 19 letters or digits"),
        merchant_name=get("VNHIS_BILLING_MERCHANT_NAME"),
        webhook_secret=secret,
        signing_key=get("VNHIS_BILLING_SIGNING_KEY"),
        signing_cert=get("VNHIS_BILLING_SIGNING_CERT"),
        signing_key_passphrase=get("VNHIS_BILLING_SIGNING_KEY_PASSPHRASE"),
    )
