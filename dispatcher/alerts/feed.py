"""The operators' notification feed: every new incident and state change, in order.

An operator's tool (and the benchmark) long-polls ``GET /api/v1/incidents/feed?after=N``: the
answer comes at once when there are newer events, else when one arrives or the wait ends.
Events are numbered from 1 in the writer's life. They are kept for ``keep_seconds`` (and at
most ``keep`` of them), so the feed's memory follows the event rate, not the uptime; older
ones are in the database (``GET /api/v1/incidents/{id}``). A poller that asks from before the
oldest event kept is told how many it missed (``missed``) instead of silently skipping them.

With intake processes, each intake holds a *mirror* (:meth:`IncidentFeed.mirror`): the
writer sends every published event down the hand-off channel and the intake answers the
long-polls that land on it, from the event after the writer's ``last`` at the mirror's start.
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

    def __init__(self, clock: IReactorTime, keep: int = 20_000, max_batch: int = 500,
                 keep_seconds: float = 300.0) -> None:
        self.clock = clock
        self.keep = keep
        self.max_batch = max_batch
        self.keep_seconds = keep_seconds
        self.events: deque[dict[str, Any]] = deque(maxlen=keep)
        self.last = 0
        #: Events up to this number were never held here (a mirror started after them).
        self.base = 0
        self._waiters: list[tuple[int, Deferred[list[dict[str, Any]]], Any]] = []
        #: Told of every event as it is published (the pages' push channel).
        self.listeners: list[Callable[[dict[str, Any]], object]] = []

    @classmethod
    def mirror(cls, clock: IReactorTime, last: int, **kwargs: Any) -> IncidentFeed:
        """A copy of a writer's feed that starts after its event ``last`` and is filled by
        :meth:`receive`."""
        feed = cls(clock, **kwargs)
        feed.last = feed.base = last
        return feed

    def publish(self, incident_id: int, state: str, event: str, **extra: Any) -> int:
        """Add an event; wake the waiters. Returns its number."""
        item = {"seq": self.last + 1, "at": self.clock.seconds(), "incident_id": incident_id,
                "state": state, "event": event, **extra}
        self._append(item)
        self._wake()
        return self.last

    def receive(self, items: list[dict[str, Any]]) -> None:
        """A mirror's copy of the writer's events ``items``, in order (one already held is
        ignored); the waiters wake once, with all of them."""
        added = False
        for item in items:
            if item["seq"] > self.last:
                self._append(item)
                added = True
        if added:
            self._wake()

    def _append(self, item: dict[str, Any]) -> None:
        self.last = item["seq"]
        self.events.append(item)
        horizon = item["at"] - self.keep_seconds
        while self.events[0]["at"] < horizon:
            self.events.popleft()
        for listener in self.listeners:
            try:
                listener(item)
            except Exception:
                log.failure("incident feed listener failed on {seq}", seq=self.last)

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for after, d, timer in waiters:
            if timer.active():
                timer.cancel()
            d.callback(self.since(after))

    def holds(self, after: int) -> bool:
        """Whether this feed can answer a poller at ``after`` (a mirror cannot answer one
        from before its start: that poller is the writer's)."""
        return after >= self.base

    def missed(self, after: int) -> int:
        """How many events after ``after`` are no longer kept."""
        first = self.events[0]["seq"] if self.events else self.last + 1
        return max(0, min(first - 1, self.last) - max(after, self.base))

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

    def answer(self, after: int, events: list[dict[str, Any]]) -> dict[str, Any]:
        """The feed's JSON document for a poller at ``after`` given ``events``: the events,
        the number to ask after next, and how many events were missed (no longer kept: the
        poller re-reads the incidents it shows)."""
        missed = self.missed(after)
        if events:
            last = events[-1]["seq"]
        else:
            last = self.last if missed else max(after, 0)
        return {"events": events, "last": last, "missed": missed}

    def wait(self, after: int, timeout: float) -> Deferred[list[dict[str, Any]]]:
        """Events after ``after``: now if any, else the next ones, else [] after ``timeout``."""
        ready = self.since(after)
        if ready or timeout <= 0 or self.missed(after):
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
