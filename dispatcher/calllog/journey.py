"""Sans-IO journey builder: AMI events (or CEL records) in, call/leg/event records out.

A *journey* is everything that happened to one citizen's call, across every channel Asterisk
created for it (menu, queue, operator, transfer attempts, agency, conference). Asterisk ties those
channels together with the *linkedid* of the first one. The builder keeps one :class:`Journey`
state machine per linkedid; two front ends feed it the same normalised facts:

* :class:`JourneyBuilder` takes AMI event dicts live (``feed(event, now)``);
* :mod:`dispatcher.calllog.cel` takes CEL records after a restart (reconciliation).

Facts the dialplan adds (so the log knows what Asterisk cannot): a channel variable set with
``Set()`` (seen as AMI ``VarSet``), or a CEL user event ``CELGenUserEvent(NAME,value)`` (seen in
the CEL file, and as an AMI ``CEL`` event when ``cel_manager`` is on), with NAME one of

* ``SIAGA_IVR``       value ``menu=<menu>&digit=<d>&choice=<category>&lang=<id|en>``
* ``SIAGA_CATEGORY``  value ``<category>`` (police, fire, health, ...)
* ``SIAGA_LANGUAGE``  value ``<id|en>``
* ``SIAGA_AGENCY``    value ``<agency code>`` set on a channel that rings an agency
* ``SIAGA_INCIDENT``  value ``<incident id>`` on a callback's channel
* ``SIAGA_QUEUE``     value ``<queue>``, just before ``Queue()`` (CEL has no queue events)
* ``SIAGA_QUEUE_EXIT`` value ``${QUEUESTATUS}``, just after ``Queue()`` returns
* ``SIAGA_RECORDING`` value ``<file>``, next to ``MixMonitor()`` (AMI needs nothing: MixMonitor
  sets ``MIXMONITOR_FILENAME`` itself)
* ``SIAGA_TEST``      value ``1``: the center's own self-test call (set only in the dialplan's
  ``selftest`` context, which only the authenticated self-test endpoint reaches)

Without the QUEUE marks, CEL reconciliation still finds the queue from the application the
citizen's channel was running (the ``appname`` of its records); the marks make it exact. DTMF
the citizen sends in an ``ivr*`` context is kept as an IVR choice (AMI ``DTMFEnd``, CEL ``DTMF``);
the next ``SIAGA_CATEGORY`` says what the key meant.

Nothing here does I/O or reads a clock: times come with the events (AMI ``Timestamp``, which
needs ``timestampevents = yes`` in manager.conf) or from the ``now`` the caller passes.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from dialplans import contract
from dialplans.contract import MARK_NAMES, MARK_PREFIX
from dispatcher.callerid import safe_name, safe_number

# What the dialplan copies from CHANNEL(pjsip,remote_addr): an address and port, nothing else.
_SIP_SOURCE = re.compile(r"^(?:[0-9.]{7,15}|\[[0-9A-Fa-f:.]{2,45}\]):[0-9]{1,5}$")
# Channel technologies that carry no person: Local pairs, ConfBridge's announcer, recorders.
# They are "local" here: never a leg of their own, never counted in a conference.
HELPER_TECHS = frozenset({"local", "cbann", "cbrec", "announcer", "recorder", "snoop"})
# Applications a channel runs while it is only the far end of a Dial (not running dialplan).
DIAL_APPS = frozenset({"", "appdial", "appdial2", "appqueue"})
_ENDPOINT = re.compile(r"^(?P<tech>[A-Za-z0-9_]+)/(?P<rest>.+)$")

# Hangup causes (Q.850) that mean the network or Asterisk failed, not that a person hung up.
_FAILURE_CAUSES = frozenset({1, 3, 27, 34, 38, 41, 42, 44, 47, 58, 66, 88, 102, 111})
_BUSY_CAUSES = frozenset({17})
_NO_ANSWER_CAUSES = frozenset({18, 19, 20})
_ANSWERED_ELSEWHERE = frozenset({26})
_DIALSTATUS_RESULTS = {
    "ANSWER": "answered",
    "NOANSWER": "no_answer",
    "BUSY": "busy",
    "CANCEL": "cancelled",
    "CONGESTION": "failed",
    "CHANUNAVAIL": "failed",
    "DONTCALL": "failed",
    "TORTURE": "failed",
    "INVALIDARGS": "failed",
}


# --------------------------------------------------------------------------------------------
# Records the builder produces (plain data; the store turns them into rows)


@dataclass
class LegRecord:
    """A segment of a journey. Times are epoch seconds (float, UTC)."""

    kind: str
    started_at: float
    channel: str = ""
    uniqueid: str = ""
    operator: str | None = None
    agency: str | None = None
    queue: str | None = None
    answered_at: float | None = None
    ended_at: float | None = None
    result: str | None = None
    fallback: bool = False

    @property
    def duration(self) -> float | None:
        """Seconds from start to end, None while open."""
        return None if self.ended_at is None else max(0.0, self.ended_at - self.started_at)

    @property
    def ring_seconds(self) -> float | None:
        """For a transfer attempt: seconds until the agency answered."""
        if self.answered_at is None:
            return None
        return max(0.0, self.answered_at - self.started_at)


@dataclass
class EventRecord:
    """A timestamped event kept for the audit trail."""

    at: float
    kind: str
    channel: str = ""
    detail: dict[str, str] = field(default_factory=dict)


@dataclass
class IvrChoiceRecord:
    """A key pressed in a menu."""

    at: float
    menu: str
    digit: str
    choice: str
    language: str | None = None


@dataclass
class RecordingRecord:
    """A recording file of a channel."""

    path: str
    channel: str
    started_at: float
    ended_at: float | None = None


@dataclass
class JourneyRecord:
    """One citizen journey, complete or (``complete=False``) as known so far."""

    linkedid: str
    started_at: float
    direction: str = "inbound"
    caller_number: str = ""
    caller_name: str = ""
    dialed: str = ""
    queued_at: float | None = None
    answered_at: float | None = None
    ended_at: float | None = None
    category: str | None = None
    language: str | None = None
    outcome: str = "in_progress"
    hangup_cause: int | None = None
    answered_by: str | None = None
    queue_passes: int = 0
    incident_ref: int | None = None
    source: str = "ami"
    #: The citizen's SIP source address (host:port), as Asterisk saw the packets come.
    sip_source: str | None = None
    test: bool = False  # the center's self-test call (SIAGA_TEST)
    complete: bool = False
    legs: list[LegRecord] = field(default_factory=list)
    events: list[EventRecord] = field(default_factory=list)
    ivr_choices: list[IvrChoiceRecord] = field(default_factory=list)
    recordings: list[RecordingRecord] = field(default_factory=list)

    def _sum(self, kind: str) -> float | None:
        legs = [leg.duration for leg in self.legs if leg.kind == kind]
        if not legs:
            return None
        return sum(d for d in legs if d is not None)

    @property
    def answer_seconds(self) -> float | None:
        """Seconds from arrival to the first operator answer."""
        if self.answered_at is None:
            return None
        return max(0.0, self.answered_at - self.started_at)

    @property
    def queue_seconds(self) -> float | None:
        """Seconds spent waiting in queue, over every pass through it."""
        return self._sum("queue_wait")

    @property
    def talk_seconds(self) -> float | None:
        """Seconds operators spent on this journey."""
        return self._sum("operator_talk")

    @property
    def duration_seconds(self) -> float | None:
        """Seconds from arrival to the last hangup."""
        if self.ended_at is None:
            return None
        return max(0.0, self.ended_at - self.started_at)


# --------------------------------------------------------------------------------------------
# Who a channel belongs to


def endpoint_of(channel: str) -> tuple[str, str]:
    """Split ``PJSIP/op101-0000000a`` into ``("PJSIP", "op101")``; Local keeps its ``exten@ctx``."""
    match = _ENDPOINT.match(channel)
    if match is None:
        return "", channel
    tech, rest = match.group("tech"), match.group("rest")
    if tech.lower() == "local":
        return tech, rest.split(";", 1)[0].rsplit("-", 1)[0]
    return tech, rest.rsplit("-", 1)[0] if "-" in rest else rest


@dataclass(frozen=True)
class Directory:
    """Maps SIP endpoints to operators and agencies (built from the center's config)."""

    operators: Mapping[str, str] = field(default_factory=dict)  # endpoint -> operator code
    agencies: Mapping[str, str] = field(default_factory=dict)  # endpoint -> agency code
    # Dialplan contexts where the center places calls itself (callbacks): a Local channel
    # running there makes its journey outbound.
    outbound_contexts: frozenset[str] = frozenset({contract.CONTEXT_CALLBACK,
                                                   contract.CONTEXT_ALERTS})

    @classmethod
    def from_center(cls, center: Any) -> Directory:
        """Build it from the center's config (``dispatcher.config.Center``).

        Operators are known by their extension; an agency by its key, on each of its phones
        and on its fallback number unless that number is an operator's or a supervisor's.
        """
        operators = {op.extension: op.extension for op in center.operators}
        staff = set(operators) | set(getattr(center, "supervisors", ()))
        agencies: dict[str, str] = {}
        for agency in center.agencies:
            for extension in agency.extensions:
                agencies[extension] = agency.key
            fallback = getattr(agency, "fallback", "")
            if fallback and fallback not in staff:
                agencies.setdefault(fallback, agency.key)
        return cls(operators=operators, agencies=agencies)

    def classify(self, channel: str) -> tuple[str, str | None]:
        """Return ``(role, code)`` for a channel name: operator, agency, local or other."""
        tech, endpoint = endpoint_of(channel)
        if tech.lower() in HELPER_TECHS:
            return "local", None
        if endpoint in self.operators:
            return "operator", self.operators[endpoint]
        if endpoint in self.agencies:
            return "agency", self.agencies[endpoint]
        return "other", None

    def operator_for_interface(self, interface: str) -> str | None:
        """The operator of a queue member interface: ``PJSIP/201`` or ``Local/201@ctx/n``."""
        tech, _, rest = interface.partition("/")
        if tech.lower() == "local":
            return self.operators.get(rest.split("@", 1)[0])
        return self.operators.get(rest) if rest else None


# --------------------------------------------------------------------------------------------
# One journey's state machine


@dataclass
class _Channel:
    uid: str
    name: str
    role: str
    code: str | None
    created: float
    caller_number: str = ""
    caller_name: str = ""
    exten: str = ""
    answered: float | None = None
    hungup: float | None = None
    bridge: str | None = None
    talk_leg: LegRecord | None = None
    attempt: _Attempt | None = None
    dial_status: str | None = None
    hung_up_by_self: bool | None = None


@dataclass
class _Attempt:
    """One transfer attempt to an agency; a ring group rings several channels at once."""

    leg: LegRecord
    ringing: set[str] = field(default_factory=set)
    statuses: list[str] = field(default_factory=list)


class Journey:
    """State machine of one linkedid. Methods are the normalised facts; times in epoch seconds."""

    def __init__(self, linkedid: str, directory: Directory, source: str = "ami") -> None:
        self.linkedid = linkedid
        self.directory = directory
        self.record: JourneyRecord | None = None
        self.source = source
        self.channels: dict[str, _Channel] = {}
        self.bridges: dict[str, set[str]] = {}
        self.citizen: str | None = None
        self.ivr_leg: LegRecord | None = None
        self.queue_leg: LegRecord | None = None
        self.conference_legs: dict[str, LegRecord] = {}
        self._partners: dict[str, str] = {}  # Local channel uid -> the other half's uid
        self.attempts: dict[str, _Attempt] = {}  # agency code -> open attempt
        self.last_failed_attempt: LegRecord | None = None
        self.recordings: dict[str, RecordingRecord] = {}  # uid -> open recording
        self._last_mark: tuple[str, str, float] | None = None
        self._first_seen: float | None = None
        self.outbound_hint = False
        self._pending_marks: list[tuple[float, str, str, str]] = []
        self.last_time = 0.0
        #: Called once per agency with (record, agency key) when an incident's citizen first
        #: shares a bridge with that agency's phone (the JourneyBuilder sets it).
        self.on_handoff: Callable[[JourneyRecord, str], object] | None = None
        self._handed: set[str] = set()

    # -- bookkeeping -------------------------------------------------------------------------

    @property
    def finished(self) -> bool:
        """True once every channel of the journey has hung up."""
        return bool(self.channels) and all(c.hungup is not None for c in self.channels.values())

    def _touch(self, t: float) -> None:
        self.last_time = max(self.last_time, t)

    def event(self, t: float, kind: str, channel: str = "", **detail: Any) -> None:
        """Keep an event for the audit trail."""
        if self.record is None:
            return
        self._touch(t)
        self.record.events.append(
            EventRecord(t, kind, channel, {k: str(v) for k, v in detail.items() if v not in ("",)})
        )

    def _open_leg(self, leg: LegRecord) -> LegRecord:
        assert self.record is not None
        self.record.legs.append(leg)
        return leg

    @staticmethod
    def _close(leg: LegRecord | None, t: float, result: str | None = None) -> None:
        if leg is None or leg.ended_at is not None:
            return
        leg.ended_at = max(t, leg.started_at)
        if result is not None and leg.result is None:
            leg.result = result

    # -- channel life ------------------------------------------------------------------------

    def chan_start(
        self,
        t: float,
        uid: str,
        name: str,
        caller_number: str = "",
        caller_name: str = "",
        exten: str = "",
    ) -> None:
        """A channel of this journey was created."""
        self._touch(t)
        if uid in self.channels:
            return
        # The caller chose these (a SIP From): only a clean number or name is kept; the
        # dialplan's cleaned one arrives with the channel's later events (caller_seen).
        caller_number, caller_name = safe_number(caller_number), safe_name(caller_name)
        role, code = self.directory.classify(name)
        chan = _Channel(uid, name, role, code, t, caller_number, caller_name, exten)
        self.channels[uid] = chan
        if name.startswith("Local/") and name[-2:] in (";1", ";2"):
            other = name[:-1] + ("2" if name.endswith("1") else "1")
            for known in self.channels.values():
                if known.name == other:
                    self._partners[uid], self._partners[known.uid] = known.uid, uid
        if self.record is None:
            if role == "local":
                # A Local channel first (an originate through the dialplan): the journey's
                # nature shows with the first real channel, or when one joins the queue.
                self._first_seen = min(self._first_seen or t, t)
                return
            self._begin(chan, outbound=role == "operator")
        elif self.record.direction == "outbound" and role == "other" and self.citizen is None:
            # A callback: the citizen's phone is the first channel that is nobody of ours.
            self.citizen = uid
        self.event(t, "chan_start", name, caller=caller_number, exten=exten)
        if role == "agency":
            self._start_attempt(chan, t)

    def _begin(self, chan: _Channel, outbound: bool) -> None:
        """Open the record with ``chan`` as the origin: the citizen, or (``outbound``) the
        operator of a callback the center originates."""
        start = min(self._first_seen or chan.created, chan.created)
        self.citizen = None if outbound else chan.uid
        self.record = JourneyRecord(
            linkedid=self.linkedid,
            started_at=start,
            direction="outbound" if outbound else "inbound",
            caller_number="" if outbound else chan.caller_number,
            caller_name="" if outbound else chan.caller_name,
            dialed=chan.exten,
            source=self.source,
        )
        if not outbound:
            self.ivr_leg = self._open_leg(LegRecord("ivr", start, chan.name, chan.uid))
        for mark in self._pending_marks:
            self.mark(*mark)
        self._pending_marks.clear()

    def dialed_number(self, uid: str, number: str) -> None:
        """The number a Dial rang on ``uid`` (a callback's citizen number)."""
        if self.record is not None and uid == self.citizen and not self.record.caller_number:
            self.record.caller_number = number

    def answer(self, t: float, uid: str) -> None:
        """A channel answered."""
        chan = self.channels.get(uid)
        if chan is None or chan.answered is not None:
            return
        chan.answered = t
        self.event(t, "answer", chan.name)
        if chan.attempt is not None:
            self._attempt_answered(chan, t)

    def hangup(
        self,
        t: float,
        uid: str,
        cause: int | None = None,
        dial_status: str = "",
        by_self: bool | None = None,
    ) -> None:
        """A channel hung up (``by_self``: its own side hung up, when known)."""
        chan = self.channels.get(uid)
        if chan is None or chan.hungup is not None:
            return
        if self.record is None:
            chan.hungup = t
            return
        self._touch(t)
        chan.hungup = t
        chan.hung_up_by_self = by_self
        self.event(t, "hangup", chan.name, cause=cause if cause is not None else "")
        if chan.bridge is not None:
            self.bridge_exit(t, uid, chan.bridge)
        if chan.attempt is not None:
            self._attempt_channel_gone(chan, t, cause, dial_status or chan.dial_status)
        recording = self.recordings.pop(uid, None)
        if recording is not None and recording.ended_at is None:
            recording.ended_at = t
        if uid == self.citizen or (self.citizen is None and chan.role == "operator"):
            self.record.hangup_cause = cause
            self._close(self.ivr_leg, t)
            # Hanging up while waiting is an abandon; leaving for an operator was handled by
            # the bridge before.
            self._close(self.queue_leg, t, "abandoned")
            for attempt in list(self.attempts.values()):
                self._close(attempt.leg, t, "cancelled")
            self.attempts.clear()

    # -- queue -------------------------------------------------------------------------------

    def queue_join(self, t: float, uid: str, queue: str, caller_number: str = "") -> None:
        """The citizen entered a queue (the channel that joins is the citizen's, by definition)."""
        chan = self.channels.get(uid)
        if chan is None:
            return
        if self.record is None:
            if self.outbound_hint:
                return  # a callback queueing for an operator, not a citizen in the queue
            chan.caller_number = chan.caller_number or safe_number(caller_number)
            self._begin(chan, outbound=False)
        if uid != self.citizen:
            return
        self._close(self.ivr_leg, t)
        self.event(t, "queue_join", self.channels[uid].name, queue=queue)
        if self.queue_leg is not None and self.queue_leg.ended_at is None:
            return
        self.record.queue_passes += 1
        if self.record.queued_at is None:
            self.record.queued_at = t
        self.queue_leg = self._open_leg(
            LegRecord("queue_wait", t, self.channels[uid].name, uid, queue=queue)
        )

    def queue_leave(self, t: float, uid: str, abandoned: bool = False) -> None:
        """The citizen left the queue (answered, timed out, or hung up when ``abandoned``)."""
        if self.queue_leg is None or uid != self.citizen or self.queue_leg.ended_at is not None:
            return
        self.event(t, "queue_abandon" if abandoned else "queue_leave", self.channels[uid].name)
        self._close(self.queue_leg, t, "abandoned" if abandoned else None)

    def operator_connected(self, t: float, operator_channel: str = "", operator: str = "") -> None:
        """The queue connected the citizen to an operator (AMI AgentConnect)."""
        if self.record is None:
            return
        if self.queue_leg is not None:
            self._close(self.queue_leg, t)
            if self.queue_leg.result is None:
                self.queue_leg.result = "answered"
        if self.record.answered_at is None:
            self.record.answered_at = t
            code = operator
            if not code and operator_channel:
                role, found = self.directory.classify(operator_channel)
                code = found or ""
            self.record.answered_by = code or None

    def member_connected(self, t: float, member_uid: str, operator: str | None) -> None:
        """The queue connected the citizen to a member channel (AMI AgentConnect).

        A member reached through a Local channel with no operator phone of ours behind it (a
        softphone outside the directory) still is the operator's leg: the Local channel takes
        the operator's role so its talk time counts.
        """
        chan = self.channels.get(member_uid)
        if (
            chan is not None
            and chan.role == "local"
            and operator
            and not any(c.role == "operator" and c.bridge for c in self.channels.values())
        ):
            chan.role, chan.code = "operator", operator
            if chan.bridge is not None:
                chan.talk_leg = self._open_leg(
                    LegRecord("operator_talk", t, chan.name, chan.uid, operator=operator)
                )
        if self.record is not None and self.record.direction == "outbound":
            # A callback's operator took it; the call is answered when the citizen is.
            self._check_answered(t)
            return
        self.operator_connected(t, chan.name if chan else "", operator or "")

    # -- bridges -----------------------------------------------------------------------------

    def bridge_enter(self, t: float, uid: str, bridge: str) -> None:
        """A channel entered a bridge."""
        chan = self.channels.get(uid)
        if chan is None or self.record is None:
            return
        if chan.bridge == bridge:
            return  # BridgeEnter and ConfbridgeJoin both report it
        if chan.bridge is not None:
            self.bridge_exit(t, uid, chan.bridge)
        chan.bridge = bridge
        members = self.bridges.setdefault(bridge, set())
        members.add(uid)
        self.event(t, "bridge_enter", chan.name, bridge=bridge)
        if chan.role == "operator":
            chan.talk_leg = self._open_leg(
                LegRecord("operator_talk", t, chan.name, uid, operator=chan.code)
            )
        elif chan.role == "agency":
            if chan.attempt is not None and chan.answered is None:
                self.answer(t, uid)
            chan.talk_leg = self._open_leg(
                LegRecord("agency_talk", t, chan.name, uid, agency=chan.code)
            )
        self._check_answered(t)
        self._check_conferences(t)
        self._check_handoff()

    def _check_handoff(self) -> None:
        """Tell ``on_handoff`` when an incident's citizen talks with an agency: both in one
        bridge (a blind or completed attended transfer) or one conference (the agency's
        Local leg resolved by :meth:`_people`). An operator consulting an agency while the
        citizen waits on hold is not a hand-off."""
        if self.on_handoff is None or self.record is None or self.record.incident_ref is None:
            return
        citizen = self.channels.get(self.citizen or "")
        if citizen is None or citizen.bridge is None:
            return
        for uid in self._reachable(citizen.bridge):
            chan = self.channels[uid]
            if chan.role == "agency" and chan.code and chan.code not in self._handed:
                self._handed.add(chan.code)
                self.on_handoff(self.record, chan.code)

    def _people(self, bridge: str) -> set[str]:
        """The people talking in a bridge: its own channels and, when two of them talk there,
        those a Local channel in it leads to (an agency brought into a conference through a
        Local pair sits in a bridge of its own with the pair's other half)."""
        members = self.bridges.get(bridge, set())
        people = {u for u in members if self.channels[u].role != "local"}
        if len(people) < 2:
            return people
        for uid in members:
            chan = self.channels[uid]
            if chan.role != "local":
                continue
            partner = self.channels.get(self._partners.get(uid, ""))
            if partner is not None and partner.bridge is not None and partner.bridge != bridge:
                people |= {
                    u
                    for u in self.bridges.get(partner.bridge, set())
                    if self.channels[u].role != "local"
                }
        return people

    def _reachable(self, bridge: str) -> set[str]:
        """Everyone who hears a bridge: its members and, through each Local pair in it, the
        members of the bridge the pair's other half is in (and so on)."""
        people: set[str] = set()
        seen: set[str] = set()
        todo = [bridge]
        while todo:
            current = todo.pop()
            if current in seen:
                continue
            seen.add(current)
            for uid in self.bridges.get(current, ()):
                chan = self.channels[uid]
                if chan.role != "local":
                    people.add(uid)
                    continue
                partner = self.channels.get(self._partners.get(uid, ""))
                if partner is not None and partner.bridge is not None:
                    todo.append(partner.bridge)
        return people

    def _check_conferences(self, t: float) -> None:
        """A conference leg runs while three people or more share a bridge."""
        for bridge in set(self.bridges) | set(self.conference_legs):
            open_leg = self.conference_legs.get(bridge)
            many = len(self._people(bridge)) >= 3
            if many and open_leg is None:
                self.conference_legs[bridge] = self._open_leg(
                    LegRecord("conference", t, "", bridge)
                )
            elif not many and open_leg is not None:
                self._close(self.conference_legs.pop(bridge), t)

    def bridge_exit(self, t: float, uid: str, bridge: str) -> None:
        """A channel left a bridge."""
        chan = self.channels.get(uid)
        if chan is None or chan.bridge != bridge:
            return
        chan.bridge = None
        members = self.bridges.get(bridge, set())
        members.discard(uid)
        self.event(t, "bridge_exit", chan.name, bridge=bridge)
        self._close(chan.talk_leg, t)
        chan.talk_leg = None
        if not members:
            self.bridges.pop(bridge, None)
        self._check_conferences(t)

    def _check_answered(self, t: float) -> None:
        """The citizen is answered once an operator and the citizen are both in bridges.

        Any bridges, not the same one: queue members reached through Local channels sit in a
        different bridge from the citizen until Asterisk optimises the Local pair away.
        """
        assert self.record is not None
        if self.record.answered_at is not None or self.citizen is None:
            # A callback's citizen is known once their phone's channel exists.
            return
        citizen = self.channels[self.citizen]
        if citizen.bridge is None:
            return
        for chan in self.channels.values():
            if chan.role == "operator" and chan.bridge is not None:
                self.operator_connected(t, chan.name, chan.code or "")
                return

    # -- transfers to agencies ---------------------------------------------------------------

    def _start_attempt(self, chan: _Channel, t: float) -> None:
        assert self.record is not None and chan.code is not None
        attempt = self.attempts.get(chan.code)
        if attempt is None:
            if self.last_failed_attempt is not None:
                # A failed attempt followed by another try is a fallback.
                self.last_failed_attempt.fallback = True
                self.last_failed_attempt = None
            leg = self._open_leg(
                LegRecord("transfer_attempt", chan.created, chan.name, chan.uid, agency=chan.code)
            )
            attempt = self.attempts[chan.code] = _Attempt(leg)
        attempt.ringing.add(chan.uid)
        chan.attempt = attempt

    def _attempt_answered(self, chan: _Channel, t: float) -> None:
        attempt = chan.attempt
        assert attempt is not None
        if attempt.leg.answered_at is None:
            attempt.leg.answered_at = t
            attempt.leg.channel, attempt.leg.uniqueid = chan.name, chan.uid
            self._close(attempt.leg, t, "answered")
            self.last_failed_attempt = None
        if chan.code is not None and self.attempts.get(chan.code) is attempt:
            del self.attempts[chan.code]

    def _attempt_channel_gone(
        self, chan: _Channel, t: float, cause: int | None, dial_status: str | None
    ) -> None:
        attempt = chan.attempt
        assert attempt is not None
        attempt.ringing.discard(chan.uid)
        if attempt.leg.ended_at is not None:
            return
        if cause in _ANSWERED_ELSEWHERE:
            status = "cancelled"
        elif dial_status and dial_status.upper() in _DIALSTATUS_RESULTS:
            status = _DIALSTATUS_RESULTS[dial_status.upper()]
        elif cause in _BUSY_CAUSES:
            status = "busy"
        elif cause in _FAILURE_CAUSES:
            status = "failed"
        else:
            status = "no_answer"
        attempt.statuses.append(status)
        if attempt.ringing:
            return
        # Every phone of the group is gone unanswered: the attempt failed. The most telling
        # status wins (a busy phone says more than one cancelled because another answered).
        for result in ("busy", "failed", "no_answer", "cancelled"):
            if result in attempt.statuses:
                break
        self._close(attempt.leg, t, result)
        if chan.code is not None and self.attempts.get(chan.code) is attempt:
            del self.attempts[chan.code]
        if result != "cancelled":
            self.last_failed_attempt = attempt.leg

    def dial_end(self, t: float, dest_uid: str, status: str) -> None:
        """A Dial to ``dest_uid`` ended with ``status`` (AMI DialEnd)."""
        chan = self.channels.get(dest_uid)
        if chan is None:
            return
        chan.dial_status = status
        self.event(t, "dial_end", chan.name, status=status)
        if status.upper() == "ANSWER":
            self.answer(t, dest_uid)

    # -- facts the dialplan adds -------------------------------------------------------------

    def mark(self, t: float, uid: str, name: str, value: str) -> None:
        """A ``SIAGA_*`` fact set by the dialplan (see the module docstring)."""
        if self.record is None:
            if name == "INCIDENT":
                # Set on the Local pair of an alert's callback, before any real channel.
                self.hint_outbound()
                self._pending_marks.append((t, uid, name, value))
            return
        key = (name, value, round(t))
        if self._last_mark == key:
            return  # the same fact seen twice (VarSet and CEL over AMI)
        self._last_mark = key
        chan = self.channels.get(uid)
        self.event(t, "mark", chan.name if chan else "", name=name, value=value)
        if name == "IVR":
            fields = dict(parse_qsl(value, keep_blank_values=True))
            choice = IvrChoiceRecord(
                t,
                fields.get("menu", ""),
                fields.get("digit", ""),
                fields.get("choice", ""),
                fields.get("lang") or None,
            )
            self.record.ivr_choices.append(choice)
            if choice.choice:
                self.record.category = choice.choice
            if choice.language:
                self.record.language = choice.language
        elif name == "CATEGORY":
            self.record.category = value or self.record.category
            pending = [c for c in self.record.ivr_choices if not c.choice]
            if value and pending:
                pending[-1].choice = value
        elif name == "QUEUE":
            self.queue_join(t, uid, value)
        elif name == "QUEUE_EXIT":
            self.queue_leave(t, uid)
        elif name == "RECORDING":
            self.recording_start(t, uid, value)
        elif name == "LANGUAGE":
            self.record.language = value or self.record.language
        elif name == "FROM" and _SIP_SOURCE.match(value):
            self.record.sip_source = value
        elif name == "TEST":
            self.record.test = self.record.test or value == "1"
        elif name == "INCIDENT":
            try:
                self.record.incident_ref = int(value)
            except ValueError:
                self.event(t, "bad_incident_ref", chan.name if chan else "", value=value)
            self._check_handoff()
        elif name == "AGENCY" and chan is not None and chan.role != "agency" and value:
            chan.role, chan.code = "agency", value
            self._start_attempt(chan, t)
            if chan.answered is not None:
                self._attempt_answered(chan, chan.answered)
            if chan.bridge is not None:
                chan.talk_leg = self._open_leg(
                    LegRecord("agency_talk", t, chan.name, uid, agency=value)
                )
                self._check_handoff()

    def caller_seen(self, uid: str, number: str, name: str = "") -> None:
        """A later record shows the caller ID of a channel (Local channels start without it)."""
        chan = self.channels.get(uid)
        number, name = safe_number(number), safe_name(name)
        if chan is None or not number:
            return
        chan.caller_number = chan.caller_number or number
        chan.caller_name = chan.caller_name or name
        if self.record is None or self.record.direction == "outbound":
            # A callback's number is the one dialled (dialed_number), not the caller ID the
            # citizen's channel carries (the center's own).
            return
        if uid == self.citizen and not self.record.caller_number:
            self.record.caller_number = number
            self.record.caller_name = self.record.caller_name or name

    def adopt_origin(self, uid: str) -> None:
        """Make ``uid`` the citizen of a journey that so far had only Local channels (a call
        originated into the hotline through a Local channel: its ``;2`` runs the dialplan)."""
        chan = self.channels.get(uid)
        if chan is not None and self.record is None and not self.outbound_hint:
            self._begin(chan, outbound=False)

    def hint_outbound(self) -> None:
        """The center itself placed this call (a callback run through Local channels): the
        journey is outbound and starts with the operator's channel, not with the Local pair
        that runs the callback dialplan."""
        self.outbound_hint = True

    def dtmf(self, t: float, uid: str, digit: str, context: str) -> None:
        """The citizen pressed a key; in an ``ivr*`` context it is a menu choice."""
        if self.record is None or uid != self.citizen or not context.startswith("ivr"):
            return
        language = context.split("-", 1)[1] if "-" in context else None
        self.record.ivr_choices.append(IvrChoiceRecord(t, context, digit, "", language))
        if language and not self.record.language:
            self.record.language = language
        self.event(t, "dtmf", self.channels[uid].name, digit=digit, context=context)

    def recording_start(self, t: float, uid: str, path: str) -> None:
        """MixMonitor started recording ``path`` on a channel."""
        chan = self.channels.get(uid)
        if chan is None or self.record is None or not path:
            return
        if any(r.path == path for r in self.record.recordings):
            return
        rec = RecordingRecord(path, chan.name, t)
        self.record.recordings.append(rec)
        self.recordings[uid] = rec
        self.event(t, "recording_start", chan.name, path=path)

    def recording_stop(self, t: float, uid: str) -> None:
        """MixMonitor stopped on a channel."""
        rec = self.recordings.pop(uid, None)
        if rec is not None and rec.ended_at is None:
            rec.ended_at = t

    def absorb(self, other: Journey) -> None:
        """Take over the channels of ``other``, a journey Asterisk started apart but that is
        part of this one (an agency brought into a conference by an originated Local pair gets
        a linkedid of its own). What ``other`` recorded moves here, its menu leg excepted:
        nobody called the hotline on it."""
        for uid, chan in other.channels.items():
            self.channels.setdefault(uid, chan)
        self._partners.update(other._partners)
        for bridge, members in other.bridges.items():
            self.bridges.setdefault(bridge, set()).update(members)
        for code, attempt in other.attempts.items():
            self.attempts.setdefault(code, attempt)
        self.recordings.update(other.recordings)
        if self.record is not None and other.record is not None:
            self.record.legs += [leg for leg in other.record.legs if leg.kind != "ivr"]
            self.record.events += other.record.events
            self.record.recordings += other.record.recordings
        self.last_time = max(self.last_time, other.last_time)
        if self.record is not None:
            self.event(other.last_time or self.last_time, "joined", "", linkedid=other.linkedid)

    # -- result --------------------------------------------------------------------------------

    def snapshot(self) -> JourneyRecord | None:
        """The record as known now (not finished): outcome ``in_progress``."""
        return self.record

    def finish(self, t: float | None = None) -> JourneyRecord | None:
        """Close what is still open and decide the outcome."""
        record = self.record
        if record is None:
            return None
        end = t if t is not None else self.last_time
        for chan in self.channels.values():
            if chan.hungup is None:
                self.hangup(end, chan.uid)
        for leg in record.legs:
            self._close(leg, end)
        for rec in record.recordings:
            if rec.ended_at is None:
                rec.ended_at = end
        record.ended_at = max(
            [c.hungup for c in self.channels.values() if c.hungup is not None] or [end]
        )
        self._settle_queue_legs(record)
        record.outcome = self._outcome(record)
        record.complete = True
        record.events.sort(key=lambda e: e.at)
        record.legs.sort(key=lambda leg: leg.started_at)
        return record

    # A caller who hangs up while waiting leaves the queue application first (CEL APP_END,
    # sometimes AMI QueueCallerLeave) and hangs up a moment later: that is still an abandon.
    ABANDON_GRACE = 2.0

    def _settle_queue_legs(self, record: JourneyRecord) -> None:
        citizen = self.channels.get(self.citizen) if self.citizen else None
        queue_legs = [leg for leg in record.legs if leg.kind == "queue_wait"]
        for leg in queue_legs:
            if leg.result is not None:
                continue
            last = leg is queue_legs[-1]
            if (
                last
                and record.answered_at is None
                and citizen is not None
                and citizen.hungup is not None
                and citizen.hung_up_by_self is not False
                and leg.ended_at is not None
                and citizen.hungup - leg.ended_at <= self.ABANDON_GRACE
            ):
                leg.result = "abandoned"
            else:
                leg.result = "exited"

    def _outcome(self, record: JourneyRecord) -> str:
        if record.answered_at is not None:
            return "answered"
        if record.direction == "outbound":
            return "unanswered"
        if record.hangup_cause in _FAILURE_CAUSES:
            return "dropped"
        if record.queue_passes == 0:
            return "abandoned_ivr"
        queue_results = [leg.result for leg in record.legs if leg.kind == "queue_wait"]
        if queue_results and queue_results[-1] == "abandoned":
            return "abandoned_queue"
        return "unanswered"


# --------------------------------------------------------------------------------------------
# The live front end: AMI events


def _float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


class JourneyBuilder:
    """Builds journeys from AMI events. Feed it every event; it returns what changed.

    ``feed`` returns a list of :class:`JourneyRecord`: a record with ``complete=False`` when a
    journey starts (so a crash mid-call still leaves a trace in the log), and the finished
    record (``complete=True``) when its last channel hangs up.
    """

    def __init__(self, directory: Directory | None = None,
                 on_handoff: Callable[[JourneyRecord, str], object] | None = None) -> None:
        self.directory = directory or Directory()
        #: ``on_handoff(record, agency)``: an incident's citizen now talks with ``agency``
        #: (see :meth:`Journey._check_handoff`); the server moves the incident on with it.
        self.on_handoff = on_handoff
        self.journeys: dict[str, Journey] = {}
        self.by_uid: dict[str, Journey] = {}
        self.aliases: dict[str, Journey] = {}  # linkedid merged into another journey
        self._handlers: dict[str, Callable[[Journey, dict[str, str], float], None]] = {
            "newchannel": self._on_newchannel,
            "newstate": self._on_newstate,
            "hangup": self._on_hangup,
            "varset": self._on_varset,
            "userevent": self._on_userevent,
            "cel": self._on_cel,
            "queuecallerjoin": self._on_queue_join,
            "queuecallerleave": self._on_queue_leave,
            "queuecallerabandon": self._on_queue_abandon,
            "agentcalled": self._on_note,
            "agentringnoanswer": self._on_note,
            "agentconnect": self._on_agent_connect,
            "agentcomplete": self._on_note,
            "agentdump": self._on_note,
            "bridgeenter": self._on_bridge_enter,
            "bridgeleave": self._on_bridge_leave,
            "dialbegin": self._on_dial_begin,
            "dialend": self._on_dial_end,
            "blindtransfer": self._on_transfer,
            "attendedtransfer": self._on_transfer,
            "mixmonitorstart": self._on_note,
            "mixmonitorstop": self._on_mixmonitor_stop,
            "confbridgejoin": self._on_bridge_enter,
            "confbridgeleave": self._on_bridge_leave,
            "cdr": self._on_note,
            "newexten": self._on_newexten,
            "newcallerid": self._on_nothing,
            "dtmfend": self._on_dtmf,
        }

    @property
    def active(self) -> int:
        """How many journeys are in progress."""
        return len(self.journeys)

    def _journey_for(self, event: Mapping[str, str], uid_key: str = "Uniqueid") -> Journey | None:
        uid = event.get(uid_key, "")
        journey = self.by_uid.get(uid)
        if journey is not None:
            return journey
        linked = event.get("Linkedid") or event.get("LinkedID") or ""
        return self.journeys.get(linked) or self.aliases.get(linked)

    def feed(self, event: Mapping[str, str], now: float) -> list[JourneyRecord]:
        """Apply one AMI event (header names as Asterisk sends them); return changed journeys.

        ``now`` is used when the event carries no ``Timestamp`` header.
        """
        name = event.get("Event", "").lower()
        handler = self._handlers.get(name)
        if handler is None:
            return []
        t = _float(event.get("Timestamp")) or now
        if name == "newchannel":
            return self._on_newchannel_root(event, t)
        journey = self._journey_for(event)
        if journey is None and name in ("dialbegin", "agentcalled", "agentconnect"):
            journey = self._journey_for(event, "DestUniqueid")
        if journey is None:
            return []
        if journey.record is None and event.get("Context", "") in self.directory.outbound_contexts:
            journey.hint_outbound()
        handler(journey, dict(event), t)
        number = event.get("CallerIDNum", "")
        if number and number != "<unknown>":
            # A Local channel gets its caller ID after it starts (NewCallerid and later events).
            name = event.get("CallerIDName", "")
            journey.caller_seen(
                event.get("Uniqueid", ""), number, "" if name == "<unknown>" else name
            )
        if journey.finished:
            return self._complete(journey)
        return []

    def _on_newchannel_root(self, event: Mapping[str, str], t: float) -> list[JourneyRecord]:
        uid = event.get("Uniqueid", "")
        linkedid = event.get("Linkedid") or uid
        if not uid or uid in self.by_uid:
            return []
        journey = self.journeys.get(linkedid) or self.aliases.get(linkedid)
        started = journey is None
        if journey is None:
            journey = self.journeys[linkedid] = Journey(linkedid, self.directory)
            journey.on_handoff = self.on_handoff
        self.by_uid[uid] = journey
        self._on_newchannel(journey, dict(event), t)
        if started and journey.record is not None:
            # A copy: the writer thread reads it while this thread goes on changing the live one.
            return [copy.deepcopy(journey.record)]
        return []

    def _complete(self, journey: Journey) -> list[JourneyRecord]:
        record = journey.finish()
        self.journeys.pop(journey.linkedid, None)
        for uid in journey.channels:
            self.by_uid.pop(uid, None)
        for linkedid in [k for k, j in self.aliases.items() if j is journey]:
            del self.aliases[linkedid]
        return [record] if record is not None else []

    def expire(self, now: float, idle_seconds: float = 3600.0) -> list[str]:
        """Forget journeys nothing happened to for ``idle_seconds`` (their end was never
        seen); return their linkedids. They stay ``in_progress`` in the log until CEL
        reconciliation completes them."""
        stale = [
            linkedid
            for linkedid, journey in self.journeys.items()
            if now - journey.last_time >= idle_seconds
        ]
        for linkedid in stale:
            journey = self.journeys.pop(linkedid)
            for uid in journey.channels:
                self.by_uid.pop(uid, None)
            for alias in [k for k, j in self.aliases.items() if j is journey]:
                del self.aliases[alias]
        return stale

    def abandon_all(self) -> list[str]:
        """Forget every journey in progress (AMI connection lost); return their linkedids.

        Their records stay ``in_progress`` in the log until CEL reconciliation completes them.
        """
        lost = list(self.journeys)
        self.journeys.clear()
        self.by_uid.clear()
        self.aliases.clear()
        return lost

    # -- handlers ----------------------------------------------------------------------------

    def _on_newchannel(self, j: Journey, e: dict[str, str], t: float) -> None:
        j.chan_start(
            t,
            e.get("Uniqueid", ""),
            e.get("Channel", ""),
            e.get("CallerIDNum", "").replace("<unknown>", ""),
            e.get("CallerIDName", "").replace("<unknown>", ""),
            e.get("Exten", ""),
        )

    def _on_newstate(self, j: Journey, e: dict[str, str], t: float) -> None:
        if e.get("ChannelState") == "6" or e.get("ChannelStateDesc") == "Up":
            j.answer(t, e.get("Uniqueid", ""))

    def _on_hangup(self, j: Journey, e: dict[str, str], t: float) -> None:
        j.hangup(t, e.get("Uniqueid", ""), _int(e.get("Cause")))

    def _on_varset(self, j: Journey, e: dict[str, str], t: float) -> None:
        # Set(__NAME=...) (inherited by the channels the call creates) is reported with its
        # underscores.
        variable = e.get("Variable", "").lstrip("_")
        if variable == contract.VAR_CALL and e.get("Value", "") not in ("", j.linkedid):
            # The dialplan names the journey this channel serves: merge into it.
            self._merge(j, e.get("Value", ""))
        elif variable == contract.VAR_CITIZEN:
            # The hotline dialplan marks the channel it runs on as the citizen's.
            j.adopt_origin(e.get("Uniqueid", ""))
        elif variable.startswith(MARK_PREFIX) and variable[len(MARK_PREFIX):] in MARK_NAMES:
            j.mark(t, e.get("Uniqueid", ""), variable[len(MARK_PREFIX):], e.get("Value", ""))
        elif variable == "MIXMONITOR_FILENAME":
            j.recording_start(t, e.get("Uniqueid", ""), e.get("Value", ""))

    def _merge(self, journey: Journey, into: str) -> None:
        target = self.journeys.get(into) or self.aliases.get(into)
        if target is None or target is journey:
            return
        target.absorb(journey)
        for uid in journey.channels:
            self.by_uid[uid] = target
        self.journeys.pop(journey.linkedid, None)
        self.aliases[journey.linkedid] = target
        for linkedid in [k for k, j in self.aliases.items() if j is journey]:
            self.aliases[linkedid] = target

    def _on_userevent(self, j: Journey, e: dict[str, str], t: float) -> None:
        name = e.get("UserEvent", "")
        if name.startswith(MARK_PREFIX) and name[len(MARK_PREFIX):] in MARK_NAMES:
            j.mark(t, e.get("Uniqueid", ""), name[len(MARK_PREFIX):], e.get("Value", ""))

    def _on_cel(self, j: Journey, e: dict[str, str], t: float) -> None:
        # CEL over AMI (cel.conf [manager]): the dialplan's own facts, and the ends of channels
        # and journeys as a second account of them, in case a Hangup event never arrived. The
        # rest duplicates AMI's own events.
        name = e.get("EventName", "")
        if name == "USER_DEFINED":
            name = e.get("UserDefType", "")
        uid = e.get("UniqueID", e.get("Uniqueid", ""))
        if name.startswith(MARK_PREFIX) and name[len(MARK_PREFIX):] in MARK_NAMES:
            j.mark(t, uid, name[len(MARK_PREFIX):], user_extra(e.get("Extra", "")))
        elif name in ("HANGUP", "CHAN_END"):
            extra = e.get("Extra", "")
            cause = None
            if extra.startswith("{"):
                try:
                    cause = _int(json.loads(extra).get("hangupcause"))
                except (ValueError, AttributeError):
                    cause = None
            j.hangup(t, uid, cause)
        elif name == "LINKEDID_END":
            for chan in list(j.channels.values()):
                j.hangup(t, chan.uid)

    def _on_queue_join(self, j: Journey, e: dict[str, str], t: float) -> None:
        j.queue_join(
            t,
            e.get("Uniqueid", ""),
            e.get("Queue", ""),
            e.get("CallerIDNum", "").replace("<unknown>", ""),
        )

    def _on_queue_leave(self, j: Journey, e: dict[str, str], t: float) -> None:
        j.queue_leave(t, e.get("Uniqueid", ""))

    def _on_queue_abandon(self, j: Journey, e: dict[str, str], t: float) -> None:
        j.queue_leave(t, e.get("Uniqueid", ""), abandoned=True)

    def _on_agent_connect(self, j: Journey, e: dict[str, str], t: float) -> None:
        j.event(t, "agent_connect", e.get("Channel", ""), member=e.get("MemberName", ""))
        code = self.directory.operator_for_interface(e.get("Interface", ""))
        if code is None:
            role, found = self.directory.classify(e.get("DestChannel", ""))
            code = found if role == "operator" else None
        j.member_connected(t, e.get("DestUniqueid", ""), code)

    def _on_bridge_enter(self, j: Journey, e: dict[str, str], t: float) -> None:
        j.bridge_enter(t, e.get("Uniqueid", ""), e.get("BridgeUniqueid", ""))

    def _on_bridge_leave(self, j: Journey, e: dict[str, str], t: float) -> None:
        j.bridge_exit(t, e.get("Uniqueid", ""), e.get("BridgeUniqueid", ""))

    def _on_dial_begin(self, j: Journey, e: dict[str, str], t: float) -> None:
        dest = e.get("DestUniqueid", "")
        if dest and dest not in self.by_uid:
            # The destination's Newchannel normally came first; if not, create it now.
            self.by_uid[dest] = j
            j.chan_start(
                t,
                dest,
                e.get("DestChannel", ""),
                e.get("DestCallerIDNum", ""),
                e.get("DestCallerIDName", ""),
                e.get("DestExten", ""),
            )
        j.event(t, "dial_begin", e.get("Channel", ""), to=e.get("DestChannel", ""))
        dial_string = e.get("DialString", "")
        if dial_string:
            # "trunk/0812..." or "0812...@trunk": the number is the part without the route.
            number = dial_string.rsplit("/", 1)[-1].split("@", 1)[0]
            j.dialed_number(dest, number)

    def _on_dial_end(self, j: Journey, e: dict[str, str], t: float) -> None:
        j.dial_end(t, e.get("DestUniqueid", ""), e.get("DialStatus", ""))

    def _on_transfer(self, j: Journey, e: dict[str, str], t: float) -> None:
        j.event(
            t,
            e.get("Event", "").lower(),
            e.get("TransfererChannel", e.get("OrigTransfererChannel", "")),
            result=e.get("Result", ""),
            to=e.get("Extension", e.get("SecondTransfererChannel", "")),
        )

    def _on_mixmonitor_stop(self, j: Journey, e: dict[str, str], t: float) -> None:
        j.recording_stop(t, e.get("Uniqueid", ""))

    def _on_newexten(self, j: Journey, e: dict[str, str], t: float) -> None:
        application = e.get("Application", "").lower()
        if j.record is None and application not in DIAL_APPS:
            # Only Local channels so far, and one of them now runs the dialplan: the hotline
            # runs on it (a call originated into the hotline through a Local channel).
            j.adopt_origin(e.get("Uniqueid", ""))
        if application == "mixmonitor":
            j.recording_start(t, e.get("Uniqueid", ""), e.get("AppData", "").split(",", 1)[0])

    def _on_dtmf(self, j: Journey, e: dict[str, str], t: float) -> None:
        if e.get("Direction", "Received") == "Received":
            j.dtmf(t, e.get("Uniqueid", ""), e.get("Digit", ""), e.get("Context", ""))

    def _on_nothing(self, j: Journey, e: dict[str, str], t: float) -> None:
        """Events read only for the caller ID every event carries (see ``feed``)."""

    def _on_note(self, j: Journey, e: dict[str, str], t: float) -> None:
        j.event(t, e.get("Event", "").lower(), e.get("Channel", ""))


def user_extra(extra: str) -> str:
    """The text a dialplan gave ``CELGenUserEvent``; Asterisk wraps it as ``{"extra": ...}``."""
    text = extra.strip()
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except ValueError:
            return text
        if isinstance(data, dict):
            return str(data.get("extra", ""))
    return text


def run(
    events: Iterable[Mapping[str, str]], directory: Directory | None = None
) -> list[JourneyRecord]:
    """Feed a recorded sequence of AMI events; return the finished journeys (tests, tools)."""
    builder = JourneyBuilder(directory)
    done: list[JourneyRecord] = []
    for event in events:
        for record in builder.feed(event, _float(event.get("Timestamp")) or 0.0):
            if record.complete:
                done.append(record)
    return done
