"""The self-test's two lifecycles as explicit ``(state, input) -> (effect, next)`` tables.

The *schedule* says whether a test call is running::

    idle ──tick──► running (START a probe)        running ──tick──► running (SKIP: still busy)
      ▲                                              │
      └───────────────passed / failed────────────────┘ (RECORD the result)

The *health* says what the results mean; two failures in a row raise the alarm, and the
first pass after it clears it::

    unknown/passing ──failed──► failing ──failed──► alarm (RAISE) ──failed──► alarm
          ▲                       │                   │
          └──────passed───────────┘◄──passed (CLEAR)──┘

A pair missing from a table raises :class:`InvalidTransition` (a result with no test running
is a bug, never silently accepted). :class:`SelfTestMonitor` is the sans-IO core: inputs in,
effects out; no clock, no reactor, no process (see :mod:`dispatcher.selftest.service`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "HEALTH",
    "SCHEDULE",
    "Effect",
    "Health",
    "InvalidTransition",
    "Outcome",
    "Run",
    "SelfTestMonitor",
]


class Run(StrEnum):
    """Whether a test call is in progress."""

    IDLE = "idle"
    RUNNING = "running"


class Health(StrEnum):
    """What the latest results say about the hotline."""

    UNKNOWN = "unknown"  # no test finished yet
    PASSING = "passing"
    FAILING = "failing"  # one failure: could be a glitch, not yet an alarm
    ALARM = "alarm"  # two or more failures in a row


class Outcome(StrEnum):
    """What can happen to the schedule and the health."""

    TICK = "tick"  # the interval elapsed
    PASSED = "passed"
    FAILED = "failed"


class Effect(StrEnum):
    """What the edge must do."""

    NONE = "none"
    START = "start"  # place a test call
    SKIP = "skip"  # the previous one still runs: log it, start nothing
    RECORD = "record"  # keep the result in the call log
    RAISE = "raise"  # raise the alarm
    CLEAR = "clear"  # clear the alarm


class InvalidTransition(Exception):
    """An input that makes no sense in the current state."""


SCHEDULE: dict[tuple[Run, Outcome], tuple[Effect, Run]] = {
    (Run.IDLE, Outcome.TICK): (Effect.START, Run.RUNNING),
    (Run.RUNNING, Outcome.TICK): (Effect.SKIP, Run.RUNNING),
    (Run.RUNNING, Outcome.PASSED): (Effect.RECORD, Run.IDLE),
    (Run.RUNNING, Outcome.FAILED): (Effect.RECORD, Run.IDLE),
}

HEALTH: dict[tuple[Health, Outcome], tuple[Effect, Health]] = {
    (Health.UNKNOWN, Outcome.PASSED): (Effect.NONE, Health.PASSING),
    (Health.UNKNOWN, Outcome.FAILED): (Effect.NONE, Health.FAILING),
    (Health.PASSING, Outcome.PASSED): (Effect.NONE, Health.PASSING),
    (Health.PASSING, Outcome.FAILED): (Effect.NONE, Health.FAILING),
    (Health.FAILING, Outcome.PASSED): (Effect.NONE, Health.PASSING),
    (Health.FAILING, Outcome.FAILED): (Effect.RAISE, Health.ALARM),
    (Health.ALARM, Outcome.FAILED): (Effect.NONE, Health.ALARM),
    (Health.ALARM, Outcome.PASSED): (Effect.CLEAR, Health.PASSING),
}


def _step(table: dict, state: StrEnum, outcome: Outcome) -> tuple[Effect, StrEnum]:
    try:
        return table[(state, outcome)]
    except KeyError:
        raise InvalidTransition(f"{outcome.value} while {state.value}") from None


@dataclass
class SelfTestMonitor:
    """The schedule and the health together. ``tick()`` when the interval elapses,
    ``finished(ok, at)`` when a test call ends; each returns the effects to carry out, in
    order. ``at`` is the caller's clock; the monitor only keeps it."""

    run: Run = Run.IDLE
    health: Health = Health.UNKNOWN
    failures_in_row: int = 0
    last_ok: bool | None = None
    last_at: float | None = None
    alarm_since: float | None = None

    def tick(self) -> list[Effect]:
        """The interval elapsed: START a test, or SKIP if one still runs."""
        effect, self.run = _step(SCHEDULE, self.run, Outcome.TICK)
        return [effect]

    def finished(self, ok: bool, at: float) -> list[Effect]:
        """The running test ended (``ok``: every stage passed) at time ``at``."""
        outcome = Outcome.PASSED if ok else Outcome.FAILED
        record, run = _step(SCHEDULE, self.run, outcome)
        change, health = _step(HEALTH, self.health, outcome)
        self.run, self.health = run, health
        self.last_ok, self.last_at = ok, at
        self.failures_in_row = 0 if ok else self.failures_in_row + 1
        if change is Effect.RAISE:
            self.alarm_since = at
        elif change is Effect.CLEAR:
            self.alarm_since = None
        return [record] if change is Effect.NONE else [record, change]

    @property
    def alarm(self) -> bool:
        """Whether the alarm is raised."""
        return self.health is Health.ALARM
