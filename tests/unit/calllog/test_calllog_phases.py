"""The journey's phase table: every (phase, fact) pair has a transition or is recorded, facts
out of order leave a trace in the audit trail, and effects reach the tracker's hooks."""

from __future__ import annotations

import json
import lzma
from pathlib import Path

import pytest

from dispatcher.calllog import cel, journey
from dispatcher.calllog.journey import JourneyBuilder, JourneyRecord
from dispatcher.calllog.machine import MAX_UNEXPECTED, Journey
from dispatcher.calllog.phases import (
    TRANSITIONS,
    UNEXPECTED,
    EndedUnanswered,
    Fact,
    HandedOff,
    JourneyEnded,
    Phase,
    RecordOpened,
    accepted_facts,
)
from tests.unit.calllog import calllog_scenarios as sc
from tests.unit.calllog.test_calllog_handoff import callback_then

CITIZEN, OPERATOR, LOCAL = "1.1", "1.2", "1.3"


def journey_in(phase: Phase) -> Journey:
    """A journey brought to ``phase`` by ordinary facts."""
    j = Journey("1.1", sc.DIRECTORY)
    j.chan_start(0.0, LOCAL, "Local/op@siaga-callback-0001;1")
    if phase is Phase.ORIGINATING:
        j.hint_outbound()
    elif phase is Phase.WAITING:
        j.chan_start(1.0, CITIZEN, "PJSIP/trunk-0001", "0812")
    elif phase is Phase.DIALLING:
        j.chan_start(1.0, OPERATOR, "PJSIP/201-0001")
    elif phase in (Phase.ANSWERED, Phase.ENDED):
        j.chan_start(1.0, CITIZEN, "PJSIP/trunk-0001", "0812")
        j.chan_start(2.0, OPERATOR, "PJSIP/201-0002")
        j.bridge_enter(3.0, CITIZEN, "b1")
        j.bridge_enter(3.0, OPERATOR, "b1")
    if phase is Phase.ENDED:
        for uid in (LOCAL, CITIZEN, OPERATOR):
            j.hangup(9.0, uid, 16)
        j.finish()
    assert j.phase is phase
    return j


def blind_transfer_to_police(linkedid: str) -> sc.Timeline:
    """An incident's callback (incident 42) the operator blind-transfers to police 301."""
    tl, operator, citizen = callback_then(linkedid)
    police = linkedid + "2"
    tl.unbridge(20.0, operator)
    tl.hangup(20.0, operator, 16, by_self=True)
    tl.channel(20.5, police, f"PJSIP/301-{linkedid}")
    tl.dial(20.5, citizen, police)
    tl.answer(25.0, police, dialed_by=citizen)
    tl.bridge(25.0, "b-" + linkedid, police)
    tl.hangup(60.0, citizen, 16, by_self=True)
    tl.hangup(60.0, police, 16)
    return tl


def unexpected(j: Journey) -> list[dict[str, str]]:
    """The unexpected facts the journey recorded, wherever it keeps them."""
    events = list(j.audit) + (list(j.record.events) if j.record is not None else [])
    return [e.detail for e in events if e.kind == UNEXPECTED]


@pytest.mark.parametrize("phase", list(Phase))
@pytest.mark.parametrize("fact", list(Fact))
def test_given_any_phase_and_fact_when_taken_then_it_moves_by_the_table_or_is_recorded(
    phase: Phase, fact: Fact
):
    """A pair in the table moves the journey to its next phase; any other pair changes
    nothing and leaves an ``unexpected`` event naming fact and phase."""
    j = journey_in(phase)
    before = len(unexpected(j))
    ran: list[bool] = []
    effects = j._take(fact, 5.0, lambda: ran.append(True))
    transition = TRANSITIONS.get((phase, fact))
    if transition is not None:
        assert j.phase is transition.next
        assert ran == ([True] if transition.step else [])
        assert len(unexpected(j)) == before
    else:
        assert (j.phase, ran, effects) == (phase, [], [])
        assert unexpected(j)[before:] == [
            {"fact": fact.value, "phase": phase.value, "reason": "not_accepted"}
        ]


