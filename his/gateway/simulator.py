"""A local stand-in for the insurer's portal, for tests and the demo (`vnhis gateway-sim`).

Same shape as the real interface — token, card lookup, check-in, claim upload, claim status —
with seeded cards for every case the desk must handle (his/gateway/sim_cards.py), and switches to
make it slow, down or flaky: command-line options, `Simulator.configure(...)` in a test, or the
admin endpoint `POST /admin/settings`. The interface is documented in his/gateway/README.md.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import random
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from flask import Flask, jsonify, request
from lxml import etree
from werkzeug.serving import make_server

from his.gateway.sim_cards import SimCard, seeded
from his.text import fold

MODES = ("normal", "slow", "down", "error")
TZ = ZoneInfo("Asia/Ho_Chi_Minh")
_SETTABLE = {"mode": str, "latency": float, "failure_rate": float, "token_ttl": int, "slow_seconds": float,
             "processing_polls": int}


@dataclass
class SimSettings:
    mode: str = "normal"  # slow: every API answer waits slow_seconds; down: 503; error: 500 with an HTML page
    latency: float = 0.0  # seconds added to every API answer
    failure_rate: float = 0.0  # share of API requests answered 503 at random
    token_ttl: int = 3600  # seconds a token lives
    slow_seconds: float = 30.0
    processing_polls: int = 1  # status queries answered "processing" before the verdict

    def update(self, changes: dict) -> None:
        for key, value in changes.items():
            if key not in _SETTABLE:
                raise ValueError(f"unknown setting {key!r}; known: {', '.join(sorted(_SETTABLE))}")
            value = _SETTABLE[key](value)
            if key == "mode" and value not in MODES:
                raise ValueError(f"mode must be one of {', '.join(MODES)}")
            if key == "failure_rate" and not 0 <= value <= 1:
                raise ValueError("failure_rate must be between 0 and 1")
            if key != "mode" and value < 0:
                raise ValueError(f"{key} must not be negative")
            setattr(self, key, value)


@dataclass
class _Claim:
    receipt_id: str
    file_name: str
    kind: str
    received_at: datetime
    errors: list
    polls: int = 0


@dataclass
class SimState:
    users: dict
    settings: SimSettings
    today: date | None = None  # fixed day for the seeded cards; None: the local day
    tokens: dict = field(default_factory=dict)  # token -> expiry (time.monotonic)
    claims: dict = field(default_factory=dict)  # receipt id -> _Claim
    requests: dict = field(default_factory=dict)  # idempotency: (kind, request id) -> answer
    counts: dict = field(default_factory=dict)  # endpoint -> requests received
    lock: threading.Lock = field(default_factory=threading.Lock)
    stopping: threading.Event = field(default_factory=threading.Event)
    rng: random.Random = field(default_factory=lambda: random.Random(130))
    ids: itertools.count = field(default_factory=lambda: itertools.count(1))

    def day(self) -> date:
        return self.today or datetime.now(TZ).date()

    def cards(self) -> list[SimCard]:
        return seeded(self.day())


def _answer(code: str, note: str, status: int = 200, **fields):
    return jsonify({"maKetQua": code, "ghiChu": note, **fields}), status


def _d(value: date | None) -> str:
    return value.strftime("%d/%m/%Y") if value else ""


def create_app(state: SimState) -> Flask:
    app = Flask("vnhis-gateway-sim")
    app.json.ensure_ascii = False

    @app.before_request
    def _weather():
        path = request.path
        if not path.startswith("/api/"):
            return None
        with state.lock:
            state.counts[request.endpoint] = state.counts.get(request.endpoint, 0) + 1
            settings = state.settings
            flaky = settings.failure_rate and state.rng.random() < settings.failure_rate
        wait = settings.latency + (settings.slow_seconds if settings.mode == "slow" else 0)
        if wait:
            state.stopping.wait(wait)
        if settings.mode == "down" or flaky:
            return _answer("503", "Hệ thống đang bảo trì", 503)
        if settings.mode == "error":
            return "<html><body><h1>500 Internal Server Error</h1></body></html>", 500, {"Content-Type": "text/html"}
        if path != "/api/token":
            token = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
            with state.lock:
                until = state.tokens.get(token)
            if until is None or until < time.monotonic():
                return _answer("401", "Token không hợp lệ hoặc đã hết hạn", 401)
        return None

    @app.get("/healthz")
    def healthz():
        return jsonify({"ok": True})

    @app.post("/api/token")
    def token():
        body = request.get_json(silent=True) or {}
        if state.users.get(body.get("username")) != body.get("password") or not body.get("password"):
            return _answer("401", "Sai tên đăng nhập hoặc mật khẩu", 401)
        value = secrets.token_urlsafe(24)
        with state.lock:
            state.tokens[value] = time.monotonic() + state.settings.token_ttl
        return jsonify({"maKetQua": "200", "APIKey": {"access_token": value, "id_token": secrets.token_hex(8),
                                                      "token_type": "Bearer", "expires_in": state.settings.token_ttl}})

    @app.post("/api/card/lookup")
    def card_lookup():
        body = request.get_json(silent=True) or {}
        number = str(body.get("maThe") or "").strip().upper()
        name, birth = str(body.get("hoTen") or ""), str(body.get("ngaySinh") or "")
        if not number or not name or not birth:
            return _answer("205", "Thiếu tham số maThe, hoTen hoặc ngaySinh")
        return _lookup(state, number, name, birth)

    @app.post("/api/checkin")
    def checkin():
        body = request.get_json(silent=True) or {}
        link_key, request_id = str(body.get("maLk") or ""), str(body.get("requestId") or "")
        if not link_key or not request_id:
            return _answer("205", "Thiếu maLk hoặc requestId")
        problem, root = _xml(body.get("noiDung"))
        if problem:
            return _answer("205", problem)
        if root.findtext(".//MA_LK") != link_key:
            return _answer("205", f"MA_LK trong dữ liệu check-in khác {link_key}")
        return _once(state, ("checkin", request_id), lambda: {"maKetQua": "000", "ghiChu": "Đã tiếp nhận check-in",
                                                              "maGiaoDich": f"CI{next(state.ids):08d}"})

    @app.post("/api/claims")
    def upload():
        body = request.get_json(silent=True) or {}
        request_id, file_name = str(body.get("requestId") or ""), str(body.get("fileName") or "")
        kind = body.get("loaiHoSo")
        if not request_id or not file_name or kind not in ("QD130", "QD4210"):
            return _answer("205", "Thiếu requestId, fileName hoặc loaiHoSo (QD130 | QD4210)")
        problem, root = _xml(body.get("noiDung"))
        if problem:
            return _answer("205", problem)

        def receive():
            receipt = f"HS{next(state.ids):08d}"
            received = datetime.now(UTC)
            state.claims[receipt] = _Claim(receipt, file_name, kind, received, _claim_errors(root))
            return {"maKetQua": "000", "ghiChu": "Đã nhận hồ sơ", "maGiaoDich": receipt,
                    "thoiGianNhan": received.isoformat()}

        return _once(state, ("claim", request_id), receive)

    @app.get("/api/claims/<receipt_id>")
    def status(receipt_id: str):
        with state.lock:
            claim = state.claims.get(receipt_id)
            if claim is None:
                return _answer("404", f"Không có hồ sơ {receipt_id}", 404)
            claim.polls += 1
            processing = claim.polls <= state.settings.processing_polls
        if processing:
            return _answer("000", "Đang giám định", maGiaoDich=receipt_id, trangThai="DANG_XU_LY", loi=[])
        verdict = "TU_CHOI" if claim.errors else "DA_TIEP_NHAN"
        return _answer("000", "Từ chối" if claim.errors else "Đã tiếp nhận", maGiaoDich=receipt_id,
                       trangThai=verdict, loi=claim.errors)

    # --- administration (tests and the demo switch the weather here) --------------------------

    @app.get("/admin/state")
    def admin_state():
        with state.lock:
            return jsonify({"settings": vars(state.settings), "requests": dict(state.counts),
                            "tokens": len(state.tokens), "claims": len(state.claims), "today": state.day().isoformat()})

    @app.post("/admin/settings")
    def admin_settings():
        try:
            with state.lock:
                state.settings.update(request.get_json(silent=True) or dict(request.form))
        except (TypeError, ValueError) as exc:
            return jsonify({"error": str(exc)}), 400
        return admin_state()

    @app.post("/admin/expire-tokens")
    def admin_expire():
        with state.lock:
            state.tokens = dict.fromkeys(state.tokens, 0.0)
        return jsonify({"expired": len(state.tokens)})

    return app


def _once(state: SimState, key: tuple, make):
    """A resend with the same request id gets the first answer again, nothing is received twice."""
    with state.lock:
        if key not in state.requests:
            state.requests[key] = make()
        return jsonify(state.requests[key])


def _xml(encoded) -> tuple[str | None, etree._Element | None]:
    try:
        content = base64.b64decode(str(encoded or ""), validate=True)
    except (binascii.Error, ValueError):
        return "noiDung không phải base64", None
    if not content:
        return "noiDung rỗng", None
    try:
        return None, etree.fromstring(content, etree.XMLParser(resolve_entities=False, no_network=True))
    except etree.XMLSyntaxError as exc:
        return f"noiDung không phải XML hợp lệ: {exc}", None


def _claim_errors(root) -> list:
    """The structural checks the simulator stands in for the portal's assessment with."""
    errors = []
    if root.tag != "GIAMDINHHS":
        return [{"maLoi": "CAU_TRUC", "moTa": f"Thẻ gốc phải là GIAMDINHHS, không phải {root.tag}"}]
    if not root.findtext("THONGTINDONVI/MACSKCB"):
        errors.append({"maLoi": "MACSKCB", "moTa": "Thiếu mã cơ sở KBCB (THONGTINDONVI/MACSKCB)"})
    files = root.findall("THONGTINHOSO/DANHSACHHOSO/HOSO")
    if root.findtext("THONGTINHOSO/SOLUONGHOSO") != str(len(files)):
        errors.append({"maLoi": "SOLUONGHOSO", "moTa": f"SOLUONGHOSO khác số HOSO ({len(files)})"})
    for n, hoso in enumerate(files, 1):
        kinds = [f.findtext("LOAIHOSO") for f in hoso.findall("FILEHOSO")]
        if "XML1" not in kinds:
            errors.append({"maLoi": "XML1", "moTa": f"Hồ sơ thứ {n} thiếu XML1"})
        for item in hoso.findall("FILEHOSO"):
            problem, _inner = _xml(item.findtext("NOIDUNGFILE"))
            if problem:
                errors.append({"maLoi": "NOIDUNGFILE",
                               "moTa": f"Hồ sơ thứ {n}, {item.findtext('LOAIHOSO')}: {problem}"})
    if root.find("CHUKYDONVI/{http://www.w3.org/2000/09/xmldsig#}Signature") is None:
        errors.append({"maLoi": "CHUKY", "moTa": "Thiếu chữ ký số của cơ sở KBCB (CHUKYDONVI)"})
    return errors


