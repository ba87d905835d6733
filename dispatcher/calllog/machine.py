"""One journey: the queue, the bridges, the media and the dialplan's marks, on top of
:class:`~dispatcher.calllog.machine_base.JourneyBase` (the table, the record, the channels).

Every public method is a normalised fact and returns the effects it caused.
"""

from __future__ import annotations

from dispatcher.callerid import safe_number
from dispatcher.calllog.legs import Channel, close
from dispatcher.calllog.machine_base import MAX_UNEXPECTED, JourneyBase
from dispatcher.calllog.marks import describe
from dispatcher.calllog.phases import Effect, Fact, HandedOff
from dispatcher.calllog.records import IvrChoiceRecord, LegRecord, RecordingRecord

__all__ = ["MAX_UNEXPECTED", "Journey"]

_MARK_FACTS = {
    "INCIDENT": Fact.INCIDENT_MARK,
    "QUEUE": Fact.QUEUE_MARK,
    "QUEUE_EXIT": Fact.QUEUE_MARK,
}


class Journey(JourneyBase):
    """State machine of one linkedid. Methods are the normalised facts; times in epoch seconds."""

    # -- queue ---------------------------------------------------------------------------------

    def queue_join(self, t: float, uid: str, queue: str, caller_number: str = "") -> list[Effect]:
        """The citizen entered a queue (the channel that joins is the citizen's, by definition,
        when the journey had no record yet)."""
        return self._channel_fact(
            Fact.QUEUE_JOINED, t, uid, lambda c: self._queue_join(t, c, queue, caller_number)
        )

    def _queue_join(self, t: float, chan: Channel, queue: str, caller_number: str) -> None:
        if self.record is None:
            chan.caller_number = chan.caller_number or safe_number(caller_number)
            self._begin(chan, outbound=False)
        assert self.record is not None
        if chan.uid != self.citizen:
            return  # a callback's Local half queueing for an operator: not a queue pass
        close(self.legs.ivr, t)
        self._note(t, "queue_join", chan.name, queue=queue)
        if self.legs.queue is not None and self.legs.queue.ended_at is None:
            return  # told twice (QueueCallerJoin and SIAGA_QUEUE)
        self.record.queue_passes += 1
        if self.record.queued_at is None:
            self.record.queued_at = t
        self.legs.queue = self._open_leg(LegRecord("queue_wait", t, chan.name, chan.uid,
                                                  queue=queue))

    def queue_leave(self, t: float, uid: str, abandoned: bool = False) -> list[Effect]:
        """The citizen left the queue (answered, timed out, or hung up when ``abandoned``)."""
        return self._channel_fact(
            Fact.QUEUE_LEFT, t, uid, lambda c: self._queue_leave(t, c, abandoned)
        )

    def _queue_leave(self, t: float, chan: Channel, abandoned: bool) -> None:
        leg = self.legs.queue
        if leg is None or chan.uid != self.citizen or leg.ended_at is not None:
            return  # not the citizen's pass, or told twice (QueueCallerLeave, SIAGA_QUEUE_EXIT)
        self._note(t, "queue_abandon" if abandoned else "queue_leave", chan.name)
        close(self.legs.queue, t, "abandoned" if abandoned else None)

    def member_connected(self, t: float, member_uid: str, operator: str | None) -> list[Effect]:
        """The queue connected the citizen to a member channel (AMI AgentConnect).

        A member reached through a Local channel with no operator phone of ours behind it (a
        softphone outside the directory) still is the operator's leg: the Local channel takes
        the operator's role so its talk time counts.
        """
        chan = self.channels.get(member_uid)
        return self._take(Fact.MEMBER_CONNECTED, t,
                          lambda: self._member_connected(t, chan, operator),
                          chan.name if chan else "")

    def _member_connected(self, t: float, chan: Channel | None, operator: str | None) -> None:
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
        if self.record is None:
            return  # a callback's Local member: the operator's channel opens the record
        if self.record.direction == "outbound":
            # A callback's operator took it; the call is answered when the citizen is.
            self._check_answered(t)
            return
        self._operator_connected(t, chan.name if chan else "", operator or "")

    def _operator_connected(self, t: float, operator_channel: str, operator: str) -> None:
        """The citizen talks with an operator: the queue pass ends answered, and the first
        time, the call is answered (the derived fact ``call_answered``)."""
        assert self.record is not None
        if self.legs.queue is not None:
            close(self.legs.queue, t)
            if self.legs.queue.result is None:
                self.legs.queue.result = "answered"
        if self.record.answered_at is None:
            code = operator
            if not code and operator_channel:
                code = self.directory.classify(operator_channel)[1] or ""
            self._take(Fact.CALL_ANSWERED, t, lambda: self._answered(t, code or None))

    def _answered(self, t: float, by: str | None) -> None:
        assert self.record is not None
        self.record.answered_at = t
        self.record.answered_by = by

    def _check_answered(self, t: float) -> None:
        """The citizen is answered once an operator and the citizen are both in bridges.

        Any bridges, not the same one: queue members reached through Local channels sit in a
        different bridge from the citizen until Asterisk optimises the Local pair away.
        """
        assert self.record is not None
        if self.record.answered_at is not None or self.citizen is None:
            return  # answered already, or a callback whose citizen's channel is not up yet
        if self.channels[self.citizen].bridge is None:
            return
        for chan in self.channels.values():
            if chan.role == "operator" and chan.bridge is not None:
                self._operator_connected(t, chan.name, chan.code or "")
                return

    # -- bridges -------------------------------------------------------------------------------

    def bridge_enter(self, t: float, uid: str, bridge: str) -> list[Effect]:
        """A channel entered a bridge."""
        return self._channel_fact(Fact.BRIDGE_ENTERED, t, uid,
                                  lambda c: self._bridge_enter(t, c, bridge))

    def _bridge_enter(self, t: float, chan: Channel, bridge: str) -> None:
        if chan.bridge == bridge:
            return  # told twice (BridgeEnter and ConfbridgeJoin)
        if chan.bridge is not None:
            self._bridge_exit(t, chan, chan.bridge)
        self.legs.enter(chan, bridge)
        self._note(t, "bridge_enter", chan.name, bridge=bridge)
        if chan.role == "operator":
            chan.talk_leg = self._open_leg(
                LegRecord("operator_talk", t, chan.name, chan.uid, operator=chan.code)
            )
        elif chan.role == "agency":
            if chan.attempt is not None and chan.answered is None:
                self._answer(t, chan)
            chan.talk_leg = self._open_leg(
                LegRecord("agency_talk", t, chan.name, chan.uid, agency=chan.code)
            )
        self._check_answered(t)
        self.legs.update_conferences(t, self._open_leg)
        self._check_handoff()

    def bridge_exit(self, t: float, uid: str, bridge: str) -> list[Effect]:
        """A channel left a bridge."""
        return self._channel_fact(Fact.BRIDGE_LEFT, t, uid,
                                  lambda c: self._bridge_exit(t, c, bridge))

    def _bridge_exit(self, t: float, chan: Channel, bridge: str) -> None:
        if chan.bridge != bridge:
            return  # told already: its hang-up or its next bridge took it out
        self.legs.leave(chan, bridge)
        self._note(t, "bridge_exit", chan.name, bridge=bridge)
        close(chan.talk_leg, t)
        chan.talk_leg = None
        self.legs.update_conferences(t, self._open_leg)

    def _check_handoff(self) -> None:
        """A citizen talking with an agency is a :class:`HandedOff` effect, once per agency:
        both in one bridge (a blind or completed attended transfer) or one conference (the
        agency's Local leg resolved through the pair). An operator consulting an agency while
        the citizen waits on hold is not a hand-off. Every call's hand-off is told, with or
        without an alert's incident: an operator may have opened an incident from the call
        on the console, which the journey does not know of."""
        if self.record is None:
            return
        citizen = self.channels.get(self.citizen or "")
        if citizen is None or citizen.bridge is None:
            return
        for uid in self.legs.reachable(citizen.bridge):
            chan = self.channels[uid]
            # Once per agency and incident: an alert's incident tagged on the call after the
            # agency joined hears of the hand-off then.
            key = (self.record.incident_ref, chan.code)
            if chan.role == "agency" and chan.code and key not in self._handed:
                self._handed.add(key)
                self._effects.append(HandedOff(self.record, chan.code))

    # -- facts the dialplan adds ---------------------------------------------------------------

    def mark(self, t: float, uid: str, name: str, value: str) -> list[Effect]:
        """A ``SIAGA_*`` fact set by the dialplan (see :mod:`dispatcher.calllog.journey`)."""
        chan = self.channels.get(uid)
        fact = _MARK_FACTS.get(name, Fact.MARK)
        return self._take(fact, t, lambda: self._mark(t, uid, chan, name, value),
                          chan.name if chan else "")

    def _mark(self, t: float, uid: str, chan: Channel | None, name: str, value: str) -> None:
        if self.record is None:
            # Set on the Local pair of an alert's callback, before any real channel: held
            # until the operator's channel opens the record.
            self._held_marks.append((t, uid, name, value))
            return
        key = (name, value, round(t))
        if self._last_mark == key:
            return  # told twice (VarSet and CEL over AMI)
        self._last_mark = key
        channel = chan.name if chan else ""
        self._note(t, "mark", channel, name=name, value=value)
        if not describe(self.record, t, name, value):
            self._note(t, "bad_incident_ref", channel, value=value)
        if name == "INCIDENT":
            self._check_handoff()
        elif name == "QUEUE":
            self.queue_join(t, uid, value)
        elif name == "QUEUE_EXIT":
            self.queue_leave(t, uid)
        elif name == "RECORDING":
            self.recording_start(t, uid, value)
        elif name == "AGENCY" and chan is not None and chan.role != "agency" and value:
            chan.role, chan.code = "agency", value
            self.legs.start_attempt(chan, self._open_leg)
            if chan.answered is not None:
                self.legs.attempt_answered(chan, chan.answered)
            if chan.bridge is not None:
                chan.talk_leg = self._open_leg(
                    LegRecord("agency_talk", t, chan.name, uid, agency=value)
                )
                self._check_handoff()

    def absorb(self, other: JourneyBase) -> list[Effect]:
        """Take over the channels of ``other``, a journey Asterisk started apart but that is
        part of this one (an agency brought into a conference by an originated Local pair gets
        a linkedid of its own). What ``other`` recorded moves here, its menu leg excepted:
        nobody called the hotline on it."""
        def step() -> None:
            self.legs.absorb(other.legs)
            if self.record is not None and other.record is not None:
                self.record.legs += [leg for leg in other.record.legs if leg.kind != "ivr"]
                self.record.events += other.record.events
                self.record.recordings += other.record.recordings
            # What ``other`` found unexpected before it had a record stays on the trail.
            (self.record.events if self.record is not None else self.audit).extend(other.audit)
            self.unexpected += other.unexpected
            self.last_time = max(self.last_time, other.last_time)
            self._note(other.last_time or self.last_time, "joined", "", linkedid=other.linkedid)
        return self._take(Fact.JOURNEY_JOINED, other.last_time or self.last_time, step)

    def dtmf(self, t: float, uid: str, digit: str, context: str) -> list[Effect]:
        """The citizen pressed a key; in an ``ivr*`` context it is a menu choice."""
        return self._channel_fact(Fact.DTMF, t, uid, lambda c: self._dtmf(t, c, digit, context))

    def _dtmf(self, t: float, chan: Channel, digit: str, context: str) -> None:
        assert self.record is not None
        if chan.uid != self.citizen or not context.startswith("ivr"):
            return  # an operator's keys, or the citizen's outside a menu: not a choice
        language = context.split("-", 1)[1] if "-" in context else None
        self.record.ivr_choices.append(IvrChoiceRecord(t, context, digit, "", language))
        if language and not self.record.language:
            self.record.language = language
        self._note(t, "dtmf", chan.name, digit=digit, context=context)

    def recording_start(self, t: float, uid: str, path: str) -> list[Effect]:
        """MixMonitor started recording ``path`` on a channel."""
        return self._channel_fact(Fact.RECORDING_STARTED, t, uid,
                                  lambda c: self._recording_start(t, c, path))

    def _recording_start(self, t: float, chan: Channel, path: str) -> None:
        assert self.record is not None
        if not path or any(r.path == path for r in self.record.recordings):
            return  # told again (MIXMONITOR_FILENAME, the MixMonitor step, SIAGA_RECORDING)
        rec = RecordingRecord(path, chan.name, t)
        self.record.recordings.append(rec)
        self.legs.recordings[chan.uid] = rec
        self._note(t, "recording_start", chan.name, path=path)

    def recording_stop(self, t: float, uid: str) -> list[Effect]:
        """MixMonitor stopped on a channel (one with no recording open: nothing to end)."""
        def step() -> None:
            rec = self.legs.recordings.pop(uid, None)
            if rec is not None and rec.ended_at is None:
                rec.ended_at = t
        return self._take(Fact.RECORDING_STOPPED, t, step)
