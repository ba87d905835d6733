"""The HTTP site's guard against connection floods and slow clients.

:class:`GuardedSite` is a ``twisted.web.server.Site`` that

* caps concurrent connections, in total and per source address: one more is answered a short
  503 and closed, before any HTTP parsing (so a flood of idle sockets from one address cannot
  take the file descriptors the console, the wallboard and the panic-button apps need);
* gives each request ``request_seconds`` to arrive whole, headers and body, from its first
  byte (from the connection's start for the first request). Twisted's own ``timeOut`` is an
  idle timeout that every byte resets, so a slow-loris client sending one header byte every
  few seconds would hold its connection for ever; this deadline does not move;
* closes connections idle for ``idle_seconds`` between requests (Twisted's ``timeOut``).

It is the factory to listen with, over TCP or TLS alike (TLS wraps it and still builds one
channel per connection through :meth:`GuardedSite.buildProtocol`).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IAddress, IDelayedCall
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.web import http, server
from twisted.web.resource import Resource

from dispatcher.api.errors import error_body
from dispatcher.config.model import HttpLimits

__all__ = ["GuardedChannel", "GuardedSite", "HttpLimits"]


def _response(status: bytes, code: str, reason: str) -> bytes:
    body = error_body(code, reason)
    return (b"HTTP/1.1 " + status + b"\r\nContent-Type: application/json; charset=utf-8\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n"
            + body)


BUSY = _response(b"503 Service Unavailable", "too_many_connections",
                 "too many connections; close some and retry")
TOO_SLOW = _response(b"408 Request Timeout", "request_timeout",
                     "the request did not arrive in time")


class _Refused(Protocol):
    """Says 503 and hangs up: a connection over the limits."""

    def connectionMade(self) -> None:  # noqa: N802 -- Twisted's name
        self.transport.write(BUSY)
        self.transport.loseConnection()


class GuardedChannel(http.HTTPChannel):
    """An HTTP channel whose requests must arrive whole within the site's deadline."""

    log = Logger()
    source: str = "?"
    _deadline: IDelayedCall | None = None
    _abort: IDelayedCall | None = None
    _started = False  # a byte of the current request has arrived

    def connectionMade(self) -> None:  # noqa: N802 -- Twisted's name
        super().connectionMade()
        self._start_deadline()

    def dataReceived(self, data: bytes) -> None:  # noqa: N802 -- Twisted's name
        # The first byte of a request after the previous one was answered starts its clock.
        if self._deadline is None and not self._handlingRequest:
            self._start_deadline()
        self._started = self._started or not self._handlingRequest
        super().dataReceived(data)

    def allContentReceived(self) -> None:  # noqa: N802 -- Twisted's name
        # The request is all here: how long the answer takes is the server's business.
        self._stop_deadline()
        self._started = False
        super().allContentReceived()

    def connectionLost(self, reason: Any) -> None:  # noqa: N802 -- Twisted's name
        self._stop_deadline()
        if self._abort is not None and self._abort.active():
            self._abort.cancel()
        site = getattr(self, "site", None)
        if isinstance(site, GuardedSite):
            site.closed(self.source)
        super().connectionLost(reason)

    def _start_deadline(self) -> None:
        site = getattr(self, "site", None)
        if isinstance(site, GuardedSite) and site.limits.request_seconds > 0:
            self._deadline = self.callLater(site.limits.request_seconds, self._too_slow)

    def _stop_deadline(self) -> None:
        if self._deadline is not None:
            if self._deadline.active():
                self._deadline.cancel()
            self._deadline = None

    def _too_slow(self) -> None:
        self._deadline = None
        if not self._started:
            # Nothing sent at all: browsers open spare connections ahead of need, and would
            # read a 408 written now as the answer to the request they send next. Closing
            # an unused connection silently makes them retry on a fresh one.
            self.loseConnection()
            return
        self.log.info("HTTP client {source} too slow to send its request: dropped",
                      source=self.source)
        self.transport.write(TOO_SLOW)
        # loseConnection waits for the write buffer; a client that does not read could hold
        # that too, so abort if it is not gone shortly after.
        self.loseConnection()
        self._abort = self.callLater(2.0, self.transport.abortConnection)


class GuardedSite(server.Site):
    """A Site with connection caps and request deadlines (see the module docstring)."""

    protocol = GuardedChannel  # type: ignore[assignment]
    _log = Logger()

    def __init__(self, resource: Resource, limits: HttpLimits | None = None,
                 **kwargs: Any) -> None:
        self.limits = limits or HttpLimits()
        super().__init__(resource, timeout=self.limits.idle_seconds, **kwargs)
        self.open_connections = 0
        self.by_source: dict[str, int] = {}
        self.refused = 0

    def buildProtocol(self, addr: IAddress) -> Protocol | None:  # noqa: N802 -- Twisted's
        """A channel for ``addr``, or a 503 when the site or the source has too many."""
        source = str(getattr(addr, "host", "?"))
        if (self.open_connections >= self.limits.connections
                or self.by_source.get(source, 0) >= self.limits.connections_per_source):
            self.refused += 1
            if self.refused == 1 or self.refused % 1000 == 0:
                self._log.warn("HTTP connections refused ({refused} so far; latest from "
                              "{source}): over the limits", refused=self.refused, source=source)
            refused = _Refused()
            refused.factory = self
            return refused
        channel = super().buildProtocol(addr)
        channel.source = source  # type: ignore[union-attr]
        self.open_connections += 1
        self.by_source[source] = self.by_source.get(source, 0) + 1
        return channel

    def closed(self, source: str) -> None:
        """A channel of ``source`` is gone."""
        self.open_connections -= 1
        left = self.by_source.get(source, 0) - 1
        if left > 0:
            self.by_source[source] = left
        else:
            self.by_source.pop(source, None)
