"""The one client of the insurer's portal (cổng giám định BHYT): token, card lookup, check-in,
claim upload and claim status. Used by his at reception and by billing for submission.

- Settings come from configuration (VNHIS_BHYT_GATEWAY_URL / _USER / _PASSWORD / _TIMEOUT /
  _RETRIES); a wrong value is a ConfigError with one line.
- A token is fetched on first use and renewed before it runs out; a 401 (the portal forgot or
  expired it earlier) makes the client log in again once and resend the request.
- Every request and its answer is stored raw with its times in `gateway_exchanges`, with the
  password and tokens masked; logs carry only the operation, path, status and time.
- Read-only calls (token, lookup, status) are retried with backoff on a timeout, a refused
  connection or a 5xx. Check-in and upload are sent once per call: they carry the caller's
  request id, by which the portal recognises a resend, so the caller's job may safely send again.
- Outcomes: a card lookup returns a CardLookup even when the card is refused (that is an answer);
  GatewayUnavailable (and its GatewayTimeout) means "no answer, try later"; GatewayAuthError means
  the portal refused the hospital's login; GatewayRejected means the portal answered and refused
  the request as sent (do not resend it unchanged).

The wire format (JSON fields maThe, hoTen …) is the simulator's, documented in his/gateway/README.md;
it follows the shape of the real portal's API, whose exact contract must be checked before go-live.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from datetime import date, datetime

import requests
from flask_babel import lazy_gettext as _l
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from core.config import ConfigError
from core.db import utcnow
from his.gateway import codes
from his.models.gateway import GatewayExchange

log = logging.getLogger("vnhis.gateway")

DEFAULT_TIMEOUT = 5.0
DEFAULT_RETRIES = 2
BACKOFF_SECONDS = 0.5
TOKEN_MARGIN_SECONDS = 30  # renew a token this long before the portal says it ends
CLAIM_KINDS = {"qd130": "QD130", "4210": "QD4210"}
MASK = "***"
_SECRET_KEYS = {"password", "access_token", "id_token", "token"}
_SECRET_HEADERS = {"authorization", "cookie", "set-cookie"}


# --- outcomes ------------------------------------------------------------------------------------

class GatewayError(Exception):
    """Base of the gateway's errors; `message` is what a user reads (Vietnamese)."""

    def __init__(self, code: str, message, *, exchange_id: int | None = None, portal_code: str | None = None,
                 portal_message: str | None = None):
        super().__init__(code)
        self.code, self.message, self.exchange_id = code, message, exchange_id
        self.portal_code, self.portal_message = portal_code, portal_message

    def __str__(self) -> str:
        return str(self.message)


class GatewayNotConfigured(GatewayError):
    """VNHIS_BHYT_GATEWAY_URL is not set: this installation does not talk to the portal."""


class GatewayUnavailable(GatewayError):
    """No usable answer (refused connection, 5xx, garbled answer): try again later."""


class GatewayTimeout(GatewayUnavailable):
    """The portal did not answer within the timeout."""


class GatewayAuthError(GatewayError):
    """The portal refused the hospital's login (wrong credentials, account locked)."""


class GatewayRejected(GatewayError):
    """The portal answered and refused the request as sent."""


# --- results -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PortalCard:
    number: str
    valid_from: date | None
    valid_to: date | None
    registered_facility: str | None


@dataclass(frozen=True)
class CardLookup:
    """What the portal said about a card. `usable` is the portal's verdict; which of the two cards
    is valid on the visit date is for the caller to pick (his.gateway.cards)."""

    code: str
    usable: bool
    problem: str
    message: object
    portal_message: str | None
    card: PortalCard | None
    new_card: PortalCard | None
    full_name: str | None
    birth: str | None
    sex: str | None
    benefit_level: str | None
    five_years_since: date | None
    area: str | None
    raw: dict
    exchange_id: int


@dataclass(frozen=True)
class CheckInReceipt:
    transaction_id: str
    raw: dict
    exchange_id: int