def test_given_the_table_when_read_then_only_ended_accepts_nothing_and_every_phase_can_end():
    """Each phase but ``ended`` accepts facts and leads to ``ended``; ``ended`` is final."""
    assert accepted_facts(Phase.ENDED) == []
    for phase in set(Phase) - {Phase.ENDED}:
        assert TRANSITIONS[(phase, Fact.FINISHED)].next is Phase.ENDED
    # Only the record phases answer a call; nothing answers one twice.
    answering = {p for (p, f) in TRANSITIONS if f is Fact.CALL_ANSWERED}
    assert answering == {Phase.WAITING, Phase.DIALLING}
    # The record opens on the pairs that leave the no-record phases for a record phase.
    for (phase, _fact), transition in TRANSITIONS.items():
        opens = phase in (Phase.PENDING, Phase.ORIGINATING) and transition.next in (
            Phase.WAITING, Phase.DIALLING)
        assert (RecordOpened in transition.effects) == opens


def test_given_each_public_fact_when_the_journey_has_ended_then_each_is_recorded_not_applied():
    """After the end nothing is accepted: every fact method leaves an unexpected event on the
    journey and the handed-out record does not change."""
    j = journey_in(Phase.ENDED)
    assert j.record is not None
    legs, events = list(j.record.legs), list(j.record.events)
    facts = [
        lambda: j.chan_start(20.0, "9.9", "PJSIP/trunk-0009"),
        lambda: j.answer(20.0, CITIZEN),
        lambda: j.hangup(20.0, CITIZEN),
        lambda: j.queue_join(20.0, CITIZEN, "operators"),
        lambda: j.queue_leave(20.0, CITIZEN),
        lambda: j.bridge_enter(20.0, CITIZEN, "b2"),
        lambda: j.bridge_exit(20.0, CITIZEN, "b1"),
        lambda: j.member_connected(20.0, OPERATOR, "op201"),
        lambda: j.mark(20.0, CITIZEN, "CATEGORY", "fire"),
        lambda: j.mark(20.0, CITIZEN, "INCIDENT", "4"),
        lambda: j.dtmf(20.0, CITIZEN, "1", "ivr-id"),
        lambda: j.recording_start(20.0, CITIZEN, "/rec/x.wav"),
        lambda: j.event(20.0, "agentcalled"),
    ]
    for fact in facts:
        assert fact() == []
    assert len(unexpected(j)) == len(facts)
    assert {d["phase"] for d in unexpected(j)} == {"ended"}
    assert (j.record.legs, j.record.events) == (legs, events)
    assert j.record.category is None and j.record.incident_ref is None


def test_given_a_hangup_for_a_channel_never_started_when_fed_then_recorded_and_nothing_changes():
    """A Hangup naming a channel the journey never saw start (its Newchannel lost) is kept as
    an unexpected fact; legs and outcome are those of the same call without it."""
    clean = sc.answered_call("4000.1")
    stray = sc.answered_call("4000.1")
    stray.events.insert(3, {"Event": "Hangup", "Linkedid": "4000.1", "Uniqueid": "4000.77",
                            "Channel": "PJSIP/ghost-1", "Cause": "16",
                            "Timestamp": stray.events[3]["Timestamp"]})
    (expected,) = journey.run(clean.ami(), sc.DIRECTORY)
    (record,) = journey.run(stray.ami(), sc.DIRECTORY)
    assert [e.detail for e in record.events if e.kind == UNEXPECTED] == [
        {"fact": "channel_hung_up", "phase": "waiting", "reason": "unknown_channel"}
    ]
    assert [(g.kind, g.started_at, g.ended_at, g.result) for g in record.legs] == [
        (g.kind, g.started_at, g.ended_at, g.result) for g in expected.legs
    ]
    assert (record.outcome, record.answered_at) == (expected.outcome, expected.answered_at)


def test_given_facts_before_the_record_opens_when_it_opens_then_they_are_in_its_audit_trail():
    """A bridge entered and a category marked while only a Local channel exists are not
    applied (nothing to apply them to) but show in the record once it opens."""
    j = Journey("2.1", sc.DIRECTORY)
    j.chan_start(0.0, "2.1", "Local/s@hotline-0001;2")
    assert j.bridge_enter(0.5, "2.1", "b9") == []
    assert j.mark(0.6, "2.1", "CATEGORY", "fire") == []
    effects = j.chan_start(1.0, "2.2", "PJSIP/trunk-0002", "0812")
    assert [type(e) for e in effects] == [RecordOpened]
    record = effects[0].record
    assert [(d["fact"], d["phase"]) for d in unexpected(j)] == [
        ("bridge_entered", "pending"), ("mark", "pending")]
    assert record.category is None and j.channels["2.1"].bridge is None


