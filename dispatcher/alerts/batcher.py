"""Group commit of alerts: a 201 only once the alert's batch is durable."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.python.failure import Failure

from dispatcher.alerts import storage
from dispatcher.alerts.auth import DeviceCredentials

__all__ = ["AlertBatcher", "Runner", "failed"]

# ``write(fn, *args)`` / ``read(fn, *args)``: run ``fn(session, *args)`` off the reactor.
Runner = Callable[..., "Deferred[Any]"]


class AlertBatcher:
    """Commits alerts in batches (group commit): whatever arrived while the previous batch
    was being written goes in the next one (``storage.commit_alerts``), and each alert's
    Deferred fires only once its batch is committed, so a 201 is never sent for an alert
    that is not durable. A batch that fails fails every alert in it. A lone alert is written
    at once; under load, batches grow by themselves and the cost per alert falls.
    ``max_batch`` 1 writes one alert per transaction (the benchmark's baseline).

    ``linger`` (seconds, with ``clock``): a batch starts at most once per ``linger``. A
    transaction costs about a millisecond of the writer thread's CPU however few alerts it
    holds, so at a thousand alerts a second batches that start the moment the previous one
    ends stay at one or two alerts and keep the writer thread (and the GIL it shares with
    the reactor) busy all the time. Waiting out the rest of ``linger`` since the last batch
    began lets a few more join: fewer transactions for the same alerts, for at most
    ``linger`` more before a 201. An alert arriving after a quiet spell is written at once,
    and a full batch (``max_batch``) never waits. This is PostgreSQL's ``commit_delay``,
    applied where the batches are made."""

    def __init__(self, write: Runner, now: Callable[[], dt.datetime], max_batch: int = 500,
                 clock: IReactorTime | None = None, linger: float = 0.0) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        if linger < 0 or (linger > 0 and clock is None):
            raise ValueError("linger must be at least 0, and needs a clock")
        self.write = write
        self.now = now
        self.max_batch = max_batch
        self.clock = clock
        self.linger = linger
        self.queue: list[tuple[Any, DeviceCredentials, Deferred[Any]]] = []
        self.in_flight = False
        self.batches = 0
        self._started = float("-inf")  # when the last batch began (clock seconds)
        self._timer: IDelayedCall | None = None

    def add(self, request: Any, device: DeviceCredentials) -> Deferred[storage.AlertReceipt]:
        """Queue an alert; fires with its receipt once committed (or fails)."""
        d: Deferred[storage.AlertReceipt] = Deferred()
        self.queue.append((request, device, d))
        if not self.in_flight:
            self._start_when_due()
        return d

    def _start_when_due(self) -> None:
        if self.clock is None or self.linger == 0 or len(self.queue) >= self.max_batch:
            self._flush()
            return
        wait = self._started + self.linger - self.clock.seconds()
        if wait <= 0:
            self._flush()
        elif self._timer is None:
            self._timer = self.clock.callLater(wait, self._flush)

    def _flush(self) -> None:
        if self._timer is not None:
            if self._timer.active():
                self._timer.cancel()
            self._timer = None
        if self.clock is not None:
            self._started = self.clock.seconds()
        batch, self.queue = self.queue[: self.max_batch], self.queue[self.max_batch:]
        self.in_flight = True
        self.batches += 1
        d = self.write(storage.commit_alerts, [(r, dev) for r, dev, _ in batch], self.now())

        def done(results: list[Any]) -> None:
            for (_, _, waiter), result in zip(batch, results, strict=True):
                if isinstance(result, Exception):
                    waiter.errback(result)
                else:
                    waiter.callback(result)

        def failed(failure: Failure) -> None:
            for _, _, waiter in batch:
                waiter.errback(failure)

        def next_batch(_: object) -> None:
            self.in_flight = False
            if self.queue:
                self._start_when_due()

        d.addCallbacks(done, failed)
        d.addBoth(next_batch)


def failed(exc: Exception) -> Deferred[Any]:
    """A Deferred that has already failed with ``exc``."""
    d: Deferred[Any] = Deferred()
    d.errback(exc)
    return d