@dataclass(frozen=True)
class ClaimReceipt:
    receipt_id: str
    received_at: datetime
    raw: dict
    exchange_id: int


@dataclass(frozen=True)
class ClaimStatus:
    receipt_id: str
    state: str  # processing | accepted | rejected
    errors: list = field(default_factory=list)  # [{"code": ..., "message": ...}] as the portal gave them
    raw: dict = field(default_factory=dict)
    exchange_id: int = 0


_STATES = {"DANG_XU_LY": "processing", "DA_TIEP_NHAN": "accepted", "TU_CHOI": "rejected"}


# --- settings ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class GatewaySettings:
    url: str
    username: str
    password: str = field(repr=False)
    timeout: float = DEFAULT_TIMEOUT
    retries: int = DEFAULT_RETRIES

    @classmethod
    def from_config(cls, config) -> GatewaySettings | None:
        """None when VNHIS_BHYT_GATEWAY_URL is unset; ConfigError naming the wrong setting."""
        url = (config.setting("VNHIS_BHYT_GATEWAY_URL") or "").strip().rstrip("/")
        if not url:
            return None
        if not url.startswith(("http://", "https://")):
            raise ConfigError("VNHIS_BHYT_GATEWAY_URL must start with http:// or https://, e.g. "
                              "https://gdbhyt.baohiemxahoi.gov.vn")
        username = (config.setting("VNHIS_BHYT_GATEWAY_USER") or "").strip()
        password = config.setting("VNHIS_BHYT_GATEWAY_PASSWORD") or ""
        if not username or not password:
            raise ConfigError("VNHIS_BHYT_GATEWAY_USER and VNHIS_BHYT_GATEWAY_PASSWORD must be set when "
                              "VNHIS_BHYT_GATEWAY_URL is")
        return cls(url, username, password, _number(config, "VNHIS_BHYT_GATEWAY_TIMEOUT", DEFAULT_TIMEOUT, 0.1, 120),
                   int(_number(config, "VNHIS_BHYT_GATEWAY_RETRIES", DEFAULT_RETRIES, 0, 10, whole=True)))


class _Environment:
    def __init__(self, environ):
        self.environ = environ

    def setting(self, name: str, default: str | None = None) -> str | None:
        value = self.environ.get(name)
        return default if value in (None, "") else value


def _number(config, name: str, default: float, low: float, high: float, whole: bool = False) -> float:
    raw = config.setting(name)
    if raw is None:
        return default
    try:
        value = int(raw) if whole else float(raw)
    except ValueError:
        kind = "a whole number" if whole else "a number of seconds"
        raise ConfigError(f"{name} must be {kind}, got {raw!r}") from None
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low:g} and {high:g}, got {raw}")
    return value


# --- masking and recording -----------------------------------------------------------------------

def _mask_json(value):
    if isinstance(value, dict):
        return {k: MASK if k.lower() in _SECRET_KEYS and v else _mask_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask_json(v) for v in value]
    return value


def mask_body(text: str | None) -> str | None:
    """The body as it may be stored: byte for byte, unless it holds a secret (then JSON with *** in its place)."""
    if not text:
        return text
    try:
        value = json.loads(text)
    except ValueError:
        return text
    masked = _mask_json(value)
    return text if masked == value else json.dumps(masked, ensure_ascii=False)


def mask_headers(headers) -> dict:
    return {k: MASK if k.lower() in _SECRET_HEADERS else v for k, v in dict(headers or {}).items()}


def _store(session: Session, row: GatewayExchange) -> int:
    """Keep the exchange whatever becomes of the caller's transaction: on a server database it is
    committed on its own at once; on SQLite (one writer, the caller holds the lock) and on a
    session bound to a connection (tests) it joins the caller's transaction."""
    bind = session.get_bind()
    if isinstance(bind, Engine) and bind.dialect.name != "sqlite":
        with Session(bind, expire_on_commit=False) as own:
            own.add(row)
            own.commit()
            return row.id
    session.add(row)
    session.flush()
    return row.id


# --- the client ----------------------------------------------------------------------------------