def test_given_an_incident_mark_before_any_person_when_the_operator_comes_then_it_applies():
    """The incident a callback's Local pair marks is held (not an unexpected fact) and
    written into the record the operator's channel opens."""
    j = Journey("3.1", sc.DIRECTORY)
    j.chan_start(0.0, "3.1", "Local/operator@siaga-alerts-0001;1")
    j.mark(0.1, "3.1", "INCIDENT", "12")
    assert j.phase is Phase.ORIGINATING
    j.chan_start(1.0, "3.2", "PJSIP/202-0001")
    assert j.phase is Phase.DIALLING
    assert j.record is not None and j.record.incident_ref == 12
    assert unexpected(j) == []


def test_given_a_flood_of_stray_facts_when_finished_then_the_audit_trail_stays_bounded():
    """Past ``MAX_UNEXPECTED`` stray facts are only counted: one closing event says how many."""
    j = journey_in(Phase.WAITING)
    for n in range(MAX_UNEXPECTED + 40):
        j.answer(2.0, f"ghost-{n}")
    j.hangup(3.0, CITIZEN, 16)
    j.hangup(3.0, LOCAL, 16)
    (ended, _unanswered) = j.finish()
    assert isinstance(ended, JourneyEnded)
    strays = [e for e in ended.record.events if e.kind == UNEXPECTED]
    assert len(strays) == MAX_UNEXPECTED + 1
    assert strays[-1].detail == {"reason": "too_many", "count": "40"}


def test_given_a_call_abandoned_in_queue_when_fed_then_on_unanswered_gets_the_finished_record():
    """The journey ending unanswered is an effect; the tracker hands its record to
    ``on_unanswered``, the same record it returns for the writer."""
    told: list[JourneyRecord] = []
    builder = JourneyBuilder(sc.DIRECTORY, on_unanswered=told.append)
    written: list[JourneyRecord] = []
    for event in sc.abandoned_in_queue(after=20.0).ami():
        written += builder.feed(event, float(event["Timestamp"]))
    finished = [r for r in written if r.complete]
    assert len(told) == 1 and told[0] is finished[0]
    assert told[0].outcome == "abandoned_queue" and told[0].answered_at is None


def test_given_an_answered_call_when_fed_then_on_unanswered_is_not_told():
    """An answered journey ends with JourneyEnded only."""
    told: list[JourneyRecord] = []
    builder = JourneyBuilder(sc.DIRECTORY, on_unanswered=told.append)
    effects = []
    for event in sc.answered_call().ami():
        effects += builder.step(event, float(event["Timestamp"]))
    assert [type(e) for e in effects if not isinstance(e, RecordOpened)] == [JourneyEnded]
    assert told == []  # step returns effects; it applies none


def test_given_a_callback_handed_to_police_when_stepped_then_the_handoff_is_an_effect():
    """The hand-off is returned as an effect by ``step``; only ``apply`` calls the hook."""
    seen: list[str] = []
    builder = JourneyBuilder(sc.DIRECTORY, on_handoff=lambda record, agency: seen.append(agency))
    effects = []
    for event in blind_transfer_to_police("7300.1").ami():
        effects += builder.step(event, float(event["Timestamp"]))
    handoffs = [e for e in effects if isinstance(e, HandedOff)]
    assert [(e.record.incident_ref, e.agency) for e in handoffs] == [(42, "police")]
    assert seen == []
    builder.apply(handoffs)
    assert seen == ["police"]
    assert [e for e in effects if isinstance(e, EndedUnanswered)] == []


def test_given_a_callback_through_a_local_pair_when_fed_then_its_record_is_written_at_the_end():
    """A record that opens after Local channels (``at_start=False``) is not written in
    progress; one that opens with the journey's first channel is."""
    builder = JourneyBuilder(sc.DIRECTORY)
    opened: list[RecordOpened] = []
    written: list[JourneyRecord] = []
    for event in sc.alert_callback("9100.1").ami():
        effects = builder.step(event, float(event["Timestamp"]))
        opened += [e for e in effects if isinstance(e, RecordOpened)]
        written += builder.apply(effects)
    assert [e.at_start for e in opened] == [False]
    assert [r.complete for r in written] == [True]
    first = JourneyBuilder(sc.DIRECTORY)
    records = [r for ev in sc.answered_call("9200.1").ami()
               for r in first.feed(ev, float(ev["Timestamp"]))]
    assert [r.complete for r in records] == [False, True]


