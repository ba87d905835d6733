"""The operators' notification feed: every new incident and state change, in order.

The console (and the benchmark) long-polls ``GET /api/v1/incidents/feed?after=N``: the answer
comes at once when there are newer events, else when one arrives or the wait ends. Events are
numbered from 1 in this process's life; the last ``keep`` are kept, older ones are in the
database (``GET /api/v1/incidents/{id}``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

__all__ = ["IncidentFeed"]

log = Logger(namespace="dispatcher.alerts.feed")


class IncidentFeed:
    """A bounded, numbered list of incident events with long-poll waiters."""

    def __init__(self, clock: IReactorTime, keep: int = 20_000, max_batch: int = 500) -> None:
        self.clock = clock
        self.keep = keep
        self.max_batch = max_batch
        self.events: deque[dict[str, Any]] = deque(maxlen=keep)
        self.last = 0
        self._waiters: list[tuple[int, Deferred[list[dict[str, Any]]], Any]] = []
        #: Told of every event as it is published (the pages' push channel).
        self.listeners: list[Callable[[dict[str, Any]], object]] = []

    def publish(self, incident_id: int, state: str, event: str, **extra: Any) -> int:
        """Add an event; wake the waiters. Returns its number."""
        self.last += 1
        item = {"seq": self.last, "at": self.clock.seconds(), "incident_id": incident_id,
                "state": state, "event": event, **extra}
        self.events.append(item)
        for listener in self.listeners:
            try:
                listener(item)
            except Exception:
                log.failure("incident feed listener failed on {seq}", seq=self.last)
        waiters, self._waiters = self._waiters, []
        for after, d, timer in waiters:
            if timer.active():
                timer.cancel()
            d.callback(self.since(after))
        return self.last

    def since(self, after: int) -> list[dict[str, Any]]:
        """Events numbered after ``after`` (at most ``max_batch``, oldest first)."""
        if after >= self.last or not self.events:
            return []
        first = self.events[0]["seq"]
        start = max(0, after + 1 - first)
        out = []
        for i in range(start, min(len(self.events), start + self.max_batch)):
            out.append(self.events[i])
        return out

    def wait(self, after: int, timeout: float) -> Deferred[list[dict[str, Any]]]:
        """Events after ``after``: now if any, else the next ones, else [] after ``timeout``."""
        ready = self.since(after)
        if ready or timeout <= 0:
            return succeed(ready)
        d: Deferred[list[dict[str, Any]]] = Deferred(self._cancel_waiter)
        timer = self.clock.callLater(timeout, self._expire, d)
        self._waiters.append((after, d, timer))
        return d

    def _expire(self, d: Deferred[list[dict[str, Any]]]) -> None:
        self._waiters = [w for w in self._waiters if w[1] is not d]
        d.callback([])

    def _cancel_waiter(self, d: Deferred[list[dict[str, Any]]]) -> None:
        for w in self._waiters:
            if w[1] is d and w[2].active():
                w[2].cancel()
        self._waiters = [w for w in self._waiters if w[1] is not d]