_CLIENTS: dict[GatewaySettings, GatewayClient] = {}
_CLIENTS_LOCK = threading.Lock()


class GatewayClient:
    def __init__(self, settings: GatewaySettings, *, http: requests.Session | None = None, sleep=time.sleep):
        self.settings = settings
        self.http = http or requests.Session()
        self._sleep = sleep
        self._lock = threading.Lock()
        self._token: str | None = None
        self._token_until = 0.0  # time.monotonic()

    @classmethod
    def from_config(cls, config) -> GatewayClient:
        """The process's client for these settings (one token shared by its callers).

        Raises GatewayNotConfigured when the URL is unset, ConfigError when a setting is wrong."""
        settings = GatewaySettings.from_config(config)
        if settings is None:
            raise GatewayNotConfigured("not_configured", _l("This installation is not connected to the BHYT portal "
                                                            "(VNHIS_BHYT_GATEWAY_URL is not set)."))
        with _CLIENTS_LOCK:
            client = _CLIENTS.get(settings)
            if client is None:
                client = _CLIENTS[settings] = cls(settings)
            return client

    @classmethod
    def from_environment(cls, environ=None) -> GatewayClient:
        """The same, from the VNHIS_BHYT_GATEWAY_* environment variables alone (jobs have no app config)."""
        return cls.from_config(_Environment(os.environ if environ is None else environ))

    # --- operations --------------------------------------------------------------------------

    def lookup_card(self, session: Session, *, number: str, full_name: str, birth: date | int,
                    subject: str | None = None, actor: str | None = None, retries: int | None = None) -> CardLookup:
        """Look a card up by BHYT card number (15 or 10 characters) or 12-digit personal ID, with the
        name and birth date (a year when only the year is known) the patient gives."""
        birth_text = birth.strftime("%d/%m/%Y") if isinstance(birth, date) else str(birth)
        answer, exchange_id = self._call(session, "card_lookup", "POST", "/api/card/lookup",
                                         {"maThe": number, "hoTen": full_name, "ngaySinh": birth_text},
                                         idempotent=True, subject=subject, actor=actor, retries=retries)
        code = str(answer.get("maKetQua", ""))
        meaning = codes.describe(code)
        new = _portal_card(answer, "maTheMoi", "gtTheTuMoi", "gtTheDenMoi", "maDKBDMoi")
        return CardLookup(code=code, usable=meaning.usable, problem=meaning.problem, message=meaning.message,
                          portal_message=answer.get("ghiChu"),
                          card=_portal_card(answer, "maThe", "gtTheTu", "gtTheDen", "maDKBD"),
                          new_card=new, full_name=answer.get("hoTen"), birth=answer.get("ngaySinh"),
                          sex=answer.get("gioiTinh"), benefit_level=answer.get("mucHuong") or None,
                          five_years_since=_date(answer.get("ngayDu5Nam")), area=answer.get("maKV") or None,
                          raw=answer, exchange_id=exchange_id)

    def check_in(self, session: Session, *, link_key: str, content: bytes, request_id: str,
                 subject: str | None = None, actor: str | None = None) -> CheckInReceipt:
        """Send the check-in record (the QĐ 130 check-in table as XML) at the start of a BHYT visit."""
        answer, exchange_id = self._call(session, "check_in", "POST", "/api/checkin",
                                         {"maLk": link_key, "requestId": request_id,
                                          "noiDung": base64.b64encode(content).decode()},
                                         idempotent=False, subject=subject, actor=actor)
        self._accepted(answer, exchange_id)
        return CheckInReceipt(str(answer["maGiaoDich"]), answer, exchange_id)

    def upload_claim(self, session: Session, *, file_name: str, content: bytes, kind: str = "qd130",
                     request_id: str, subject: str | None = None, actor: str | None = None) -> ClaimReceipt:
        """Upload a signed claim file (a GIAMDINHHS envelope); the receipt id is what claim_status takes."""
        if kind not in CLAIM_KINDS:
            raise ValueError(f"kind must be one of {sorted(CLAIM_KINDS)}, got {kind!r}")
        answer, exchange_id = self._call(session, "claim_upload", "POST", "/api/claims",
                                         {"fileName": file_name, "loaiHoSo": CLAIM_KINDS[kind],
                                          "requestId": request_id, "noiDung": base64.b64encode(content).decode()},
                                         idempotent=False, subject=subject, actor=actor)
        self._accepted(answer, exchange_id)
        return ClaimReceipt(str(answer["maGiaoDich"]), _datetime(answer.get("thoiGianNhan")) or utcnow(), answer,
                            exchange_id)

    def claim_status(self, session: Session, receipt_id: str, *, subject: str | None = None,
                     actor: str | None = None) -> ClaimStatus:
        answer, exchange_id = self._call(session, "claim_status", "GET", f"/api/claims/{receipt_id}", None,
                                         idempotent=True, subject=subject, actor=actor)
        self._accepted(answer, exchange_id)
        state = _STATES.get(answer.get("trangThai"))
        if state is None:
            raise GatewayUnavailable("bad_answer", _l("The BHYT portal gave an answer vnhis does not understand."),
                                     exchange_id=exchange_id)
        errors = [{"code": e.get("maLoi"), "message": e.get("moTa")} for e in answer.get("loi") or []]
        return ClaimStatus(receipt_id, state, errors, answer, exchange_id)

    # --- transport ---------------------------------------------------------------------------

    @staticmethod
    def _accepted(answer: dict, exchange_id: int) -> None:
        code = str(answer.get("maKetQua", ""))
        if code != "000":
            raise GatewayRejected("rejected", _l("The BHYT portal refused the request: %(reason)s",
                                                 reason=answer.get("ghiChu") or code),
                                  exchange_id=exchange_id, portal_code=code, portal_message=answer.get("ghiChu"))

    def _call(self, session, operation, method, path, body, *, idempotent, subject, actor, retries=None,
              authed=True) -> tuple[dict, int]:
        tries = 1 + ((self.settings.retries if retries is None else retries) if idempotent else 0)
        relogged = False
        attempt = 0
        while True:
            attempt += 1
            token = self._current_token(session, subject, actor) if authed else None
            try:
                return self._exchange(session, operation, method, path, body, token=token, attempt=attempt,
                                      subject=subject, actor=actor)
            except _TokenRefused:
                if relogged:
                    raise GatewayAuthError("token_refused", _l("The BHYT portal refused the hospital's login token "
                                                               "again after a new login.")) from None
                relogged = True
                attempt -= 1  # the portal did not look at the request: this is not a retry
                self._forget_token(token)
            except GatewayUnavailable:
                if attempt >= tries:
                    raise
                self._sleep(BACKOFF_SECONDS * 2 ** (attempt - 1))

    def _exchange(self, session, operation, method, path, body, *, token, attempt, subject, actor) -> tuple[dict, int]:
        url = f"{self.settings.url}{path}"
        headers = {"Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        payload = json.dumps(body, ensure_ascii=False) if body is not None else None
        if payload is not None:
            headers["Content-Type"] = "application/json; charset=utf-8"
        row = GatewayExchange(operation=operation, subject=subject, attempt=attempt, method=method, url=url,
                              request_headers=mask_headers(headers), request_body=mask_body(payload),
                              sent_at=utcnow(), actor=actor)
        started = time.monotonic()
        try:
            response = self.http.request(method, url, data=payload.encode() if payload else None, headers=headers,
                                         timeout=self.settings.timeout)
        except requests.Timeout:
            seconds = f"{self.settings.timeout:g}"
            self._finish(session, row, started, outcome="timeout", error=f"no answer within {seconds} s")
            raise GatewayTimeout("timeout", _l("The BHYT portal did not answer within %(s)s seconds.", s=seconds),
                                 exchange_id=row.id) from None
        except requests.RequestException as exc:
            self._finish(session, row, started, outcome="unavailable", error=f"{type(exc).__name__}: {exc}")
            raise GatewayUnavailable("unavailable", _l("The BHYT portal cannot be reached."),
                                     exchange_id=row.id) from None
        row.status_code, row.response_headers = response.status_code, mask_headers(response.headers)
        row.response_body = mask_body(_text(response))
        row.received_at = utcnow()
        answer = _json(response)
        status, code = response.status_code, str((answer or {}).get("maKetQua", ""))
        if status == 401:
            outcome = "auth"
        elif status >= 500 or answer is None or code in codes.SERVER_ERRORS:
            outcome = "unavailable"
        elif status >= 400 or code in codes.BAD_REQUEST:
            outcome = "refused"
        elif code in ("000", "200") or (operation == "card_lookup" and codes.describe(code).usable):
            outcome = "ok"
        else:
            outcome = "refused"  # a card the portal will not accept, a claim it refused: still an answer
        self._finish(session, row, started, outcome=outcome)
        if status == 401:
            if token is None:
                raise GatewayAuthError("login_refused", _l("The BHYT portal refused the hospital's login: ask the "
                                                           "administrator to check the gateway account."),
                                       exchange_id=row.id)
            raise _TokenRefused()
        if outcome == "unavailable":
            raise GatewayUnavailable("portal_error", _l("The BHYT portal answered with an error (%(status)s).",
                                                        status=code if answer is not None and status < 500
                                                        else status), exchange_id=row.id)
        if status >= 400 or code in codes.BAD_REQUEST:
            raise GatewayRejected("rejected", _l("The BHYT portal refused the request: %(reason)s",
                                                 reason=answer.get("ghiChu") or status),
                                  exchange_id=row.id, portal_code=code or str(status),
                                  portal_message=answer.get("ghiChu"))
        return answer, row.id

    def _finish(self, session, row: GatewayExchange, started: float, *, outcome: str, error: str | None = None):
        row.elapsed_ms, row.outcome, row.error = int((time.monotonic() - started) * 1000), outcome, error
        _store(session, row)
        path = row.url[len(self.settings.url):]
        log.info("gateway %s %s %s -> %s (%s) in %d ms", row.operation, row.method, path, row.status_code or "-",
                 outcome, row.elapsed_ms)

    # --- the token ---------------------------------------------------------------------------

    def _current_token(self, session, subject, actor) -> str:
        with self._lock:
            if self._token and time.monotonic() < self._token_until - TOKEN_MARGIN_SECONDS:
                return self._token
            answer, exchange_id = self._call(session, "token", "POST", "/api/token",
                                             {"username": self.settings.username,
                                              "password": self.settings.password},
                                             idempotent=True, subject=subject, actor=actor, authed=False)
            key = answer.get("APIKey") or {}
            if not key.get("access_token"):
                raise GatewayAuthError("login_refused", _l("The BHYT portal refused the hospital's login: ask the "
                                                           "administrator to check the gateway account."),
                                       exchange_id=exchange_id)
            self._token = key["access_token"]
            self._token_until = time.monotonic() + float(key.get("expires_in") or 0)
            return self._token

    def _forget_token(self, token: str | None) -> None:
        with self._lock:
            if self._token == token:
                self._token, self._token_until = None, 0.0


class _TokenRefused(Exception):
    """A 401 on a request that carried a token: log in again and resend."""


def _text(response) -> str:
    """The answer's text: JSON is UTF-8 (RFC 8259) whatever the headers say; anything else as sent."""
    try:
        return response.content.decode("utf-8")
    except UnicodeDecodeError:
        return response.text


def _json(response) -> dict | None:
    try:
        value = response.json()
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _date(text) -> date | None:
    if not text:
        return None
    try:
        return datetime.strptime(str(text), "%d/%m/%Y").date()
    except ValueError:
        return None


def _datetime(text) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(str(text))
    except ValueError:
        return None


def _portal_card(answer: dict, number_key: str, from_key: str, to_key: str, facility_key: str) -> PortalCard | None:
    number = answer.get(number_key)
    if not number:
        return None
    return PortalCard(str(number), _date(answer.get(from_key)), _date(answer.get(to_key)),
                      answer.get(facility_key) or None)
