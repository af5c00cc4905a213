"""kill -9 of `vnhis hl7` in the middle of a load loses no message that was answered AA: the clients
resend what was not acknowledged, the restarted listener stores it once."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time

import pytest
from sqlalchemy import text

from lis import hl7, mllp
from tests.browser import free_port, server_env
from tests.lis.messages import cbc_oru


def _start(env: dict, port: int, astm_port: int) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "core", "hl7", "--host", "127.0.0.1", "--port", str(port),
                             "--astm-port", str(astm_port)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    for _ in range(300):
        try:  # both listeners: the ASTM one may come up a moment after the HL7 one
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            socket.create_connection(("127.0.0.1", astm_port), timeout=1).close()
            return proc
        except OSError:
            if proc.poll() is not None:
                pytest.fail(f"vnhis hl7 exited: {proc.stderr.read()}")
            time.sleep(0.1)
    proc.kill()
    pytest.fail("vnhis hl7 did not listen")


def _send(sock: socket.socket, payload: bytes) -> str:
    sock.sendall(mllp.frame(payload))
    reader, frames = mllp.FrameReader(), []
    while not frames:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("closed")
        frames = reader.feed(data)
    return hl7.parse(frames[0].data).find("MSA").component(1)


def test_a_killed_listener_loses_nothing_it_acknowledged(committed_lab, tmp_path):
    env = server_env(tmp_path, VNHIS_DATABASE_URL=committed_lab["url"], VNHIS_ENV="test", VNHIS_LOG_LEVEL="ERROR")
    port, astm_port = free_port(), free_port()
    listener = _start(env, port, astm_port)
    with socket.create_connection(("127.0.0.1", astm_port), timeout=10) as astm:  # the ASTM port answers too
        astm.sendall(b"\x05")
        assert astm.recv(1) == b"\x06"
        astm.sendall(b"\x04")
    acked: list[str] = []
    lock = threading.Lock()

    def analyser(n: int, barcode: str) -> None:
        sock = None
        for k in range(25):
            control = f"K{n}-{k}"
            while True:
                try:
                    sock = sock or socket.create_connection(("127.0.0.1", port), timeout=10)
                    code = _send(sock, cbc_oru(barcode, control))
                    break
                except OSError:
                    sock = None
                    time.sleep(0.2)
            assert code == "AA"
            with lock:
                acked.append(control)
        sock.close()

    threads = [threading.Thread(target=analyser, args=(n, b)) for n, b in
               enumerate([committed_lab["blood"], committed_lab["blood"], committed_lab["blood"]])]
    for t in threads:
        t.start()
    while len(acked) < 15:
        time.sleep(0.05)
    listener.kill()
    listener.wait()
    killed_at = len(acked)
    listener = _start(env, port, astm_port)
    for t in threads:
        t.join(120)
    listener.terminate()
    listener.wait(20)
    assert killed_at < 75 and len(acked) == 75
    with committed_lab["engine"].connect() as conn:
        stored = dict(conn.execute(text(
            "SELECT m.control_id, count(r.id) FROM lis_messages m JOIN lis_results r ON r.message_id = m.id "
            "WHERE m.status = 'applied' GROUP BY m.id, m.control_id")).all())
        versions = conn.execute(text("SELECT count(*) FROM lis_results")).scalar()
    assert stored == dict.fromkeys(acked, 25)  # every AA is there, once, with its 25 results
    assert versions == 75 * 25
