"""Which hotline calls are owed a callback: the rules in one pure function, and its two readers.

:func:`judge` decides from a call's facts (:class:`CallFacts`): a hotline call is
**abandoned** when it ended before an operator answered (in the menu or in the queue), and
**dropped** when it ended less than ``dropped_seconds`` after an operator answered without
having been handed to an agency (a blind transfer, a consultation or a conference is not a
drop). Every path that judges a call gathers the facts its own way and asks :func:`judge`:

* :class:`MissedCallDetector`, live: AMI events in (name, fields, the time), a
  :class:`MissedCall` out at the citizen channel's Hangup. The citizen's channel is the one
  the dialplan marks ``SIAGA_CITIZEN=yes`` (set in ``[hotline]`` only).
* :func:`missed_from_journey`, afterwards: a finished journey from the call log (one that
  reached the log only through Asterisk's CEL, while the server was away).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from dialplans import contract
from pbx.channels import endpoint_of

__all__ = [
    "ABANDONED",
    "DEFAULT_DROPPED_SECONDS",
    "DROPPED",
    "LATE_MISSED_WINDOW",
    "MAX_TRACKED",
    "CallFacts",
    "MissedCall",
    "MissedCallDetector",
    "evidence",
    "judge",
    "missed_from_journey",
    "source_host",
]

ABANDONED = "abandoned"
DROPPED = "dropped"
DEFAULT_DROPPED_SECONDS = 5.0

# The weights of the evidence that a person, not a script, made a missed call. Seconds count
# as points up to WAIT_CAP (past ten minutes a longer wait says nothing more); reaching the
# queue means the caller sat through the menu or chose an operator; an operator's answer
# means a person was heard. A scripted INVITE and hang-up scores next to nothing.
WAIT_CAP = 600.0
QUEUE_POINTS = 60.0
DROPPED_POINTS = 120.0

#: Calls found only afterwards (in Asterisk's CEL, after the server was away) are called back
#: when they ended at most this long ago; older ones are history, not a callback to make now.
LATE_MISSED_WINDOW = 24 * 3600.0

#: Hotline calls the detector follows at once. Far above what Asterisk carries; it only
#: bounds the memory of calls whose Hangup never came (an AMI connection lost meanwhile).
MAX_TRACKED = 10_000

#: A missed call's category when the caller hung up before choosing one.
UNKNOWN_CATEGORY = "unknown"

# Numbers Asterisk shows for a withheld caller ID: nobody to call back.
_WITHHELD = ("", "<unknown>", contract.ANONYMOUS_NUMBER)
# Legs of a journey that mean the citizen was handed to an agency.
_AGENCY_LEGS = ("transfer_attempt", "agency_talk", "conference")


@dataclass(frozen=True)
class MissedCall:
    """A hotline call that ended without help: who, why, and how to reach them again."""

    reason: str  # ABANDONED or DROPPED
    number: str  # the caller ID number ('' when withheld)
    linkedid: str
    channel: str
    endpoint: str  # the PJSIP endpoint the call came in on: anonymous, trunk, an extension
    source: str | None  # SIP source address (host:port) of a direct SIP caller
    category: str
    waited: float  # seconds from the start of the call to the end (abandoned) or answer
    talked: float | None  # seconds with the operator (dropped)
    queued: bool = False  # it reached the operators' queue


@dataclass(frozen=True)
class CallFacts:
    """What is known of a finished hotline call, however it was learnt (times in seconds,
    one epoch)."""

    number: str  # as Asterisk gave it (withheld forms included)
    linkedid: str
    channel: str  # the citizen's channel
    source: str | None
    category: str | None  # None or '': the caller chose none (UNKNOWN_CATEGORY)
    started: float
    ended: float
    answered_at: float | None  # an operator answered
    handed_over: bool  # an agency was involved (transfer, consultation, conference)
    queued: bool


def judge(facts: CallFacts, dropped_seconds: float = DEFAULT_DROPPED_SECONDS
          ) -> MissedCall | None:
    """The missed call in ``facts`` (abandoned or dropped), or None: the one rule."""
    number = "" if facts.number in _WITHHELD else facts.number
    common: dict[str, Any] = dict(
        number=number, linkedid=facts.linkedid, channel=facts.channel,
        endpoint=endpoint_of(facts.channel), source=facts.source,
        category=facts.category or UNKNOWN_CATEGORY,
        queued=facts.queued)
    if facts.answered_at is None:
        return MissedCall(reason=ABANDONED, waited=facts.ended - facts.started, talked=None,
                          **common)
    talked = facts.ended - facts.answered_at
    if not facts.handed_over and talked < dropped_seconds:
        return MissedCall(reason=DROPPED, waited=facts.answered_at - facts.started,
                          talked=talked, **common)
    return None


def evidence(missed: MissedCall) -> float:
    """Points for the evidence that a person made ``missed``: seconds waited (capped),
    plus :data:`QUEUE_POINTS` when it reached the queue and :data:`DROPPED_POINTS` when an
    operator answered it."""
    points = min(max(missed.waited, 0.0), WAIT_CAP)
    if missed.queued:
        points += QUEUE_POINTS
    if missed.reason == DROPPED:
        points += DROPPED_POINTS
    return points


def source_host(source: str | None) -> str | None:
    """The address part of a SIP source ``host:port`` (``[v6]:port``): what a flood from one
    machine shares whatever ports it uses. None for None or ''."""
    if not source:
        return None
    if source.startswith("["):
        return source[1:].split("]", 1)[0] or None
    return source.rsplit(":", 1)[0] or None


# -- live, from AMI --------------------------------------------------------------------------

@dataclass
class _Tracked:
    uniqueid: str
    channel: str
    linkedid: str
    number: str
    started: float
    source: str | None = None
    category: str = UNKNOWN_CATEGORY
    answered_at: float | None = None
    handed_over: bool = False
    queued: bool = False


def _bare(variable: str) -> str:
    # VarSet names an inherited variable with its underscores (``__SIAGA_CATEGORY``).
    return variable.lstrip("_")


class MissedCallDetector:
    """Sans-IO: AMI events in, :class:`MissedCall` out (judged by :func:`judge`)."""

    def __init__(self, dropped_seconds: float = DEFAULT_DROPPED_SECONDS,
                 max_tracked: int = MAX_TRACKED) -> None:
        self.dropped_seconds = dropped_seconds
        self.max_tracked = max_tracked
        self._calls: dict[str, _Tracked] = {}  # by the citizen channel's Uniqueid, oldest first
        # Channels the dialplan marked as the center's self-test (SIAGA_TEST, set before the
        # channel is marked as a citizen's): never owed a callback. Cleared at their Hangup.
        self._tests: set[str] = set()

    @property
    def tracked(self) -> int:
        """Hotline calls in progress."""
        return len(self._calls)

    def feed(self, name: str, fields: Mapping[str, str], now: float) -> list[MissedCall]:
        """One AMI event (its name and headers) at time ``now`` (seconds, any epoch)."""
        uniqueid = fields.get("Uniqueid", "")
        if name == "VarSet":
            self._var(uniqueid, fields, now)
            return []
        if name == "Hangup":
            self._tests.discard(uniqueid)
        call = self._calls.get(uniqueid)
        if call is None:
            return []
        if name == "QueueCallerJoin":
            call.queued = True
        elif name == "AgentConnect":
            if call.answered_at is None:
                call.answered_at = now
        elif name == "Newexten":
            context = fields.get("Context", "")
            if (context.startswith(contract.AGENCY_CONTEXT_PREFIX)
                    or context == contract.CONTEXT_CONFERENCE):
                call.handed_over = True
        elif name in ("BlindTransfer", "AttendedTransfer", "ConfbridgeJoin"):
            call.handed_over = True
        elif name == "Hangup":
            del self._calls[uniqueid]
            missed = judge(CallFacts(
                number=call.number, linkedid=call.linkedid, channel=call.channel,
                source=call.source, category=call.category, started=call.started, ended=now,
                answered_at=call.answered_at, handed_over=call.handed_over,
                queued=call.queued), self.dropped_seconds)
            return [missed] if missed is not None else []
        return []

    def _var(self, uniqueid: str, fields: Mapping[str, str], now: float) -> None:
        variable = _bare(fields.get("Variable", ""))
        value = fields.get("Value", "")
        if variable == contract.VAR_TEST and value == "1" and uniqueid:
            # The center calling itself: not a citizen, whatever happens to the call.
            self._calls.pop(uniqueid, None)
            if len(self._tests) < self.max_tracked:
                self._tests.add(uniqueid)
            return
        if variable == contract.VAR_CITIZEN and value == "yes" and uniqueid:
            if uniqueid in self._tests:
                return
            if uniqueid not in self._calls and len(self._calls) >= self.max_tracked:
                # The oldest is the likeliest to have ended unseen (dicts keep insertion order).
                del self._calls[next(iter(self._calls))]
            self._calls.setdefault(uniqueid, _Tracked(
                uniqueid=uniqueid, channel=fields.get("Channel", ""),
                linkedid=fields.get("Linkedid", uniqueid),
                number=fields.get("CallerIDNum", ""), started=now,
            ))
            return
        call = self._calls.get(uniqueid)
        if call is None:
            return
        if variable == contract.VAR_FROM:
            call.source = value or None
        elif variable == contract.VAR_CATEGORY and value:
            call.category = value


# -- afterwards, from the call log's journey -------------------------------------------------

def missed_from_journey(record: Any, hotline: Iterable[str], now: float,
                        window: float = LATE_MISSED_WINDOW,
                        dropped_seconds: float = DEFAULT_DROPPED_SECONDS) -> MissedCall | None:
    """The missed call in a finished journey (``dispatcher.calllog.journey.JourneyRecord``)
    that nobody saw live, judged by :func:`judge`. None for a call that was not to a hotline
    number, the center's self-test, one not ended, and one that ended more than ``window``
    seconds before ``now``."""
    if record.direction != "inbound" or record.dialed not in set(hotline):
        return None
    if getattr(record, "test", False):
        return None  # the center's self-test call
    ended = record.ended_at
    if ended is None or now - ended > window:
        return None
    return judge(CallFacts(
        number=record.caller_number, linkedid=record.linkedid,
        channel=(record.legs[0].channel or "") if record.legs else "", source=record.sip_source,
        category=record.category, started=record.started_at, ended=ended,
        answered_at=record.answered_at,
        handed_over=any(leg.kind in _AGENCY_LEGS for leg in record.legs),
        queued=record.queue_passes > 0 or record.queued_at is not None), dropped_seconds)
