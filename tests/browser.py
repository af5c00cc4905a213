"""Helpers for tests that run the real server (`vnhis serve`, `vnhis demo`) and drive headless Chromium."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

CHROMIUM = "/usr/bin/chromium"
# Without these Chromium keeps trying to reach Google on a machine with no network (STYLE.md).
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def vnhis(env: dict, *args, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "core", *args], env=env, input=stdin, capture_output=True,
                          text=True, timeout=120)


def server_env(tmp_path, **extra) -> dict:
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "VNHIS_VAR_DIR": str(tmp_path / "var"), **extra}


def serving(command: str, env: dict):
    """Start `vnhis <command> --port P`; yield its base URL once /healthz answers; stop it."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "core", command, "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            with urllib.request.urlopen(f"{base}/healthz", timeout=1) as response:  # noqa: S310 (local URL)
                if response.status == 200:
                    break
        except OSError:
            if proc.poll() is not None:
                pytest.fail(f"vnhis {command} exited: {proc.stderr.read()}")
            time.sleep(0.1)
    else:
        proc.kill()
        pytest.fail(f"vnhis {command} did not answer on {base}")
    yield base
    proc.terminate()
    proc.wait(timeout=20)


def log_in(page, base: str, username: str, password: str) -> None:
    page.goto(f"{base}/login")
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("#login-submit")
    page.wait_for_url(f"{base}/")
