"""The self-test's edge: the clock ticks, the probe runs, the effects are carried out.

:class:`SelfTestService` feeds :class:`~dispatcher.selftest.machine.SelfTestMonitor` and does
what it answers: START spawns a test call (``run``), RECORD keeps the result (``record``),
RAISE and CLEAR log, tell the ``notifier`` (command, webhook) and change :meth:`status`,
which the wallboard, the console and ``/metrics`` read.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from dispatcher.selftest.machine import Effect, SelfTestMonitor
from dispatcher.selftest.runner import ProbeReport
from dispatcher.selftest.settings import SelfTest

__all__ = ["FIRST_TEST_AFTER", "SelfTestService"]

# A center just started tests itself this soon (or after one interval, if shorter), rather
# than leaving a broken hotline unnoticed for a whole interval.
FIRST_TEST_AFTER = 30.0


class SelfTestService(Service):
    """Calls the hotline every ``settings.interval`` seconds of ``clock``.

    ``run()`` starts one test call and returns a Deferred firing with a ProbeReport
    (cancelling it stops the call); ``record(report)`` keeps it (a Deferred, or None);
    ``notifier`` has ``notify(document) -> Deferred``; ``wall`` gives epoch seconds.
    """

    log = Logger()

    def __init__(self, clock: IReactorTime, settings: SelfTest,
                 run: Callable[[], Deferred[ProbeReport]],
                 record: Callable[[ProbeReport], Deferred[Any] | None] | None = None,
                 notifier: Any = None, wall: Callable[[], float] | None = None) -> None:
        self.clock = clock
        self.settings = settings
        self.run = run
        self.record = record
        self.notifier = notifier
        self.wall = wall or clock.seconds
        self.monitor = SelfTestMonitor()
        self.last: ProbeReport | None = None
        self.runs = 0
        self.failures = 0
        self._loop: LoopingCall | None = None
        self._first: Any = None
        self._running: Deferred[ProbeReport] | None = None
        self.notified: list[Deferred[Any]] = []  # the notifier's Deferreds (tests wait on them)

    # -- lifecycle -------------------------------------------------------------------------

    def startService(self) -> None:  # noqa: N802 - Twisted's name
        """Schedule the first test, then one every interval."""
        super().startService()
        self._loop = LoopingCall(self.tick)
        self._loop.clock = self.clock
        first = min(FIRST_TEST_AFTER, self.settings.interval)
        self._first = self.clock.callLater(first, self._start_loop)

    def _start_loop(self) -> None:
        assert self._loop is not None
        self._loop.start(self.settings.interval, now=True)

    def stopService(self) -> None:  # noqa: N802 - Twisted's name
        """Stop ticking and end a test call still running (its child is killed)."""
        super().stopService()
        if self._first is not None and self._first.active():
            self._first.cancel()
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        if self._running is not None:
            self._running.cancel()

    # -- the machine's inputs ----------------------------------------------------------------

    def tick(self) -> None:
        """The interval elapsed: start a test call unless one still runs."""
        for effect in self.monitor.tick():
            if effect is Effect.START:
                self._start()
            elif effect is Effect.SKIP:
                self.log.warn("self-test: the previous test call still runs; none started")

    def _start(self) -> None:
        self.runs += 1
        try:
            d = self.run()
        except Exception:  # noqa: BLE001 - a test that cannot start is a failed test
            failure = Failure()
            now = self.wall()
            d = Deferred()
            d.callback(ProbeReport(False, "crashed", f"cannot start: {failure.value!r}",
                                   now, now))
        self._running = d
        d.addCallbacks(self._finished, self._broken)

    def _broken(self, failure: Failure) -> None:
        self._running = None
        if failure.check(CancelledError):
            return None  # stopped with the server: no result
        now = self.wall()
        self.log.failure("self-test: the probe runner failed", failure)
        self._finished(ProbeReport(False, "crashed", repr(failure.value)[:500], now, now))
        return None

    def _finished(self, report: ProbeReport) -> None:
        self._running = None
        self.last = report
        if report.ok:
            self.log.info("self-test passed in {s:.1f} s", s=report.duration)
        else:
            self.failures += 1
            self.log.warn("self-test failed at stage {stage}: {error}", stage=report.stage,
                          error=report.error)
        for effect in self.monitor.finished(report.ok, report.finished_at):
            if effect is Effect.RECORD:
                self._record(report)
            elif effect is Effect.RAISE:
                self.log.error(
                    "SELF-TEST ALARM: the hotline failed {n} test calls in a row; last at "
                    "stage {stage}: {error}", n=self.monitor.failures_in_row,
                    stage=report.stage, error=report.error)
                self._notify("raised", report)
            elif effect is Effect.CLEAR:
                self.log.info("self-test alarm cleared: a test call passed every stage")
                self._notify("cleared", report)

    def _record(self, report: ProbeReport) -> None:
        if self.record is None:
            return
        try:
            d = self.record(report)
        except Exception:  # noqa: BLE001 - the alarm matters more than the log row
            self.log.failure("self-test: cannot record the result")
            return
        if d is not None:
            d.addErrback(lambda f: self.log.failure("self-test: cannot record the result", f))

    def _notify(self, change: str, report: ProbeReport) -> None:
        if self.notifier is None:
            return
        d = self.notifier.notify({**self.status(), "alarm": change})
        self.notified.append(d)
        del self.notified[:-10]

    # -- what the pages and /metrics read ------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """The self-test as the wallboard shows it (plain data; text only)."""
        m = self.monitor
        now = self.wall()
        last = self.last
        return {
            "enabled": True,
            "alarm": m.alarm,
            "health": m.health.value,
            "failures_in_row": m.failures_in_row,
            "last_ok": m.last_ok,
            "last_at": m.last_at,
            "age_s": None if m.last_at is None else max(0.0, round(now - m.last_at, 1)),
            "alarm_since": m.alarm_since,
            "stage": last.stage if last else None,
            "error": last.error if last else None,
            "interval_s": self.settings.interval,
        }
