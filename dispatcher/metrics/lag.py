"""How late the reactor runs what it scheduled: a blocked reactor thread delays every call,
AMI event and HTTP answer, so this is the server's own health figure.

A ``LoopingCall`` asks to run every ``interval`` seconds; each run records how much later than
asked it ran. ``/metrics`` exports the latest and the largest lag since the server started.
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import Service
from twisted.internet.task import LoopingCall


class ReactorLag(Service):
    """Measures reactor lag on ``clock`` (an ``IReactorTime``) every ``interval`` seconds."""

    def __init__(self, clock: Any, interval: float = 0.1) -> None:
        self.clock = clock
        self.interval = interval
        self.latest = 0.0  # seconds the latest tick ran late
        self.max = 0.0  # the largest lag seen since start
        self._expected: float | None = None
        self._loop = LoopingCall(self._tick)
        self._loop.clock = clock

    def startService(self) -> None:  # noqa: N802
        """Start ticking."""
        super().startService()
        self._expected = None
        self._loop.start(self.interval, now=True)

    def stopService(self) -> None:  # noqa: N802
        """Stop ticking."""
        super().stopService()
        if self._loop.running:
            self._loop.stop()

    def _tick(self) -> None:
        now = self.clock.seconds()
        if self._expected is not None:
            self.latest = max(0.0, now - self._expected)
            self.max = max(self.max, self.latest)
        self._expected = now + self.interval
