"""The self-test's tables and service: schedule and health as pure transitions, and the
service driven by a ``task.Clock`` with a fake probe (the real one runs in the e2e tests)."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet import defer, task

from dispatcher.selftest.machine import (
    HEALTH,
    SCHEDULE,
    Effect,
    Health,
    InvalidTransition,
    Outcome,
    Run,
    SelfTestMonitor,
)
from dispatcher.selftest.runner import ProbeReport
from dispatcher.selftest.service import FIRST_TEST_AFTER, SelfTestService
from dispatcher.selftest.settings import SelfTest

INTERVAL = 60.0


def test_given_every_health_when_a_result_arrives_then_the_table_has_an_answer() -> None:
    """Each health state takes both results; only (failing, failed) raises and only
    (alarm, passed) clears."""
    for health in Health:
        if health is Health.UNKNOWN:
            continue
        for outcome in (Outcome.PASSED, Outcome.FAILED):
            assert (health, outcome) in HEALTH
    raises = [k for k, (effect, _s) in HEALTH.items() if effect is Effect.RAISE]
    clears = [k for k, (effect, _s) in HEALTH.items() if effect is Effect.CLEAR]
    assert raises == [(Health.FAILING, Outcome.FAILED)]
    assert clears == [(Health.ALARM, Outcome.PASSED)]


def test_given_no_test_running_when_a_result_arrives_then_invalid_transition() -> None:
    """A result with no test call running is a bug, never accepted silently."""
    monitor = SelfTestMonitor()
    with pytest.raises(InvalidTransition):
        monitor.finished(True, 1.0)
    assert (Run.IDLE, Outcome.PASSED) not in SCHEDULE


def test_given_two_failures_in_a_row_when_finished_then_raise_once_and_clear_on_a_pass() -> None:
    """fail, fail → RAISE; fail again → nothing new; pass → CLEAR; a single failure between
    passes never raises."""
    monitor = SelfTestMonitor()
    effects = []
    for ok, at in [(True, 1), (False, 2), (True, 3), (False, 4), (False, 5), (False, 6),
                   (True, 7)]:
        assert monitor.tick() == [Effect.START]
        effects.append(monitor.finished(ok, at))
    assert effects == [[Effect.RECORD], [Effect.RECORD], [Effect.RECORD], [Effect.RECORD],
                       [Effect.RECORD, Effect.RAISE], [Effect.RECORD],
                       [Effect.RECORD, Effect.CLEAR]]
    assert monitor.health is Health.PASSING and monitor.alarm_since is None


def test_given_a_test_running_when_the_interval_elapses_then_skip() -> None:
    """A slow test call is never doubled: the next tick is skipped."""
    monitor = SelfTestMonitor()
    assert monitor.tick() == [Effect.START]
    assert monitor.tick() == [Effect.SKIP]
    assert monitor.run is Run.RUNNING


class FakeProbe:
    """Test calls that end when the test says (each call returns a new Deferred)."""

    def __init__(self) -> None:
        self.pending: list[defer.Deferred[ProbeReport]] = []
        self.cancelled = 0

    def __call__(self) -> defer.Deferred[ProbeReport]:
        d: defer.Deferred[ProbeReport] = defer.Deferred(lambda _d: self._cancel())
        self.pending.append(d)
        return d

    def _cancel(self) -> None:
        self.cancelled += 1

    def finish(self, clock: task.Clock, ok: bool, stage: str = "done") -> None:
        d = self.pending.pop(0)
        d.callback(ProbeReport(ok, stage, None if ok else f"failed at {stage}",
                               clock.seconds() - 5, clock.seconds()))


class FakeNotifier:
    def __init__(self) -> None:
        self.documents: list[dict[str, Any]] = []

    def notify(self, document: dict[str, Any]) -> defer.Deferred[dict[str, str]]:
        self.documents.append(document)
        return defer.succeed({})


def service(clock: task.Clock) -> tuple[SelfTestService, FakeProbe, FakeNotifier, list]:
    probe, notifier, recorded = FakeProbe(), FakeNotifier(), []
    svc = SelfTestService(clock, SelfTest(every_minutes=INTERVAL / 60), probe,
                          record=lambda r: recorded.append(r), notifier=notifier)
    svc.startService()
    return svc, probe, notifier, recorded


def test_given_a_started_service_when_the_clock_runs_then_a_test_call_every_interval() -> None:
    """The first call comes after FIRST_TEST_AFTER (or one interval, if shorter), then one
    per interval; each result is recorded."""
    clock = task.Clock()
    svc, probe, _notifier, recorded = service(clock)
    clock.advance(min(FIRST_TEST_AFTER, INTERVAL) - 0.1)
    assert probe.pending == []
    clock.advance(0.1)
    assert len(probe.pending) == 1
    probe.finish(clock, True)
    clock.advance(INTERVAL)
    assert len(probe.pending) == 1
    probe.finish(clock, True)
    assert [r.ok for r in recorded] == [True, True]
    assert svc.status()["last_ok"] is True and svc.runs == 2


def test_given_a_hotline_that_breaks_when_two_calls_fail_then_alarm_within_two_intervals_and_clear(  # noqa: E501
) -> None:
    """Broken right after a pass: the alarm is up by the end of the second test call after
    it (two intervals), told once to the notifier; the first pass clears it."""
    clock = task.Clock()
    svc, probe, notifier, _recorded = service(clock)
    clock.advance(min(FIRST_TEST_AFTER, INTERVAL))
    probe.finish(clock, True)
    broken_at = clock.seconds()
    clock.advance(INTERVAL)
    probe.finish(clock, False, "audio")
    assert not svc.status()["alarm"]
    clock.advance(INTERVAL)
    probe.finish(clock, False, "audio")
    status = svc.status()
    assert status["alarm"] and status["stage"] == "audio"
    assert clock.seconds() - broken_at <= 2 * INTERVAL
    assert [d["alarm"] for d in notifier.documents] == ["raised"]
    clock.advance(INTERVAL)
    probe.finish(clock, False, "audio")
    assert [d["alarm"] for d in notifier.documents] == ["raised"]
    clock.advance(INTERVAL)
    probe.finish(clock, True)
    assert not svc.status()["alarm"]
    assert [d["alarm"] for d in notifier.documents] == ["raised", "cleared"]


def test_given_a_slow_test_call_when_the_next_is_due_then_none_is_started() -> None:
    """One test call at a time: a tick while one runs starts nothing."""
    clock = task.Clock()
    _svc, probe, _notifier, _recorded = service(clock)
    clock.advance(min(FIRST_TEST_AFTER, INTERVAL))
    clock.advance(INTERVAL)
    assert len(probe.pending) == 1


def test_given_a_test_call_running_when_the_server_stops_then_it_is_cancelled_and_not_recorded(
) -> None:
    """Stopping the service kills the running probe; no result is made up for it."""
    clock = task.Clock()
    svc, probe, _notifier, recorded = service(clock)
    clock.advance(min(FIRST_TEST_AFTER, INTERVAL))
    svc.stopService()
    assert probe.cancelled == 1 and recorded == []
    clock.advance(INTERVAL * 3)
    assert len(probe.pending) == 1  # the cancelled one only; the loop stopped


def test_given_a_runner_that_raises_when_started_then_the_test_counts_as_failed() -> None:
    """A probe that cannot even start is a failed test (two of them raise the alarm)."""
    clock = task.Clock()
    notifier = FakeNotifier()

    def broken() -> defer.Deferred[ProbeReport]:
        raise OSError("no python")

    svc = SelfTestService(clock, SelfTest(every_minutes=INTERVAL / 60), broken,
                          notifier=notifier)
    svc.startService()
    clock.advance(min(FIRST_TEST_AFTER, INTERVAL))
    clock.advance(INTERVAL)
    assert svc.status()["alarm"] and svc.status()["stage"] == "crashed"
    assert "no python" in svc.status()["error"]
