"""A local bank for tests and the demo: it "receives" a VietQR transfer and notifies the hospital like a
bank does — a signed JSON credit notification POSTed to the webhook, sent again until it gets a 2xx.

HTTP interface (127.0.0.1 only):
    POST /pay      {"qr": "<VietQR text>", "amount": <optional override, đồng>}
                   → {"transaction_id", "amount", "description", "webhook_status"}
    POST /resend   {"transaction_id": "..."}   the same notification again (a bank retry)
    GET  /healthz
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from datetime import datetime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from zoneinfo import ZoneInfo

import requests

from billing import bank, vietqr

TZ = ZoneInfo("Asia/Ho_Chi_Minh")


class BankSimulator:
    def __init__(self, webhook_url: str, secret: str, *, host: str = "127.0.0.1", port: int = 0,
                 attempts: int = 5, retry_seconds: float = 0.5):
        self.webhook_url, self.secret = webhook_url, secret
        self.attempts, self.retry_seconds = attempts, retry_seconds
        self.sent: dict[str, bytes] = {}
        self._ids = itertools.count(1)
        self._server = ThreadingHTTPServer((host, port), self._handler())
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> BankSimulator:
        self._thread = threading.Thread(target=self._server.serve_forever, name="bank-sim", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def serve_forever(self) -> None:
        self._server.serve_forever()

    # --- what the bank does -------------------------------------------------------------------
    def pay(self, qr_text: str, amount: Decimal | None = None) -> dict:
        decoded = vietqr.decode(qr_text)
        value = amount if amount is not None else decoded.amount
        txn = f"FT{datetime.now(TZ):%y%m%d}{next(self._ids):06d}"
        body = json.dumps({"transaction_id": txn, "account": decoded.account, "amount": int(value),
                           "description": decoded.purpose or "", "credited_at": datetime.now(TZ).isoformat()},
                          ensure_ascii=False).encode()
        self.sent[txn] = body
        return {"transaction_id": txn, "amount": int(value), "description": decoded.purpose,
                "webhook_status": self._deliver(body)}

    def resend(self, transaction_id: str) -> dict:
        return {"transaction_id": transaction_id, "webhook_status": self._deliver(self.sent[transaction_id])}

    def _deliver(self, body: bytes) -> int:
        status = 0
        for attempt in range(self.attempts):
            try:
                answer = requests.post(self.webhook_url, data=body, timeout=5, headers={
                    "Content-Type": "application/json", bank.SIGNATURE_HEADER: bank.sign(self.secret, body)})
                status = answer.status_code
                if status < 500:
                    return status  # 2xx done; 4xx is final for a bank too
            except requests.RequestException:
                status = 0
            time.sleep(self.retry_seconds * (attempt + 1))
        return status

    def _handler(self):
        sim = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet in tests
                return

            def _answer(self, status: int, data: dict) -> None:
                body = json.dumps(data).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                self._answer(200 if self.path == "/healthz" else 404, {"status": "ok"})

            def do_POST(self) -> None:  # noqa: N802
                try:
                    data = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                    if self.path == "/pay":
                        amount = Decimal(str(data["amount"])) if data.get("amount") is not None else None
                        self._answer(200, sim.pay(data["qr"], amount))
                    elif self.path == "/resend":
                        self._answer(200, sim.resend(data["transaction_id"]))
                    else:
                        self._answer(404, {"error": "unknown path"})
                except (KeyError, ValueError, vietqr.QrError) as exc:
                    self._answer(400, {"error": str(exc)})

        return Handler
