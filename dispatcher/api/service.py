"""Builds the HTTP API service for the server tree: :func:`make_http_service`.

What it needs (the server's builder passes them in; nothing here is global):

* ``reactor``: listenTCP, callLater/seconds, callFromThread (the real reactor, or a fake);
* ``center``: the config (``http.bind``/``http.port``, ``buttons``, ``hotline.panic_number``);
* ``writer``: the call log's ``CallLogWriter`` (started by whoever owns it) for every write;
* ``sessions``: the call log's session factory, for reads in a small thread pool;
* ``ami``: the ``AMIService`` (originate, subscribe, setvar), or None (alerts are taken and
  their callbacks wait in the database).

The service it returns starts, in order: the read pool, the alert service (button rows, owed
callbacks resumed), then the listening port; it stops in reverse.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker
from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool
from twisted.web.resource import Resource
from twisted.web.server import Site

from dispatcher.alerts.service import AlertService, AlertSettings
from dispatcher.api.resources import ApiRequest, JsonResource, build_api
from dispatcher.config import Center

__all__ = [
    "ApiParts",
    "HttpService",
    "ReadPool",
    "ensure_operator_token",
    "make_api",
    "make_http_service",
]

OPERATOR_TOKEN_FILE = "operator-api.token"


class ReadPool(Service):
    """A few threads for database reads; ``run(fn, *args)`` → ``fn(session, *args)``."""

    name = "api-reads"

    def __init__(self, reactor: Any, sessions: sessionmaker[Session], threads: int = 4) -> None:
        self.reactor = reactor
        self.sessions = sessions
        self.pool = ThreadPool(minthreads=1, maxthreads=threads, name="api-reads")

    def startService(self) -> None:  # noqa: N802 -- Twisted's name
        """Start the threads."""
        super().startService()
        self.pool.start()

    def stopService(self) -> None:  # noqa: N802 -- Twisted's name
        """Stop the threads (waits for running reads)."""
        super().stopService()
        self.pool.stop()

    def run(self, fn: Callable[..., Any], *args: Any) -> Deferred[Any]:
        """Run ``fn(session, *args)`` in a pool thread, in a read-only transaction."""
        def work() -> Any:
            with self.sessions() as session, session.begin():
                return fn(session, *args)

        return deferToThreadPool(self.reactor, self.pool, work)


class _Listener(Service):
    """Listens for HTTP on ``host:port`` (0 picks a free port: see ``port``)."""

    name = "http-listener"

    def __init__(self, reactor: Any, site: Site, host: str, port: int) -> None:
        self.reactor = reactor
        self.site = site
        self.host = host
        self.requested_port = port
        self.listening: Any = None

    def startService(self) -> None:  # noqa: N802 -- Twisted's name
        """Bind (raises if the port is taken: the server must not start half-deaf)."""
        super().startService()
        self.listening = self.reactor.listenTCP(self.requested_port, self.site,
                                                interface=self.host)

    def stopService(self) -> Deferred[None] | None:  # noqa: N802 -- Twisted's name
        """Stop listening; fires when the port is closed."""
        super().stopService()
        if self.listening is None:
            return None
        listening, self.listening = self.listening, None
        return listening.stopListening()


class ApiSite(Site):
    """The API's own site. No access log line per request: at a thousand alerts a second
    it would cost more than the alerts; refusals and failures are logged where they occur."""

    def log(self, request: Any) -> None:
        """No access log."""


class HttpService(MultiService):
    """The API: read pool, alert service and listener. ``port`` is the bound port once started."""

    def __init__(self, reads: ReadPool, alerts: AlertService, listener: _Listener) -> None:
        super().__init__()
        self.reads = reads
        self.alerts = alerts
        self.listener = listener
        self.site = listener.site
        for child in (reads, alerts, listener):
            child.setServiceParent(self)

    @property
    def port(self) -> int:
        """The TCP port the API listens on (after start)."""
        if self.listener.listening is None:
            raise RuntimeError("the HTTP service is not listening")
        return int(self.listener.listening.getHost().port)


def ensure_operator_token(state_dir: Path) -> str:
    """The operator API token in ``<state_dir>/operator-api.token`` (mode 0600), made once."""
    path = Path(state_dir) / OPERATOR_TOKEN_FILE
    if path.exists():
        token = path.read_text().strip()
        if token:
            return token
    token = secrets.token_urlsafe(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return token


@dataclass
class ApiParts:
    """The API's pieces for a server that has its own HTTP site (``dispatcher.app``).

    ``service`` (read pool + alert service) joins the server tree before the site listens;
    ``resource`` is mounted as the root's ``api`` child; the site should be built with
    ``requestFactory=request_factory`` so bodies over the limit are never buffered.
    """

    service: MultiService
    alerts: AlertService
    reads: ReadPool
    resource: Resource
    request_factory: type[ApiRequest]


def make_api(reactor: Any, center: Center, writer: Any, sessions: sessionmaker[Session],
             ami: Any = None, *, settings: AlertSettings | None = None,
             operator_token: str | None = None, hotline: Any = None) -> ApiParts:
    """Build the API's services and its ``/api`` resource (see the module docstring).

    ``operator_token`` None leaves operator endpoints to loopback callers without a token;
    pass ``ensure_operator_token(center.state_dir)`` to require one as well. ``hotline``
    (a ``dispatcher.hotline.HotlineService``) adds ``/callbacks``.
    """
    reads = ReadPool(reactor, sessions)
    alerts = AlertService(
        reactor, writer.submit, reads.run, ami, settings,
        buttons=[(b.extension, b.name, b.lat, b.lon) for b in center.buttons],
        panic_number=center.panic_number,
    )
    service = MultiService()
    reads.setServiceParent(service)
    alerts.setServiceParent(service)
    request_class = type("SizedApiRequest", (ApiRequest,),
                         {"max_body": alerts.settings.max_body_bytes})
    return ApiParts(service, alerts, reads, build_api(alerts, operator_token, hotline),
                    request_class)


def make_http_service(reactor: Any, center: Center, writer: Any, sessions: sessionmaker[Session],
                      ami: Any = None, *, settings: AlertSettings | None = None,
                      operator_token: str | None = None, port: int | None = None,
                      host: str | None = None) -> HttpService:
    """The API served on a site of its own (``make_api`` plus a listener).

    ``port`` and ``host`` override ``center.http`` (tests pass port 0).
    """
    parts = make_api(reactor, center, writer, sessions, ami, settings=settings,
                     operator_token=operator_token)
    root = JsonResource()
    root.putChild(b"api", parts.resource)
    base = parts.request_factory

    class JsonOnlyRequest(base):  # type: ignore[valid-type,misc]
        """This site serves JSON only: no HTML form parsing, which parses Content-Type with
        the email package on every POST (a third of the reactor's time per alert)."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["parsePOSTFormSubmission"] = False
            super().__init__(*args, **kwargs)

    site = ApiSite(root, requestFactory=JsonOnlyRequest, reactor=reactor)
    site.displayTracebacks = False
    site.noisy = False
    listener = _Listener(reactor, site, host if host is not None else center.http.host,
                         port if port is not None else center.http.port)
    return HttpService(parts.reads, parts.alerts, listener)
