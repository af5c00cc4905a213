"""The table of known remote DICOM nodes (C-MOVE destinations, allowed callers)."""

from __future__ import annotations

import ipaddress
import re

from sqlalchemy import select
from sqlalchemy.orm import Session

from core import audit
from core.audit import Actor
from pacs.models import RemoteAE

LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?"
HOSTNAME = re.compile(rf"^(?=.{{1,255}}$){LABEL}(?:\.{LABEL})*$")


class RemoteError(ValueError):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


def _check(title: str, host: str, port) -> tuple[str, str, int]:
    title = (title or "").strip()
    if not 1 <= len(title) <= 16 or "\\" in title or not title.isascii() or not title.isprintable():
        raise RemoteError("bad_title", "AE title must be 1-16 printable ASCII characters without a backslash")
    host = (host or "").strip()
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not HOSTNAME.match(host):
            raise RemoteError("bad_host", "host must be an IP address or a host name") from None
    try:
        port = int(port)
    except (TypeError, ValueError):
        raise RemoteError("bad_port", "port must be a number from 1 to 65535") from None
    if not 1 <= port <= 65535:
        raise RemoteError("bad_port", "port must be a number from 1 to 65535")
    return title, host, port


def add(session: Session, actor: Actor, title: str, host: str, port, description: str = "") -> RemoteAE:
    title, host, port = _check(title, host, port)
    if session.scalar(select(RemoteAE.id).where(RemoteAE.ae_title == title)):
        raise RemoteError("duplicate", f"AE title {title} is already known")
    remote = RemoteAE(ae_title=title, host=host, port=port, description=(description or "").strip()[:200])
    session.add(remote)
    session.flush()
    audit.record(session, actor, "pacs.remote.add", remote, {"ae_title": title, "host": host, "port": port})
    return remote


def remove(session: Session, actor: Actor, remote: RemoteAE) -> None:
    """Remote nodes are configuration, not clinical data: they are removed outright (and audited)."""
    audit.record(session, actor, "pacs.remote.remove", remote,
                 {"ae_title": remote.ae_title, "host": remote.host, "port": remote.port})
    session.delete(remote)
    session.flush()


def all_remotes(session: Session) -> list[RemoteAE]:
    return list(session.scalars(select(RemoteAE).order_by(RemoteAE.ae_title)))
