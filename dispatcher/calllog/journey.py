"""Sans-IO journey builder: AMI events (or CEL records) in, call/leg/event records out.

A *journey* is everything that happened to one citizen's call, across every channel Asterisk
created for it (menu, queue, operator, transfer attempts, agency, conference). Asterisk ties those
channels together with the *linkedid* of the first one. The builder keeps one :class:`Journey`
state machine per linkedid; two front ends feed it the same normalised facts:

* :class:`JourneyTracker` (also named ``JourneyBuilder``) takes AMI event dicts live
  (``feed(event, now)``) and owns the live journeys;
* :mod:`dispatcher.calllog.cel` takes CEL records after a restart (reconciliation).

Each fact runs through the journey's phase table (:mod:`.phases`) and returns *effects*: the
record opened, an incident's citizen handed to an agency, the journey ended, the journey ended
unanswered. The journey calls nothing; the tracker applies the effects (writes through the
writer, the ``on_handoff`` and ``on_unanswered`` hooks). The parts, one concern each:
:mod:`.records` (what is produced), :mod:`.directory` (who a channel belongs to),
:mod:`.legs` (the leg tables), :mod:`.marks` (the dialplan's facts), :mod:`.phases` (the
table and the effects), :mod:`.machine_base` and :mod:`.machine` (one journey's steps), and
this module (the AMI front end).

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
* ``SIAGA_SUPERVISION`` value ``listen|whisper|barge``: a supervisor's spy call, also the
  center's own (set only in the ``siaga-spy`` context, which only the server's Originate
  reaches); kept as a test call is, out of the reports

Without the QUEUE marks, CEL reconciliation still finds the queue from the application the
citizen's channel was running (the ``appname`` of its records); the marks make it exact. DTMF
the citizen sends in an ``ivr*`` context is kept as an IVR choice (AMI ``DTMFEnd``, CEL ``DTMF``);
the next ``SIAGA_CATEGORY`` says what the key meant.

Nothing here does I/O or reads a clock: times come with the events (AMI ``Timestamp``, which
needs ``timestampevents = yes`` in manager.conf) or from the ``now`` the caller passes.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from twisted.logger import Logger

from dispatcher.calllog import ami_events
from dispatcher.calllog.ami_events import HANDLERS
from dispatcher.calllog.directory import HELPER_TECHS, Directory, endpoint_of
from dispatcher.calllog.machine import Journey
from dispatcher.calllog.marks import DIAL_APPS, MARK_NAMES, user_extra
from dispatcher.calllog.phases import (
    Effect,
    EndedUnanswered,
    HandedOff,
    JourneyEnded,
    Phase,
    RecordOpened,
)
from dispatcher.calllog.records import (
    EventRecord,
    IvrChoiceRecord,
    JourneyRecord,
    LegRecord,
    RecordingRecord,
)

__all__ = [
    "DIAL_APPS",
    "HELPER_TECHS",
    "MARK_NAMES",
    "Directory",
    "EventRecord",
    "IvrChoiceRecord",
    "Journey",
    "JourneyBuilder",
    "JourneyFacts",
    "JourneyRecord",
    "JourneyTracker",
    "LegRecord",
    "Phase",
    "RecordingRecord",
    "endpoint_of",
    "run",
    "user_extra",
]


_log = Logger(namespace="dispatcher.calllog.journey")


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


@dataclass(frozen=True)
class JourneyFacts:
    """What is known of a live journey that the operator's console shows (the call card):
    who called which number, what they chose, since when they wait, how the call began.

    ``direction`` is ``outbound`` for a call the center placed (a callback, an alert's
    operator-first call); ``incident_ref`` the alert's incident it serves; ``queue_priority``
    app_queue's QUEUE_PRIO (higher is served first); ``citizen`` the citizen's channel name;
    ``callback_id`` the hotline callback (``CallbackList`` id) the center places with it;
    ``answered_by`` the operator's code who answered (None while nobody has).
    """

    linkedid: str
    started_at: float
    direction: str
    caller_number: str
    caller_name: str
    dialed: str
    category: str | None
    language: str | None
    queued_at: float | None
    answered_at: float | None
    incident_ref: int | None
    queue_priority: int | None
    citizen: str
    ended: bool
    callback_id: int | None = None
    answered_by: str | None = None

    @classmethod
    def of(cls, journey: Journey) -> JourneyFacts | None:
        """The facts of ``journey`` (None while it has no record: only helper channels)."""
        record = journey.record
        if record is None:
            return None
        citizen = journey.channels.get(journey.citizen) if journey.citizen else None
        return cls(record.linkedid, record.started_at, record.direction,
                   record.caller_number, record.caller_name, record.dialed, record.category,
                   record.language, record.queued_at, record.answered_at, record.incident_ref,
                   journey.queue_priority, citizen.name if citizen else "",
                   record.complete, journey.callback_id, record.answered_by)


def _facts_key(journey: Journey | None) -> tuple[Any, ...] | None:
    """What :class:`JourneyFacts` is made of, cheaply (compared before and after each
    event: the facts themselves are built only for a journey that changed)."""
    record = journey.record if journey is not None else None
    if record is None:
        return None
    assert journey is not None
    return (record.caller_number, record.caller_name, record.dialed, record.category,
            record.language, record.queued_at, record.answered_at, record.incident_ref,
            record.direction, record.complete, journey.queue_priority, journey.callback_id,
            journey.citizen)


#: Told when a journey's facts change (``JourneyTracker.listeners``).
FactsListener = Callable[[JourneyFacts], object]


class JourneyTracker:
    """Owns the live journeys and builds them from AMI events; applies their effects.

    ``feed`` returns a list of :class:`JourneyRecord` for the writer: a record with
    ``complete=False`` when a journey starts (so a crash mid-call still leaves a trace in the
    log), and the finished record (``complete=True``) when its last channel hangs up. Two
    hooks take the other effects:

    * ``on_handoff(record, agency)``: the citizen now talks with ``agency`` (the server
      moves the call's incident, an alert's or one opened on the console, on with it), once
      per agency;
    * ``on_unanswered(record)``: the journey ended without an operator and the citizen ever
      talking (:class:`~dispatcher.calllog.phases.EndedUnanswered`); the finished record is
      attached, the same one ``feed`` returns. Whether a callback is owed is the callbacks
      feature's rule, judged from the record.

    ``step`` gives the effects of one event without applying them.

    ``listeners`` (each ``listener(facts)``) hear of every journey whose
    :class:`JourneyFacts` an event changed, once per event, after its effects are applied:
    the console's call card follows them. A listener that raises is logged; the others and
    the journeys go on.
    """

    def __init__(
        self,
        directory: Directory | None = None,
        on_handoff: Callable[[JourneyRecord, str], object] | None = None,
        on_unanswered: Callable[[JourneyRecord], object] | None = None,
    ) -> None:
        self.directory = directory or Directory()
        self.on_handoff = on_handoff
        self.on_unanswered = on_unanswered
        self.journeys: dict[str, Journey] = {}
        self.by_uid: dict[str, Journey] = {}
        self.aliases: dict[str, Journey] = {}  # linkedid merged into another journey
        self.listeners: list[FactsListener] = []
        self._changed: dict[int, Journey] = {}  # journeys whose facts the last step changed

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
        """Apply one AMI event (header names as Asterisk sends them); return the records to
        write. ``now`` is used when the event carries no ``Timestamp`` header."""
        return self.apply(self.step(event, now))

    def step(self, event: Mapping[str, str], now: float) -> list[Effect]:
        """The effects of one AMI event on the journeys, not applied yet (see ``apply``)."""
        name = event.get("Event", "").lower()
        handler = HANDLERS.get(name)
        if handler is None:
            return []
        t = _float(event.get("Timestamp")) or now
        if name == "newchannel":
            before = _facts_key(self._journey_for(event))
            effects = self._on_newchannel_root(event, t)
            journey = self._journey_for(event)
            if journey is not None and _facts_key(journey) != before:
                self._changed[id(journey)] = journey
            return effects
        journey = self._journey_for(event)
        if journey is None and name in ("dialbegin", "agentcalled", "agentconnect"):
            journey = self._journey_for(event, "DestUniqueid")
        if journey is None:
            return []
        before = _facts_key(journey)
        try:
            return self._step(journey, name, handler, event, t)
        finally:
            after = self._journey_for(event) or journey
            if after is not journey or _facts_key(after) != before:
                self._changed[id(after)] = after

    def _step(self, journey: Journey, name: str, handler: Any, event: Mapping[str, str],  # noqa: ANN401
              t: float) -> list[Effect]:
        effects: list[Effect] = []
        if event.get("Context", "") in self.directory.outbound_contexts:
            effects += journey.hint_outbound()
        effects += handler(self, journey, dict(event), t)
        number = event.get("CallerIDNum", "")
        if number and number != "<unknown>":
            # A Local channel gets its caller ID after it starts (NewCallerid and later events).
            name = event.get("CallerIDName", "")
            effects += journey.caller_seen(
                event.get("Uniqueid", ""), number, "" if name == "<unknown>" else name
            )
        if journey.finished:
            effects += self._complete(journey)
        return effects

    def apply(self, effects: Iterable[Effect]) -> list[JourneyRecord]:
        """Apply effects: hooks are called; the records to write are returned (an opened one
        as a copy, since the writer thread reads it while this thread changes the live one)."""
        records: list[JourneyRecord] = []
        for effect in effects:
            if isinstance(effect, RecordOpened):
                # Written in progress when it opened with the journey's first channel; one
                # that opened later (Local channels first) is written when it ends.
                if effect.at_start:
                    records.append(copy.deepcopy(effect.record))
            elif isinstance(effect, JourneyEnded):
                records.append(effect.record)
            elif isinstance(effect, HandedOff):
                if self.on_handoff is not None:
                    self.on_handoff(effect.record, effect.agency)
            elif isinstance(effect, EndedUnanswered):
                if self.on_unanswered is not None:
                    self.on_unanswered(effect.record)
        self._tell_changes()
        return records

    def _tell_changes(self) -> None:
        changed, self._changed = list(self._changed.values()), {}
        for journey in changed:
            facts = JourneyFacts.of(journey)
            if facts is None:
                continue
            for listener in list(self.listeners):
                try:
                    listener(facts)
                except Exception:
                    _log.failure("journey facts listener failed on {linkedid}",
                                 linkedid=facts.linkedid)

    def facts(self, linkedid: str) -> JourneyFacts | None:
        """The facts of the live journey ``linkedid`` (or the one it was merged into)."""
        journey = self.journeys.get(linkedid) or self.aliases.get(linkedid)
        return JourneyFacts.of(journey) if journey is not None else None

    def _on_newchannel_root(self, event: Mapping[str, str], t: float) -> list[Effect]:
        uid = event.get("Uniqueid", "")
        linkedid = event.get("Linkedid") or uid
        if not uid or uid in self.by_uid:
            return []
        journey = self.journeys.get(linkedid) or self.aliases.get(linkedid)
        if journey is None:
            journey = self.journeys[linkedid] = Journey(linkedid, self.directory)
        self.by_uid[uid] = journey
        return ami_events.newchannel(self, journey, dict(event), t)

    def _complete(self, journey: Journey) -> list[Effect]:
        effects = journey.finish()
        self._forget(journey)
        return effects

    def _forget(self, journey: Journey) -> None:
        self.journeys.pop(journey.linkedid, None)
        for uid in journey.channels:
            self.by_uid.pop(uid, None)
        for linkedid in [k for k, j in self.aliases.items() if j is journey]:
            del self.aliases[linkedid]

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
            self._forget(self.journeys[linkedid])
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

    # -- handlers (each returns the effects of the facts it told) ---------------------------

    def merge(self, journey: Journey, into: str) -> list[Effect]:
        """``journey`` is part of the one Asterisk calls ``into`` (the dialplan's
        ``SIAGA_CALL``): that one takes its channels over; ``journey`` is known by it now."""
        target = self.journeys.get(into) or self.aliases.get(into)
        if target is None or target is journey:
            return []
        effects = target.absorb(journey)
        for uid in journey.channels:
            self.by_uid[uid] = target
        self.journeys.pop(journey.linkedid, None)
        self.aliases[journey.linkedid] = target
        for linkedid in [k for k, j in self.aliases.items() if j is journey]:
            self.aliases[linkedid] = target
        return effects

#: The name the server and the tests have always used for the tracker.
JourneyBuilder = JourneyTracker

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