def _same_birth(card: SimCard, given: str) -> bool:
    if len(given) == 4 and given.isdigit():
        return int(given) == card.birth.year
    return given == _d(card.birth)


def _lookup(state: SimState, number: str, name: str, birth: str):
    cards = state.cards()
    by_id = len(number) == 12 and number.isdigit()
    matches = [c for c in cards if (c.national_id if by_id else c.number) == number]
    if not matches:
        shape_ok = by_id or (len(number) == 10 and number.isdigit()) or (len(number) == 15 and number[:2].isalpha()
                                                                         and number[2:].isdigit())
        return _answer("050" if shape_ok else "051", "Không thấy thông tin thẻ BHYT" if shape_ok
                       else "Mã thẻ không đúng")
    # By personal ID, the person's most recent card answers.
    card = matches[-1]
    if fold(name) != fold(card.full_name):
        first_ok = fold(name)[:1] == fold(card.full_name)[:1]
        return _answer("061" if first_ok else "060", "Thẻ sai họ tên (đúng ký tự đầu)" if first_ok
                       else "Thẻ sai họ tên")
    if not _same_birth(card, birth):
        return _answer("070", "Thẻ sai ngày sinh")
    today = state.day()
    fields = {"maThe": card.number, "hoTen": card.full_name, "ngaySinh": _d(card.birth), "gioiTinh": card.sex,
              "maDKBD": card.facility, "gtTheTu": _d(card.valid_from), "gtTheDen": _d(card.valid_to),
              "mucHuong": card.benefit_level, "maKV": card.area, "ngayDu5Nam": _d(card.five_years_since),
              "maSoBHXH": card.number[-10:], "maTheMoi": None, "gtTheTuMoi": None, "gtTheDenMoi": None,
              "maDKBDMoi": None}
    new = card.replaced_by
    if new is not None:
        fields.update(maTheMoi=new.number, gtTheTuMoi=_d(new.valid_from), gtTheDenMoi=_d(new.valid_to),
                      maDKBDMoi=new.facility)
        if card.valid_to < today:
            return _answer("003", "Thẻ cũ hết giá trị sử dụng nhưng đã được cấp thẻ mới", **fields)
        return _answer("004", "Thẻ cũ còn giá trị sử dụng nhưng đã được cấp thẻ mới", **fields)
    if card.valid_to < today:
        return _answer("010", "Thẻ hết giá trị sử dụng", **fields)
    return _answer("000", "Thẻ còn giá trị sử dụng", **fields)


class Simulator:
    """The simulator as a server: `start()` in a thread (tests), `serve_forever()` (the CLI)."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, users: dict | None = None,
                 today: date | None = None, **settings):
        self.settings = SimSettings()
        self.settings.update(settings)
        self.state = SimState(users=dict(users or {}), settings=self.settings, today=today)
        self.app = create_app(self.state)
        self.server = make_server(host, port, self.app, threaded=True)
        self.server.daemon_threads = True
        self.host, self.port = host, self.server.server_port
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def configure(self, **changes) -> None:
        with self.state.lock:
            self.settings.update(changes)

    def expire_tokens(self) -> None:
        with self.state.lock:
            self.state.tokens = dict.fromkeys(self.state.tokens, 0.0)

    def request_counts(self) -> dict:
        with self.state.lock:
            return dict(self.state.counts)

    def start(self) -> Simulator:
        self._thread = threading.Thread(target=self.server.serve_forever, name="vnhis-gateway-sim", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self.server.serve_forever()

    def stop(self) -> None:
        self.state.stopping.set()  # wakes answers waiting in "slow" mode
        self.server.shutdown()
        self.server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
