"""A journey's leg tables: its channels, the bridges they share, transfer attempts, conferences
and open recordings, and how those legs end and add up to an outcome.

The journey (:mod:`dispatcher.calllog.journey`) decides *when* a leg opens or closes; this
module keeps the tables and answers the questions about them (who hears a bridge, how an attempt
to reach an agency ended, what the call's outcome is). Sans-IO, like the journey.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from dispatcher.calllog.records import JourneyRecord, LegRecord, RecordingRecord

__all__ = [
    "ABANDON_GRACE",
    "FAILURE_CAUSES",
    "Attempt",
    "Channel",
    "LegTables",
    "close",
    "outcome",
    "settle_queue_legs",
]

# Hangup causes (Q.850) that mean the network or Asterisk failed, not that a person hung up.
FAILURE_CAUSES = frozenset({1, 3, 27, 34, 38, 41, 42, 44, 47, 58, 66, 88, 102, 111})
_BUSY_CAUSES = frozenset({17})
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
# A caller who hangs up while waiting leaves the queue application first (CEL APP_END,
# sometimes AMI QueueCallerLeave) and hangs up a moment later: that is still an abandon.
ABANDON_GRACE = 2.0

OpenLeg = Callable[[LegRecord], LegRecord]


def close(leg: LegRecord | None, t: float, result: str | None = None) -> None:
    """End ``leg`` at ``t`` (never before it started) unless it has ended; keep a result it has."""
    if leg is None or leg.ended_at is not None:
        return
    leg.ended_at = max(t, leg.started_at)
    if result is not None and leg.result is None:
        leg.result = result


@dataclass
class Channel:
    """One channel of a journey, as far as the log cares."""

    uid: str
    name: str
    role: str  # operator, agency, local, other (Directory.classify)
    code: str | None
    created: float
    caller_number: str = ""
    caller_name: str = ""
    exten: str = ""
    answered: float | None = None
    hungup: float | None = None
    bridge: str | None = None
    talk_leg: LegRecord | None = None
    attempt: Attempt | None = None
    dial_status: str | None = None
    hung_up_by_self: bool | None = None


@dataclass
class Attempt:
    """One transfer attempt to an agency; a ring group rings several channels at once."""

    leg: LegRecord
    ringing: set[str] = field(default_factory=set)
    statuses: list[str] = field(default_factory=list)


class LegTables:
    """The tables of one journey: channels by uid, bridges by id, Local pairs, the citizen's
    menu leg and current queue pass, the open attempt per agency, the open conference per
    bridge and the open recording per channel."""

    def __init__(self) -> None:
        self.ivr: LegRecord | None = None  # the citizen's time in the menu
        self.queue: LegRecord | None = None  # the citizen's latest pass through the queue
        self.channels: dict[str, Channel] = {}
        self.bridges: dict[str, set[str]] = {}
        self.partners: dict[str, str] = {}  # Local channel uid -> the other half's uid
        self.attempts: dict[str, Attempt] = {}  # agency code -> open attempt
        self.last_failed_attempt: LegRecord | None = None
        self.conferences: dict[str, LegRecord] = {}  # bridge -> open conference leg
        self.recordings: dict[str, RecordingRecord] = {}  # uid -> open recording

    @property
    def all_hung_up(self) -> bool:
        """True once there are channels and every one of them hung up."""
        return bool(self.channels) and all(c.hungup is not None for c in self.channels.values())

    def add(self, chan: Channel) -> None:
        """Keep a new channel; pair the halves of a Local channel."""
        self.channels[chan.uid] = chan
        name = chan.name
        if name.startswith("Local/") and name[-2:] in (";1", ";2"):
            other = name[:-1] + ("2" if name.endswith("1") else "1")
            for known in self.channels.values():
                if known.name == other:
                    self.partners[chan.uid], self.partners[known.uid] = known.uid, chan.uid

    # -- bridges -----------------------------------------------------------------------------

    def enter(self, chan: Channel, bridge: str) -> None:
        """``chan`` is in ``bridge`` now (it left any other one before)."""
        chan.bridge = bridge
        self.bridges.setdefault(bridge, set()).add(chan.uid)

    def leave(self, chan: Channel, bridge: str) -> None:
        """``chan`` left ``bridge``; a bridge nobody is in is forgotten."""
        chan.bridge = None
        members = self.bridges.get(bridge, set())
        members.discard(chan.uid)
        if not members:
            self.bridges.pop(bridge, None)

    def people(self, bridge: str) -> set[str]:
        """The people talking in a bridge: its own channels and, when two of them talk there,
        those a Local channel in it leads to (an agency brought into a conference through a
        Local pair sits in a bridge of its own with the pair's other half)."""
        members = self.bridges.get(bridge, set())
        people = {u for u in members if self.channels[u].role != "local"}
        if len(people) < 2:
            return people
        for uid in members:
            if self.channels[uid].role != "local":
                continue
            partner = self.channels.get(self.partners.get(uid, ""))
            if partner is not None and partner.bridge is not None and partner.bridge != bridge:
                people |= {
                    u
                    for u in self.bridges.get(partner.bridge, set())
                    if self.channels[u].role != "local"
                }
        return people

    def reachable(self, bridge: str) -> set[str]:
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
                if self.channels[uid].role != "local":
                    people.add(uid)
                    continue
                partner = self.channels.get(self.partners.get(uid, ""))
                if partner is not None and partner.bridge is not None:
                    todo.append(partner.bridge)
        return people

    def update_conferences(self, t: float, open_leg: OpenLeg) -> None:
        """A conference leg runs while three people or more share a bridge."""
        for bridge in set(self.bridges) | set(self.conferences):
            leg = self.conferences.get(bridge)
            many = len(self.people(bridge)) >= 3
            if many and leg is None:
                self.conferences[bridge] = open_leg(LegRecord("conference", t, "", bridge))
            elif not many and leg is not None:
                close(self.conferences.pop(bridge), t)

    # -- transfers to agencies ---------------------------------------------------------------

    def start_attempt(self, chan: Channel, open_leg: OpenLeg) -> None:
        """An agency's phone rings: part of the open attempt to that agency, or a new one."""
        assert chan.code is not None
        attempt = self.attempts.get(chan.code)
        if attempt is None:
            if self.last_failed_attempt is not None:
                # A failed attempt followed by another try is a fallback.
                self.last_failed_attempt.fallback = True
                self.last_failed_attempt = None
            leg = open_leg(
                LegRecord("transfer_attempt", chan.created, chan.name, chan.uid, agency=chan.code)
            )
            attempt = self.attempts[chan.code] = Attempt(leg)
        attempt.ringing.add(chan.uid)
        chan.attempt = attempt

    def attempt_answered(self, chan: Channel, t: float) -> None:
        """One phone of the attempt answered: the attempt succeeded."""
        attempt = chan.attempt
        assert attempt is not None
        if attempt.leg.answered_at is None:
            attempt.leg.answered_at = t
            attempt.leg.channel, attempt.leg.uniqueid = chan.name, chan.uid
            close(attempt.leg, t, "answered")
            self.last_failed_attempt = None
        if chan.code is not None and self.attempts.get(chan.code) is attempt:
            del self.attempts[chan.code]

    def attempt_channel_gone(
        self, chan: Channel, t: float, cause: int | None, dial_status: str | None
    ) -> None:
        """A ringing phone of an attempt hung up; the last one gone ends the attempt."""
        attempt = chan.attempt
        assert attempt is not None
        attempt.ringing.discard(chan.uid)
        if attempt.leg.ended_at is not None:
            return  # answered, or cancelled with the citizen's hang-up
        if cause in _ANSWERED_ELSEWHERE:
            status = "cancelled"
        elif dial_status and dial_status.upper() in _DIALSTATUS_RESULTS:
            status = _DIALSTATUS_RESULTS[dial_status.upper()]
        elif cause in _BUSY_CAUSES:
            status = "busy"
        elif cause in FAILURE_CAUSES:
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
        close(attempt.leg, t, result)
        if chan.code is not None and self.attempts.get(chan.code) is attempt:
            del self.attempts[chan.code]
        if result != "cancelled":
            self.last_failed_attempt = attempt.leg

    def cancel_attempts(self, t: float) -> None:
        """The citizen is gone: every attempt still ringing is cancelled."""
        for attempt in self.attempts.values():
            close(attempt.leg, t, "cancelled")
        self.attempts.clear()

    def absorb(self, other: LegTables) -> None:
        """Take over another journey's tables (see ``Journey.absorb``)."""
        for uid, chan in other.channels.items():
            self.channels.setdefault(uid, chan)
        self.partners.update(other.partners)
        for bridge, members in other.bridges.items():
            self.bridges.setdefault(bridge, set()).update(members)
        for code, attempt in other.attempts.items():
            self.attempts.setdefault(code, attempt)
        self.recordings.update(other.recordings)


# -- the end of a journey ---------------------------------------------------------------------


def settle_queue_legs(record: JourneyRecord, citizen: Channel | None) -> None:
    """Give every queue pass a result: the last one is an abandon when the unanswered citizen
    hung up themselves within :data:`ABANDON_GRACE` of leaving it; any other is ``exited``."""
    queue_legs = [leg for leg in record.legs if leg.kind == "queue_wait"]
    for leg in queue_legs:
        if leg.result is not None:
            continue
        if (
            leg is queue_legs[-1]
            and record.answered_at is None
            and citizen is not None
            and citizen.hungup is not None
            and citizen.hung_up_by_self is not False
            and leg.ended_at is not None
            and citizen.hungup - leg.ended_at <= ABANDON_GRACE
        ):
            leg.result = "abandoned"
        else:
            leg.result = "exited"


def outcome(record: JourneyRecord) -> str:
    """The outcome of a finished journey (``calls.outcome``)."""
    if record.answered_at is not None:
        return "answered"
    if record.direction == "outbound":
        return "unanswered"
    if record.hangup_cause in FAILURE_CAUSES:
        return "dropped"
    if record.queue_passes == 0:
        return "abandoned_ivr"
    queue_results = [leg.result for leg in record.legs if leg.kind == "queue_wait"]
    if queue_results and queue_results[-1] == "abandoned":
        return "abandoned_queue"
    return "unanswered"
