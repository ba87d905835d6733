"""Missed calls are judged by one rule, whichever way the server learnt of the call.

The same timeline is fed to the live detector (its AMI events) and, as a finished journey, to
the late path (``missed_from_journey``, for calls found in CEL): both must owe the same
callback, field for field, or none.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from dispatcher.calllog import journey
from dispatcher.hotline.callbacks import (
    ABANDONED,
    DROPPED,
    MissedCall,
    MissedCallDetector,
    missed_from_journey,
)
from tests.unit.calllog import calllog_scenarios as sc


def citizen(timeline: sc.Timeline, number: str) -> sc.Timeline:
    """Mark the first channel as the hotline's citizen the way the dialplan does (VarSet
    ``SIAGA_CITIZEN=yes`` at once, AMI's channel headers included)."""
    uid = next(iter(timeline.names))
    timeline.mark(0.0, uid, "CITIZEN", "yes")
    for event in timeline.events:
        if event.get("Uniqueid") == uid:
            event.setdefault("CallerIDNum", number)
    timeline.events.sort(key=lambda e: float(e["Timestamp"]))
    return timeline


def live(timeline: sc.Timeline) -> list[MissedCall]:
    """What the detector owes after the timeline's AMI events."""
    detector = MissedCallDetector()
    out: list[MissedCall] = []
    for event in timeline.ami():
        out += detector.feed(event["Event"], event, float(event["Timestamp"]))
    return out


def late(timeline: sc.Timeline) -> list[MissedCall]:
    """What the journey path owes for the same call found afterwards."""
    found = [missed_from_journey(record, ["112"], now=sc.T0 + 600)
             for record in journey.run(timeline.ami(), sc.DIRECTORY)]
    return [m for m in found if m is not None]


def abandoned_on_local(linkedid: str = "8000.1") -> sc.Timeline:
    """A citizen whose call reached the hotline through a Local channel (another context
    forwarded it), giving up in the queue: no PJSIP endpoint to call back on."""
    tl = sc.Timeline(linkedid, sc.T0)
    tl.channel(0.0, linkedid, "Local/112@public-00000001;2", "0813333", "112")
    tl.answer(0.5, linkedid)
    tl.queue_join(5.0, linkedid)
    tl.queue_abandon(30.0, linkedid)
    tl.end(30.0)
    return tl


SCENARIOS: dict[str, tuple[Callable[[], sc.Timeline], str, str | None]] = {
    "abandoned in the queue": (lambda: sc.abandoned_in_queue(number="0812222"), "0812222",
                               ABANDONED),
    "abandoned in the menu": (lambda: sc.abandoned_in_ivr(number="0811111"), "0811111",
                              ABANDONED),
    "cut 2 s after the answer": (lambda: sc.answered_call(talk=2.0, number="081234567"),
                                 "081234567", DROPPED),
    "a real conversation": (lambda: sc.answered_call(talk=60.0, number="081234567"),
                            "081234567", None),
    "arrived on a Local channel": (abandoned_on_local, "0813333", ABANDONED),
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_given_one_call_when_judged_live_and_late_then_the_same_callback_is_owed(
        name: str) -> None:
    """Live (AMI) and late (journey) agree on reason, number, endpoint, waiting time, talk
    time, category and queue: one rule judges both."""
    make, number, reason = SCENARIOS[name]
    now, then = live(citizen(make(), number)), late(citizen(make(), number))
    assert [m.reason for m in now] == [m.reason for m in then] == (
        [reason] if reason else [])
    for a, b in zip(now, then, strict=True):
        assert (a.number, a.endpoint, a.linkedid, a.waited, a.talked, a.category,
                a.queued) == (b.number, b.endpoint, b.linkedid, b.waited, b.talked,
                              b.category, b.queued)
