"""Shared by the HL7 benchmarks: a fresh database with the demo lab and many CBC tubes, the real
`vnhis hl7` listener as a separate process, and an analyser-like MLLP client."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

from core.audit import Actor  # noqa: E402
from core.db import make_engine, make_session_factory  # noqa: E402
from core.modules import import_models  # noqa: E402
from scripts.bench.patients_generate import recreate  # noqa: E402

DAY = date(2026, 12, 1)


def prepare(url: str, tubes: int) -> list[str]:
    """Re-create the database and give it `tubes` CBC specimens (one lab order each, received at the lab);
    returns their barcodes."""
    recreate(url)
    import_models()
    from sqlalchemy import select

    from his import demo_catalog, encounters, orders, patients
    from his.models.org import Department, Room
    from lis import demo, specimens
    from lis.models import Specimen

    engine = make_engine(url)
    actor = Actor.system("bench")
    with make_session_factory(engine)() as session:
        dept = Department(code="KKB", name="Khoa Khám bệnh", is_clinical=True, active=True)
        session.add(dept)
        session.flush()
        room = Room(department_id=dept.id, code="P1", name="Phòng khám 1", kind="exam", active=True)
        session.add(room)
        demo_catalog.seed(session, actor)
        demo.seed(session, actor)
        for n in range(tubes):
            sex = "male" if n % 2 else "female"
            data = {"full_name": f"Nguyễn Văn Thử {n}", "birth_year": 1970 + n % 40, "sex": sex}
            patient = patients.register(session, actor, data, today=DAY, confirm_possible_duplicate=True).patient
            encounter = encounters.open_encounter(session, actor, patient, kind="outpatient", day=DAY, room=room)
            orders.place_order(session, actor, encounter, "lab", [{"code": "XN.CTM"}], on=DAY)
        session.commit()
        barcodes = list(session.scalars(select(Specimen.barcode).order_by(Specimen.id)))
        for barcode in barcodes:  # results are taken only for tubes the lab has received
            specimens.receive(session, actor, barcode)
        session.commit()
    engine.dispose()
    return barcodes


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_listener(url: str, port: int, log_path: Path | None = None, extra: list[str] | None = None
                   ) -> subprocess.Popen:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "VNHIS_DATABASE_URL": url, "VNHIS_ENV": "test",
           "VNHIS_VAR_DIR": tempfile.mkdtemp(prefix="vnhis-lis-bench-"), "VNHIS_LOG_LEVEL": "WARNING"}
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115 (the process keeps it)
    command = [sys.executable, "-m", "core", "hl7", "--host", "127.0.0.1", "--port", str(port), *(extra or [])]
    proc = subprocess.Popen(command, env=env, stdout=out, stderr=out, cwd=ROOT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc
        except OSError:
            if proc.poll() is not None:
                raise SystemExit(f"vnhis hl7 exited with {proc.returncode}") from None
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("vnhis hl7 did not start listening")


class Analyser:
    """Sends a message, waits for its ACK (however many reads), returns MSA-1."""

    def __init__(self, port: int, timeout: float = 30):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = bytearray()

    def send(self, message: bytes) -> str:
        self.sock.sendall(b"\x0b" + message + b"\x1c\x0d")
        while b"\x1c\x0d" not in self.buffer:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("the listener closed the connection")
            self.buffer += data
        end = self.buffer.index(b"\x1c\x0d")
        answer = bytes(self.buffer[self.buffer.index(b"\x0b") + 1:end])
        del self.buffer[:end + 2]
        msa = next(line for line in answer.split(b"\r") if line.startswith(b"MSA"))
        return msa.split(b"|")[1].decode()

    def close(self) -> None:
        self.sock.close()
