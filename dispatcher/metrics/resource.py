"""``GET /metrics``: Prometheus' text format, for configured addresses or a bearer token.

The client's address is the TCP peer's: a ``X-Forwarded-For`` header is not believed (anyone
could send one). A refusal is a JSON 403 with its reason, like every other error of the site.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from twisted.internet import defer, threads
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool
from twisted.web import resource, server
from twisted.web.iweb import IRequest

from dispatcher.api.errors import error_body
from dispatcher.calllog.db import transaction
from dispatcher.config import MetricsAccess
from dispatcher.metrics.collector import CenterCollector, Sources, today_summary

__all__ = ["MetricsResource", "refusal", "today_reader"]

# The text format generate_latest writes, in the type every Prometheus version reads (the
# library's newest constant names 1.0.0, which Prometheus 2 scrapers do not announce).
CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"
TodayReader = Callable[[], "defer.Deferred[dict[str, Any] | None]"]


def refusal(access: MetricsAccess, host: str | None, authorization: bytes | None
            ) -> str | None:
    """Why a scrape from ``host`` with this ``Authorization`` header is refused, or None."""
    if access.token is not None and authorization is not None:
        scheme, _, given = authorization.partition(b" ")
        if scheme.lower() == b"bearer" and hmac.compare_digest(
                given.strip(), access.token.encode()):
            return None
    try:
        address = ipaddress.ip_address((host or "").split("%")[0])
    except ValueError:
        address = None
    if address is not None:
        if getattr(address, "ipv4_mapped", None) is not None:
            address = address.ipv4_mapped  # type: ignore[union-attr]
        if any(address in net for net in access.allow):
            return None
    if access.token is not None:
        return "metrics are served to configured addresses or with the bearer token"
    return "metrics are served to configured addresses only"


def today_reader(reactor: Any, pool: ThreadPool, sessions: Any,
                 clock: Callable[[], float]) -> TodayReader:
    """Reads today's summary in ``pool`` (never on the reactor thread)."""
    def read() -> defer.Deferred[dict[str, Any] | None]:
        now = clock()

        def work() -> dict[str, Any]:
            with transaction(sessions) as session:
                return today_summary(session, now)

        return threads.deferToThreadPool(reactor, pool, work)

    return read


class MetricsResource(resource.Resource):
    """The ``/metrics`` page (see the module docstring)."""

    isLeaf = True
    log = Logger()

    def __init__(self, access: MetricsAccess, sources: Sources, read_today: TodayReader
                 ) -> None:
        super().__init__()
        self.access = access
        self.sources = sources
        self.read_today = read_today

    def render_GET(self, request: IRequest) -> bytes | int:  # noqa: N802
        address = request.getClientAddress()
        why = refusal(self.access, getattr(address, "host", None),
                      request.getHeader(b"authorization"))
        if why is not None:
            request.setResponseCode(403)
            request.setHeader(b"Content-Type", b"application/json; charset=utf-8")
            return error_body("forbidden", why)
        gone: list[bool] = []
        request.notifyFinish().addErrback(lambda _f: gone.append(True))

        def unreadable(failure: Failure) -> None:
            self.log.failure("metrics: today's figures could not be read", failure)
            return None

        def respond(today: dict[str, Any] | None) -> None:
            # The live parts are read here, on the reactor thread, after the database read.
            registry = CollectorRegistry(auto_describe=False)
            registry.register(CenterCollector(self.sources, today))
            body = generate_latest(registry)
            if gone:
                return
            request.setHeader(b"Content-Type", CONTENT_TYPE)
            request.setHeader(b"Cache-Control", b"no-store")
            request.write(body)
            request.finish()

        def failed(failure: Failure) -> None:
            self.log.failure("metrics: scrape failed", failure)
            if gone:
                return
            request.setResponseCode(500)
            request.setHeader(b"Content-Type", b"application/json; charset=utf-8")
            request.write(error_body("metrics_failed", "the metrics could not be computed; "
                                     "see the server log"))
            request.finish()

        d = self.read_today()
        d.addErrback(unreadable)
        d.addCallback(respond)
        d.addErrback(failed)
        return server.NOT_DONE_YET