def test_given_cel_rows_for_a_channel_never_started_when_rebuilt_then_recorded_as_unexpected():
    """Reconciliation runs the same table: a CEL row about a channel whose CHAN_START is
    missing is kept in the rebuilt record's audit trail; the legs are those without it."""
    tl = sc.answered_call("4100.1")
    clean = cel.build_journey(tl.cel(), sc.DIRECTORY)
    stray = cel.CelRow(eventtype="BRIDGE_ENTER", eventtime=sc.T0 + 10.0,
                       channame="PJSIP/ghost-1", uniqueid="4100.77", linkedid="4100.1",
                       extra='{"bridge_id":"b-ghost"}')
    record = cel.build_journey([*tl.cel(), stray], sc.DIRECTORY)
    assert clean is not None and record is not None
    assert [e.detail for e in record.events if e.kind == UNEXPECTED] == [
        {"fact": "bridge_entered", "phase": "answered", "reason": "unknown_channel"}
    ]
    assert [(g.kind, g.ended_at) for g in record.legs] == [(g.kind, g.ended_at) for g in clean.legs]


class _Recording(dict):
    """The transition table, noting each pair looked up."""

    def __init__(self, table: dict) -> None:
        super().__init__(table)
        self.used: list = []

    def get(self, key, default=None):  # type: ignore[override]
        self.used.append(key)
        return super().get(key, default)


def test_given_every_scenario_when_fed_then_each_effect_is_one_its_transitions_declare(
    monkeypatch: pytest.MonkeyPatch,
):
    """An effect comes only from a pair whose transition lists it: over every scenario, each
    event's effects are among those declared by the pairs that event took."""
    from dispatcher.calllog import machine_base

    table = _Recording(TRANSITIONS)
    monkeypatch.setattr(machine_base, "TRANSITIONS", table)
    seen: set[type] = set()
    for make in (sc.answered_call, sc.abandoned_in_ivr, sc.abandoned_in_queue, sc.queued_twice,
                 sc.failed_transfer_with_fallback, sc.ring_group, sc.callback_call,
                 sc.alert_callback, lambda: blind_transfer_to_police("7400.1")):
        builder = JourneyBuilder(sc.DIRECTORY)
        for event in make().ami():
            table.used.clear()
            effects = builder.step(event, float(event["Timestamp"]))
            declared = {kind for key in table.used if key in TRANSITIONS
                        for kind in TRANSITIONS[key].effects}
            for effect in effects:
                assert type(effect) in declared, (event["Event"], effect)
                seen.add(type(effect))
    assert seen == {RecordOpened, JourneyEnded, EndedUnanswered, HandedOff}


def test_given_real_asterisk22_traffic_when_built_then_the_table_expects_every_fact(
    tmp_path: Path,
):
    """Calls recorded on a real Asterisk 22 (hotline menu and queue, transfers, conferences),
    from AMI and from CEL, take no pair the table lacks: the audit trail stays free of
    ``unexpected`` events on ordinary traffic."""
    from dispatcher.config.loader import load_center

    root = Path(__file__).resolve().parents[3]
    data = root / "tests" / "data" / "calllog"
    directory = journey.Directory.from_center(
        load_center(root / "config" / "siaga.example.yaml", state_dir=tmp_path))
    records: list[JourneyRecord] = []
    with lzma.open(data / "asterisk22-transfers.ami.json.xz", "rt") as f:
        records += journey.run(json.load(f), directory)
    records += journey.run(json.loads((data / "asterisk22-hotline.ami.json").read_text()),
                           directory)
    for name in ("asterisk22-hotline.cel.csv", "asterisk22-transfers.cel.csv"):
        groups = cel.merge_groups(cel.group_by_linkedid(cel.read_rows(str(data / name)).rows))
        records += [r for rows in groups.values() if (r := cel.build_journey(rows, directory))]
    assert len(records) >= 10
    assert [(r.linkedid, e.detail) for r in records for e in r.events
            if e.kind == UNEXPECTED] == []
