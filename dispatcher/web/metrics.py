"""``GET /metrics``: Prometheus' text format, for configured addresses or a bearer token.

Who may scrape is the metrics feature's rule (:func:`dispatcher.metrics.access.refusal`);
a refusal is a JSON 403 with its reason, like every other error of the site.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import resource, server
from twisted.web.iweb import IRequest

from dispatcher.api.errors import error_body
from dispatcher.config.model import MetricsAccess
from dispatcher.metrics.access import refusal
from dispatcher.metrics.collector import CenterCollector, Sources, TodayReader

__all__ = ["MetricsResource"]

# The text format generate_latest writes, in the type every Prometheus version reads (the
# library's newest constant names 1.0.0, which Prometheus 2 scrapers do not announce).
CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"


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
