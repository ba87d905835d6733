"""The HTTP API's pieces for a server: :func:`make_api`, and :func:`make_http_service` for
the API served alone (``dispatcher.api.standalone``).

The API builds no feature: the server's builder (``dispatcher.app``) or the standalone entry
point makes the alert service and the hotline's and passes them in; the API turns requests
into calls to them and their refusals into HTTP (``dispatcher.api.errors``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.web.resource import Resource
from twisted.web.server import Site

from dispatcher.alerts.service import AlertService
from dispatcher.api.base import ApiRequest, JsonResource
from dispatcher.api.resources import build_api
from dispatcher.credentials import OPERATOR_TOKEN_FILE, ensure_operator_token

__all__ = [
    "OPERATOR_TOKEN_FILE",
    "ApiParts",
    "HttpListener",
    "ensure_operator_token",
    "make_api",
    "make_http_service",
]


class HttpListener(Service):
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

    @property
    def port(self) -> int:
        """The TCP port the API listens on (after start)."""
        if self.listening is None:
            raise RuntimeError("the HTTP service is not listening")
        return int(self.listening.getHost().port)


class ApiSite(Site):
    """The API's own site. No access log line per request: at a thousand alerts a second
    it would cost more than the alerts; refusals and failures are logged where they occur."""

    def log(self, request: Any) -> None:
        """No access log."""


@dataclass
class ApiParts:
    """The API for a server that has its own HTTP site (``dispatcher.app``): ``resource``
    is mounted as the root's ``api`` child; the site is built with
    ``requestFactory=request_factory`` so bodies over the limit are never buffered."""

    resource: Resource
    request_factory: type[ApiRequest]


def make_api(alerts: AlertService, operator_token: str | None = None,
             hotline: Any = None) -> ApiParts:
    """The ``/api`` resource over ``alerts`` (and ``hotline``: ``/callbacks``).

    ``operator_token`` None leaves operator endpoints to loopback callers without a token;
    pass ``ensure_operator_token(center.state_dir)`` to require one as well. ``hotline``
    (a ``dispatcher.hotline.HotlineService``) adds ``/callbacks``.
    """
    request_class = type("SizedApiRequest", (ApiRequest,),
                         {"max_body": alerts.settings.max_body_bytes})
    return ApiParts(build_api(alerts, operator_token, hotline), request_class)


def make_http_service(reactor: Any, alerts: AlertService, host: str, port: int,
                      operator_token: str | None = None) -> HttpListener:
    """The API served on a site of its own, listening on ``host:port`` (0: a free port).

    ``alerts`` is started by whoever built it, before this listener (it joins the same
    service tree first)."""
    parts = make_api(alerts, operator_token)
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
    return HttpListener(reactor, site, host, port)
