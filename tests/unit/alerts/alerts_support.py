"""Shared pieces of the alerts and API unit tests: a real SQLite call log, inline runners, a
Site driven through StringTransport, and counts of what the database holds."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from twisted.internet import defer, task
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from twisted.web.server import Site

from dispatcher.alerts.service import AlertService
from dispatcher.alerts.settings import AlertSettings
from dispatcher.api.base import ApiRequest, JsonResource
from dispatcher.api.resources import build_api
from dispatcher.calllog import db, store_incidents
from dispatcher.calllog.models import Alert, Callback, Incident, IncidentTransition

NOW = 1_795_800_000.0  # 2026-11-27, the clock the tests start at
TOKEN = "t0ken-of-app-one-0123456789abcdef"
HMAC_KEY = "hmac-key-of-app-two-0123456789"


def make_db(tmp_path: Path) -> sessionmaker[Session]:
    """A real SQLite call log in ``tmp_path``, schema at head."""
    engine = db.make_engine(f"sqlite:///{tmp_path / 'siaga.db'}")
    db.upgrade(engine)
    return db.make_sessionmaker(engine)


def inline(sessions: sessionmaker[Session]) -> Any:
    """A write/read runner that runs ``fn(session, *args)`` at once in a transaction."""
    def run(fn: Any, *args: Any) -> defer.Deferred[Any]:
        try:
            with db.transaction(sessions) as session:
                return defer.succeed(fn(session, *args))
        except Exception as exc:  # handed to the caller as a failed Deferred, as the writer does
            return defer.fail(exc)
    return run


def enrol(sessions: sessionmaker[Session], device_id: str, *, token: str | None = None,
          hmac_key: str | None = None, callback_number: str | None = "081234567890",
          kind: str = "app") -> None:
    """Enrol a device directly in the database."""
    with db.transaction(sessions) as session:
        store_incidents.add_device(session, device_id, kind=kind, token=token, hmac_key=hmac_key,
                                   callback_number=callback_number,
                                   now=dt.datetime.fromtimestamp(NOW, dt.UTC))


def counts(sessions: sessionmaker[Session]) -> dict[str, int]:
    """Rows per table of what an alert creates."""
    with sessions() as session:
        return {model.__tablename__: session.scalar(select(func.count()).select_from(model))
                for model in (Alert, Incident, IncidentTransition, Callback)}


def make_service(tmp_path: Path, ami: Any = None, settings: AlertSettings | None = None,
                 clock: task.Clock | None = None) -> tuple[AlertService, sessionmaker[Session],
                                                           task.Clock]:
    """An AlertService on a real database with inline runners and a fake clock; app1 has a
    token, app2 an HMAC key, app3 both."""
    clock = clock or task.Clock()
    clock.advance(NOW)
    sessions = make_db(tmp_path)
    enrol(sessions, "app1", token=TOKEN)
    enrol(sessions, "app2", hmac_key=HMAC_KEY)
    enrol(sessions, "app3", token=TOKEN, hmac_key=HMAC_KEY)
    run = inline(sessions)
    service = AlertService(clock, run, run, ami, settings)
    return service, sessions, clock


class Http:
    """A Site over the API, fed raw HTTP through StringTransport (one connection a request)."""

    def __init__(self, service: AlertService, clock: task.Clock,
                 operator_token: str | None = None, peer: str = "127.0.0.1",
                 hotline: Any = None) -> None:
        root = JsonResource()
        root.putChild(b"api", build_api(service, operator_token, hotline))
        self.site = Site(root, requestFactory=ApiRequest, reactor=clock)
        self.peer = peer

    def raw(self, data: bytes) -> tuple[int, dict[str, str], bytes]:
        """Send raw bytes; return status, headers (lower-case names) and the decoded body."""
        address = IPv4Address("TCP", self.peer, 40000)
        proto = self.site.buildProtocol(address)
        transport = StringTransport(peerAddress=address)
        proto.makeConnection(transport)
        proto.dataReceived(data)
        return parse_response(transport.value())

    def request(self, method: str, path: str, body: bytes = b"",
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        """One request with a Content-Length."""
        lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
        for name, value in (headers or {}).items():
            lines.append(f"{name}: {value}")
        lines.append(f"Content-Length: {len(body)}")
        return self.raw(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)


def parse_response(data: bytes) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body (chunked encoding undone) of one HTTP response."""
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding") == "chunked":
        body = b""
        while rest:
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line, 16)
            if size == 0:
                break
            body += rest[:size]
            rest = rest[size + 2:]
        return status, headers, body
    return status, headers, rest[: int(headers.get("content-length", len(rest)))]
