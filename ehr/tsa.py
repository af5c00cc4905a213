"""RFC 3161 time-stamps from a time-stamping authority (VNHIS_EHR_TSA_URL): the token proves the
signature value existed at the TSA's time, so a signature stays provable after its certificate expires.
"""

from __future__ import annotations

import os
from datetime import datetime
from typing import Protocol

import requests
from asn1crypto import algos, tsp

from core.config import ConfigError
from ehr import cms


class TimeStampError(RuntimeError):
    pass


class TimeStamper(Protocol):
    def stamp(self, digest: bytes) -> tuple[bytes, datetime]:
        """The token (DER ContentInfo) over a SHA-256 digest, and the time it states."""


def request_der(digest: bytes, nonce: int) -> bytes:
    return tsp.TimeStampReq({
        "version": "v1",
        "message_imprint": {"hash_algorithm": algos.DigestAlgorithm({"algorithm": "sha256"}), "hashed_message": digest},
        "nonce": nonce, "cert_req": True,
    }).dump()


def tst_info(token: bytes) -> tsp.TSTInfo:
    return cms.signed_data(token)["encap_content_info"]["content"].parsed


class HttpTimeStamper:
    def __init__(self, url: str, timeout: float = 10.0):
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"VNHIS_EHR_TSA_URL must be an http(s) URL, got {url!r}")
        self.url, self.timeout = url, timeout

    def stamp(self, digest: bytes) -> tuple[bytes, datetime]:
        nonce = int.from_bytes(os.urandom(8), "big")
        try:
            answer = requests.post(self.url, data=request_der(digest, nonce), timeout=self.timeout,
                                   headers={"Content-Type": "application/timestamp-query"})
            answer.raise_for_status()
        except requests.RequestException as exc:
            raise TimeStampError(f"time-stamping authority unreachable: {exc}") from None
        response = tsp.TimeStampResp.load(answer.content)
        if response["status"]["status"].native not in ("granted", "granted_with_mods"):
            raise TimeStampError(f"time-stamp refused: {response['status']['status'].native}")
        token = response["time_stamp_token"].dump()
        info = tst_info(token)
        if info["message_imprint"]["hashed_message"].native != digest or info["nonce"].native != nonce:
            raise TimeStampError("the time-stamp is not for this signature")
        return token, info["gen_time"].native


def from_config(cfg) -> HttpTimeStamper | None:
    url = cfg.setting("VNHIS_EHR_TSA_URL") if cfg is not None else None
    return HttpTimeStamper(url) if url else None


def check(token: bytes, digest: bytes, cas) -> str:
    """valid when the token is a trusted TSA's signature over this digest; else what is wrong."""
    try:
        info = tst_info(token)
    except (ValueError, KeyError, TypeError):
        return "broken"
    if info["message_imprint"]["hashed_message"].native != digest:
        return "broken"
    return cms.check(token, None, cas).status
