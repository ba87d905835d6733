"""A journey's phase table: ``(phase, fact) -> (effects, next phase)``.

::

    pending ──operator's channel──────────────────────────► dialling ──call answered──┐
      │  ──citizen's channel / queue join / citizen mark──► waiting ───call answered──┤
      │                                                        ▲                      ▼
      └─incident mark / outbound hint─► originating ──channel──┘ (or dialling)    answered
                                                                                      │
    every phase ──finished──► ended ◄─────────────────────────────────────────────────┘

* ``pending``: only helper (Local) channels so far, no record: the journey's nature shows with
  its first person's channel, or when one joins the queue or the dialplan marks the citizen.
* ``originating``: the center itself places this call (a callback run through Local channels);
  still no record. The incident a mark names is held until the record opens.
* ``waiting``: a citizen's call, not yet answered by an operator (menu, queue, transfers).
* ``dialling``: a call the center places (the operator's channel comes first), citizen not
  answered yet.
* ``answered``: an operator and the citizen both talk (``JourneyRecord.answered_at`` is set).
* ``ended``: every channel hung up; the record is complete and handed out.

The queue, the transfer attempts and the conferences have states of their own, kept by the leg
tables (:mod:`dispatcher.calllog.legs`): the phase is where the *journey* stands. A fact moves
the phase before its step runs, so a fact the step causes (``call_answered`` from a bridge)
meets the new phase.

A pair missing from :data:`TRANSITIONS` is an unexpected fact: the journey records it in its
audit trail (an ``unexpected`` event, see :data:`UNEXPECTED`) and changes nothing, never a
silent drop. A pair listed with ``step=False`` is a fact the phase expects and ignores on
purpose (a note before any record exists, a callback's Local channel queueing for an
operator); the comment beside it says why. Facts about a channel the journey never saw start
are recorded the same way (reason ``unknown_channel``); facts told twice (AMI and CEL over AMI
both report a hang-up) are duplicates, not surprises, and change nothing.

Effects are what the journey asks of the world; the tracker that owns the journeys applies them
(:class:`dispatcher.calllog.journey.JourneyTracker`). ``TRANSITIONS`` says which effects a pair
may produce; the pair's step decides from the facts whether it does.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from dispatcher.calllog.records import JourneyRecord

__all__ = [
    "EFFECT_TYPES",
    "FINAL_PHASES",
    "TRANSITIONS",
    "UNEXPECTED",
    "Effect",
    "EndedUnanswered",
    "Fact",
    "HandedOff",
    "JourneyEnded",
    "Phase",
    "RecordOpened",
    "Transition",
    "accepted_facts",
]

#: The kind of the audit-trail event an unexpected fact leaves (``EventRecord.kind``).
UNEXPECTED = "unexpected"


class Phase(StrEnum):
    """Where a journey stands."""

    PENDING = "pending"
    ORIGINATING = "originating"
    WAITING = "waiting"
    DIALLING = "dialling"
    ANSWERED = "answered"
    ENDED = "ended"


class Fact(StrEnum):
    """What the front ends (AMI, CEL) tell a journey, normalised."""

    HELPER_CHANNEL = "helper_channel"  # a Local (or other helper) channel started
    OPERATOR_CHANNEL = "operator_channel"  # an operator's phone's channel started
    PERSON_CHANNEL = "person_channel"  # any other channel: a citizen's, an agency's
    CHANNEL_ANSWERED = "channel_answered"
    CHANNEL_HUNG_UP = "channel_hung_up"
    DIAL_ENDED = "dial_ended"  # a Dial to a channel ended with a status (AMI DialEnd)
    NUMBER_DIALLED = "number_dialled"  # the number a Dial rang (a callback's citizen)
    CALLER_ID_SEEN = "caller_id_seen"  # a later record shows a channel's caller ID
    QUEUE_JOINED = "queue_joined"
    QUEUE_LEFT = "queue_left"
    MEMBER_CONNECTED = "member_connected"  # the queue connected a member (AgentConnect)
    BRIDGE_ENTERED = "bridge_entered"
    BRIDGE_LEFT = "bridge_left"
    MARK = "mark"  # a SIAGA_* fact of the dialplan (menu choice, category, agency, ...)
    QUEUE_MARK = "queue_mark"  # SIAGA_QUEUE / SIAGA_QUEUE_EXIT: the dialplan's queue join/exit
    INCIDENT_MARK = "incident_mark"  # SIAGA_INCIDENT: the call serves an alert's incident
    CITIZEN_MARKED = "citizen_marked"  # the dialplan runs the hotline on this channel
    OUTBOUND_HINTED = "outbound_hinted"  # a channel runs in a context where we place calls
    DTMF = "dtmf"
    RECORDING_STARTED = "recording_started"
    RECORDING_STOPPED = "recording_stopped"
    NOTE = "note"  # an event kept for the audit trail only (AgentCalled, transfers, ...)
    JOURNEY_JOINED = "journey_joined"  # a journey Asterisk started apart is part of this one
    CALL_ANSWERED = "call_answered"  # derived: an operator and the citizen both in bridges
    FINISHED = "finished"  # every channel hung up (or the front end says it is over)


# -- effects ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordOpened:
    """The journey's record exists now (``complete=False``): ready to write, so a crash
    mid-call still leaves a trace in the log. ``at_start``: it opened with the journey's very
    first fact (a person's channel first), not later (Local channels first: a callback, an
    originate into the hotline)."""

    record: JourneyRecord
    at_start: bool = True


@dataclass(frozen=True)
class HandedOff:
    """A call's citizen now talks with ``agency`` (one bridge, or one conference through
    a Local pair); told once per agency. An operator consulting an agency while the citizen
    waits on hold is not a hand-off."""

    record: JourneyRecord
    agency: str


@dataclass(frozen=True)
class JourneyEnded:
    """The journey is over: ``record`` is complete (outcome decided), ready to write."""

    record: JourneyRecord


@dataclass(frozen=True)
class EndedUnanswered:
    """The journey ended without an operator and the citizen ever talking
    (``record.answered_at is None``): abandoned in the menu or the queue, dropped by the
    network, a callback nobody picked up. Follows its :class:`JourneyEnded`, same record.

    This is the fact a missed-call judge starts from; the journey does not judge: whether a
    callback is owed (a hotline number, not the center's self-test, not too old, ...) is the
    callbacks feature's rule, read from the record (``direction``, ``dialed``, ``test``,
    ``outcome``, ``legs``). A call answered and cut short is not here: it is answered; its
    :class:`JourneyEnded` record shows how short.
    """

    record: JourneyRecord


Effect = RecordOpened | HandedOff | JourneyEnded | EndedUnanswered
EFFECT_TYPES: tuple[type, ...] = (RecordOpened, HandedOff, JourneyEnded, EndedUnanswered)


@dataclass(frozen=True)
class Transition:
    """Where a pair leads, which effects its step may produce, and whether the step runs at
    all (``step=False``: the phase expects the fact and has nothing to do with it)."""

    next: Phase
    effects: tuple[type, ...] = ()
    step: bool = True


P, F = Phase, Fact
_NO_RECORD = (P.PENDING, P.ORIGINATING)
_RECORD = (P.WAITING, P.DIALLING, P.ANSWERED)
_OPEN = (RecordOpened,)
_HANDOFF = (HandedOff,)

TRANSITIONS: dict[tuple[Phase, Fact], Transition] = {}


def _same(phases: tuple[Phase, ...], facts: tuple[Fact, ...], *effects: type) -> None:
    for phase in phases:
        for fact in facts:
            TRANSITIONS[(phase, fact)] = Transition(phase, effects)


def _ignore(phases: tuple[Phase, ...], facts: tuple[Fact, ...]) -> None:
    for phase in phases:
        for fact in facts:
            TRANSITIONS[(phase, fact)] = Transition(phase, step=False)


# Before any record: the channels are remembered (a later person's channel starts the record),
# nothing is written.
_same(
    _NO_RECORD,
    (
        F.HELPER_CHANNEL,
        F.CHANNEL_ANSWERED,
        F.CHANNEL_HUNG_UP,
        F.DIAL_ENDED,
        F.CALLER_ID_SEEN,
        F.MEMBER_CONNECTED,  # a Local member may take an operator's role already
        F.RECORDING_STOPPED,
        F.JOURNEY_JOINED,
    ),
)
# A Local half dialling the operator: not a citizen's number. Notes (AgentCalled, DialBegin):
# nothing to note them on yet; the record opens with the first person's channel.
_ignore(_NO_RECORD, (F.NUMBER_DIALLED, F.NOTE))
for _phase in _NO_RECORD:
    TRANSITIONS[(_phase, F.OPERATOR_CHANNEL)] = Transition(P.DIALLING, _OPEN)
    TRANSITIONS[(_phase, F.PERSON_CHANNEL)] = Transition(P.WAITING, _OPEN)
    TRANSITIONS[(_phase, F.INCIDENT_MARK)] = Transition(P.ORIGINATING)  # held for the record
    TRANSITIONS[(_phase, F.OUTBOUND_HINTED)] = Transition(P.ORIGINATING, step=False)
    TRANSITIONS[(_phase, F.FINISHED)] = Transition(P.ENDED)  # helper channels only: no record
TRANSITIONS[(P.PENDING, F.QUEUE_JOINED)] = Transition(P.WAITING, _OPEN)  # its joiner: a citizen
TRANSITIONS[(P.PENDING, F.CITIZEN_MARKED)] = Transition(P.WAITING, _OPEN)
# A callback's Local half queueing for an operator, or running the callback's dialplan: the
# operator's channel will open the record, not the Local pair.
_ignore((P.ORIGINATING,), (F.QUEUE_JOINED, F.QUEUE_LEFT, F.QUEUE_MARK, F.CITIZEN_MARKED))

# With a record: every fact is taken in; the steps decide from the channels what it means.
_same(
    _RECORD,
    (
        F.HELPER_CHANNEL,
        F.OPERATOR_CHANNEL,
        F.PERSON_CHANNEL,
        F.CHANNEL_ANSWERED,
        F.CHANNEL_HUNG_UP,
        F.DIAL_ENDED,
        F.NUMBER_DIALLED,
        F.CALLER_ID_SEEN,
        F.QUEUE_JOINED,
        F.QUEUE_LEFT,
        F.BRIDGE_LEFT,
        F.DTMF,
        F.RECORDING_STARTED,
        F.RECORDING_STOPPED,
        F.NOTE,
        F.JOURNEY_JOINED,
    ),
)
# Once the record is open its origin and direction are settled: the dialplan marking the
# citizen again, or a channel running in a callback context, changes neither.
_ignore(_RECORD, (F.CITIZEN_MARKED, F.OUTBOUND_HINTED))
_same(_RECORD, (F.MEMBER_CONNECTED,))
_same(_RECORD, (F.QUEUE_MARK,))
_same(_RECORD, (F.BRIDGE_ENTERED, F.MARK, F.INCIDENT_MARK), *_HANDOFF)
TRANSITIONS[(P.WAITING, F.CALL_ANSWERED)] = Transition(P.ANSWERED)
TRANSITIONS[(P.DIALLING, F.CALL_ANSWERED)] = Transition(P.ANSWERED)
for _phase in _RECORD:
    TRANSITIONS[(_phase, F.FINISHED)] = Transition(P.ENDED, (JourneyEnded, EndedUnanswered))
# Nothing is accepted once ended: the record is out; a late fact is an unexpected one.

FINAL_PHASES = frozenset({P.ENDED})


def accepted_facts(phase: Phase | str) -> list[Fact]:
    """The facts ``phase`` accepts, in table order (tests, documentation)."""
    phase = Phase(phase)
    return [fact for (p, fact) in TRANSITIONS if p is phase]
