"""One journey's plumbing and channel life, under the phase table of :mod:`.phases`.

:class:`JourneyBase` keeps the journey's state, runs each fact through the table, opens and
closes the record and follows each channel from start to hang-up;
:class:`dispatcher.calllog.machine.Journey` adds the queue, the bridges and the dialplan's
marks. Every public method is a normalised fact (the AMI and CEL front ends call them); each returns
the effects it caused (:data:`~dispatcher.calllog.phases.Effect`), for the tracker to apply.
A fact first meets the table: a pair it lacks is recorded as ``unexpected`` in the audit trail
and changes nothing; a pair marked ``step=False`` moves the phase only. Then its step runs.
Sans-IO: no clock, no I/O; times come with the facts (epoch seconds).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dispatcher.callerid import safe_name, safe_number
from dispatcher.calllog.directory import Directory
from dispatcher.calllog.legs import Channel, LegTables, close, outcome, settle_queue_legs
from dispatcher.calllog.phases import (
    TRANSITIONS,
    UNEXPECTED,
    Effect,
    EndedUnanswered,
    Fact,
    JourneyEnded,
    Phase,
    RecordOpened,
)
from dispatcher.calllog.records import (
    EventRecord,
    JourneyRecord,
    LegRecord,
)

__all__ = ["MAX_UNEXPECTED", "JourneyBase"]

#: Unexpected facts kept per journey; past it they are only counted (one closing event says
#: how many), so a confused or hostile event stream cannot grow a record without bound.
MAX_UNEXPECTED = 32


class JourneyBase:
    """State machine of one linkedid: the table, the record, the channels."""

    def __init__(self, linkedid: str, directory: Directory, source: str = "ami") -> None:
        self.linkedid = linkedid
        self.directory = directory
        self.source = source
        self.phase = Phase.PENDING
        self.record: JourneyRecord | None = None  # opens with the journey's first person
        self.legs = LegTables()
        self.citizen: str | None = None  # uid of the citizen's channel, once known
        #: app_queue's QUEUE_PRIO the dialplan gave the call (higher is served first).
        self.queue_priority: int | None = None
        #: The hotline callback this call makes (the server's SIAGA_CALLBACK_ID).
        self.callback_id: int | None = None
        self.last_time = 0.0
        #: Unexpected facts while no record is open (moved into it when it opens), or after
        #: it ended. Bounded by :data:`MAX_UNEXPECTED` with those of the record.
        self.audit: list[EventRecord] = []
        self.unexpected = 0
        self._first_seen: float | None = None  # the first helper channel, before the record
        self._held_marks: list[tuple[float, str, str, str]] = []  # incident, before the record
        self._last_mark: tuple[str, str, float] | None = None
        self._handed: set[tuple[int | None, str]] = set()  # (incident, agency) told
        self._effects: list[Effect] = []
        self._depth = 0
        self._fresh = True  # no fact taken yet

    @property
    def channels(self) -> dict[str, Channel]:
        """The journey's channels by uid."""
        return self.legs.channels

    @property
    def finished(self) -> bool:
        """True once every channel of the journey has hung up."""
        return self.legs.all_hung_up

    # -- the table -----------------------------------------------------------------------------

    def _take(
        self,
        fact: Fact,
        t: float,
        step: Callable[[], None] | None,
        channel: str = "",
        refused: str | None = None,
    ) -> list[Effect]:
        """Run ``fact`` through the table, then its step; return the effects (the outermost
        fact returns those of the facts it caused too)."""
        transition = TRANSITIONS.get((self.phase, fact))
        self._depth += 1
        try:
            if refused is not None or transition is None:
                self._unexpected(t, fact, channel, refused or "not_accepted")
            else:
                # The phase moves first, so a fact the step causes meets the new one.
                self.phase = transition.next
                if step is not None and transition.step:
                    step()
        except Exception:
            if self._depth == 1:
                self._effects.clear()  # a failed fact's effects are not handed to the next
            raise
        finally:
            self._depth -= 1
        if self._depth:
            return []
        self._fresh = False
        effects, self._effects = self._effects, []
        return effects

    def _unexpected(self, t: float, fact: Fact, channel: str, reason: str) -> None:
        self.unexpected += 1
        if self.unexpected > MAX_UNEXPECTED:
            return
        detail = {"fact": fact.value, "phase": self.phase.value, "reason": reason}
        event = EventRecord(t, UNEXPECTED, channel, detail)
        if self.record is not None and self.phase is not Phase.ENDED:
            self.record.events.append(event)
        else:
            self.audit.append(event)

    def _touch(self, t: float) -> None:
        self.last_time = max(self.last_time, t)

    def _note(self, t: float, kind: str, channel: str = "", **detail: Any) -> None:
        if self.record is None:
            return  # before the record: the table let only facts with nothing to note through
        self._touch(t)
        self.record.events.append(
            EventRecord(t, kind, channel, {k: str(v) for k, v in detail.items() if v not in ("",)})
        )

    def _open_leg(self, leg: LegRecord) -> LegRecord:
        assert self.record is not None
        self.record.legs.append(leg)
        return leg

    # -- channel life --------------------------------------------------------------------------

    def chan_start(
        self, t: float, uid: str, name: str, caller_number: str = "", caller_name: str = "",
        exten: str = "",
    ) -> list[Effect]:
        """A channel of this journey was created."""
        self._touch(t)
        if uid in self.channels:
            return []  # told twice (Newchannel, and DialBegin naming its destination)
        # The caller chose these (a SIP From): only a clean number or name is kept; the
        # dialplan's cleaned one arrives with the channel's later events (caller_seen).
        role, code = self.directory.classify(name)
        chan = Channel(uid, name, role, code, t, safe_number(caller_number),
                       safe_name(caller_name), exten)
        fact = {"local": Fact.HELPER_CHANNEL, "operator": Fact.OPERATOR_CHANNEL}.get(
            role, Fact.PERSON_CHANNEL)
        return self._take(fact, t, lambda: self._chan_start(t, chan), name)

    def _chan_start(self, t: float, chan: Channel) -> None:
        self.legs.add(chan)
        if self.record is None:
            if chan.role == "local":
                # A Local channel first (an originate through the dialplan): the journey's
                # nature shows with the first real channel, or when one joins the queue.
                self._first_seen = min(self._first_seen or t, t)
                return
            self._begin(chan, outbound=chan.role == "operator")
        elif self.record.direction == "outbound" and chan.role == "other" and self.citizen is None:
            self.citizen = chan.uid  # a callback: the first channel that is nobody of ours
        self._note(t, "chan_start", chan.name, caller=chan.caller_number, exten=chan.exten)
        if chan.role == "agency":
            self.legs.start_attempt(chan, self._open_leg)

    def _begin(self, chan: Channel, outbound: bool) -> None:
        """Open the record with ``chan`` as the origin: the citizen, or (``outbound``) the
        operator of a callback the center originates."""
        start = min(self._first_seen or chan.created, chan.created)
        self.citizen = None if outbound else chan.uid
        self.record = JourneyRecord(
            linkedid=self.linkedid, started_at=start,
            direction="outbound" if outbound else "inbound",
            caller_number="" if outbound else chan.caller_number,
            caller_name="" if outbound else chan.caller_name,
            dialed=chan.exten, source=self.source,
        )
        self.record.events.extend(self.audit)
        self.audit.clear()
        if not outbound:
            self.legs.ivr = self._open_leg(LegRecord("ivr", start, chan.name, chan.uid))
        self._effects.append(RecordOpened(self.record, at_start=self._fresh))
        held, self._held_marks = self._held_marks, []
        for mark in held:
            self.mark(*mark)

    def _channel_fact(
        self, fact: Fact, t: float, uid: str, step: Callable[[Channel], None]
    ) -> list[Effect]:
        """A fact about one channel: one the journey never saw start is unexpected (its
        uid stands in the audit event's channel column)."""
        chan = self.channels.get(uid)
        if chan is None:
            return self._take(fact, t, None, uid, refused="unknown_channel")
        return self._take(fact, t, lambda: step(chan), chan.name)

    def answer(self, t: float, uid: str) -> list[Effect]:
        """A channel answered."""
        return self._channel_fact(Fact.CHANNEL_ANSWERED, t, uid, lambda c: self._answer(t, c))

    def _answer(self, t: float, chan: Channel) -> None:
        if chan.answered is not None:
            return  # told twice (Newstate, DialEnd ANSWER, an agency entering a bridge)
        chan.answered = t
        self._note(t, "answer", chan.name)
        if chan.attempt is not None:
            self.legs.attempt_answered(chan, t)

    def hangup(
        self, t: float, uid: str, cause: int | None = None, dial_status: str = "",
        by_self: bool | None = None,
    ) -> list[Effect]:
        """A channel hung up (``by_self``: its own side hung up, when known)."""
        return self._channel_fact(
            Fact.CHANNEL_HUNG_UP, t, uid, lambda c: self._hangup(t, c, cause, dial_status, by_self)
        )

    def _hangup(
        self, t: float, chan: Channel, cause: int | None, dial_status: str, by_self: bool | None
    ) -> None:
        if chan.hungup is not None:
            return  # told twice (Hangup, and CEL's HANGUP, CHAN_END and LINKEDID_END)
        chan.hungup = t
        if self.record is None:
            return
        self._touch(t)
        chan.hung_up_by_self = by_self
        self._note(t, "hangup", chan.name, cause=cause if cause is not None else "")
        if chan.bridge is not None:
            self._bridge_exit(t, chan, chan.bridge)
        if chan.attempt is not None:
            self.legs.attempt_channel_gone(chan, t, cause, dial_status or chan.dial_status)
        recording = self.legs.recordings.pop(chan.uid, None)
        if recording is not None and recording.ended_at is None:
            recording.ended_at = t
        if chan.uid == self.citizen or (self.citizen is None and chan.role == "operator"):
            self.record.hangup_cause = cause
            close(self.legs.ivr, t)
            # Hanging up while waiting is an abandon; leaving for an operator was handled by
            # the bridge before.
            close(self.legs.queue, t, "abandoned")
            self.legs.cancel_attempts(t)

    def dial_end(self, t: float, dest_uid: str, status: str) -> list[Effect]:
        """A Dial to ``dest_uid`` ended with ``status`` (AMI DialEnd)."""
        return self._channel_fact(Fact.DIAL_ENDED, t, dest_uid,
                                  lambda c: self._dial_end(t, c, status))

    def _dial_end(self, t: float, chan: Channel, status: str) -> None:
        chan.dial_status = status
        self._note(t, "dial_end", chan.name, status=status)
        if status.upper() == "ANSWER":
            self._answer(t, chan)

    def dialed_number(self, uid: str, number: str) -> list[Effect]:
        """The number a Dial rang on ``uid`` (a callback's citizen number)."""
        def step() -> None:
            assert self.record is not None
            if uid == self.citizen and not self.record.caller_number:
                self.record.caller_number = number
        return self._take(Fact.NUMBER_DIALLED, self.last_time, step)

    def caller_seen(self, uid: str, number: str, name: str = "") -> list[Effect]:
        """A later record shows the caller ID of a channel (Local channels start without it).

        Every AMI event carries a caller ID: one on a channel this journey does not know, or
        none at all, tells it nothing (not an unexpected fact)."""
        chan = self.channels.get(uid)
        number, name = safe_number(number), safe_name(name)
        if chan is None or not number:
            return []
        return self._take(Fact.CALLER_ID_SEEN, self.last_time,
                          lambda: self._caller_seen(chan, number, name), chan.name)

    def _caller_seen(self, chan: Channel, number: str, name: str) -> None:
        chan.caller_number = chan.caller_number or number
        chan.caller_name = chan.caller_name or name
        if self.record is None or self.record.direction == "outbound":
            # A callback's number is the one dialled (dialed_number), not the caller ID the
            # citizen's channel carries (the center's own).
            return
        if chan.uid == self.citizen and not self.record.caller_number:
            self.record.caller_number = number
            self.record.caller_name = self.record.caller_name or name

    def adopt_origin(self, uid: str) -> list[Effect]:
        """The hotline runs on ``uid``: its citizen, if the journey had only Local channels so
        far (a call originated into the hotline through a Local channel: its ``;2`` runs the
        dialplan). The table ignores it once the record is open, and for a callback."""
        return self._channel_fact(Fact.CITIZEN_MARKED, self.last_time, uid,
                                  lambda c: self._begin(c, outbound=False))

    def hint_outbound(self) -> list[Effect]:
        """The center itself placed this call (a callback run through Local channels): the
        journey is outbound and starts with the operator's channel, not with the Local pair
        that runs the callback dialplan."""
        return self._take(Fact.OUTBOUND_HINTED, self.last_time, None)

    def event(self, t: float, kind: str, channel: str = "", **detail: Any) -> list[Effect]:
        """Keep an event for the audit trail."""
        return self._take(Fact.NOTE, t, lambda: self._note(t, kind, channel, **detail), channel)

    # -- the end -------------------------------------------------------------------------------

    # The steps the subclass adds (a held incident mark replays through ``mark``; a hang-up
    # takes its channel out of its bridge).

    def mark(self, t: float, uid: str, name: str, value: str) -> list[Effect]:
        raise NotImplementedError

    def _bridge_exit(self, t: float, chan: Channel, bridge: str) -> None:
        raise NotImplementedError

    def snapshot(self) -> JourneyRecord | None:
        """The record as known now (not finished): outcome ``in_progress``."""
        return self.record

    def finish(self, t: float | None = None) -> list[Effect]:
        """Close what is still open and decide the outcome (``t``: when, if not the last fact)."""
        end = t if t is not None else self.last_time
        return self._take(Fact.FINISHED, end, lambda: self._finish(end))

    def _finish(self, end: float) -> None:
        record = self.record
        if record is None:
            return
        for chan in self.channels.values():
            if chan.hungup is None:
                self._hangup(end, chan, None, "", None)
        for leg in record.legs:
            close(leg, end)
        for rec in record.recordings:
            if rec.ended_at is None:
                rec.ended_at = end
        record.ended_at = max(
            [c.hungup for c in self.channels.values() if c.hungup is not None] or [end]
        )
        settle_queue_legs(record, self.channels.get(self.citizen) if self.citizen else None)
        record.outcome = outcome(record)
        record.complete = True
        if self.unexpected > MAX_UNEXPECTED:
            record.events.append(EventRecord(end, UNEXPECTED, "", {
                "reason": "too_many", "count": str(self.unexpected - MAX_UNEXPECTED)}))
        record.events.sort(key=lambda e: e.at)
        record.legs.sort(key=lambda leg: leg.started_at)
        self._effects.append(JourneyEnded(record))
        if record.answered_at is None:
            self._effects.append(EndedUnanswered(record))

