"""Group commit of alerts: a 201 only once the alert's batch is durable."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
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
    ``max_batch`` 1 writes one alert per transaction (the benchmark's baseline)."""

    def __init__(self, write: Runner, now: Callable[[], dt.datetime], max_batch: int = 500
                 ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.write = write
        self.now = now
        self.max_batch = max_batch
        self.queue: list[tuple[Any, DeviceCredentials, Deferred[Any]]] = []
        self.in_flight = False
        self.batches = 0

    def add(self, request: Any, device: DeviceCredentials) -> Deferred[storage.AlertReceipt]:
        """Queue an alert; fires with its receipt once committed (or fails)."""
        d: Deferred[storage.AlertReceipt] = Deferred()
        self.queue.append((request, device, d))
        if not self.in_flight:
            self._flush()
        return d

    def _flush(self) -> None:
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
                self._flush()

        d.addCallbacks(done, failed)
        d.addBoth(next_batch)


def failed(exc: Exception) -> Deferred[Any]:
    """A Deferred that has already failed with ``exc``."""
    d: Deferred[Any] = Deferred()
    d.errback(exc)
    return d
