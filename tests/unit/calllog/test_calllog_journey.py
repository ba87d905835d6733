"""The sans-IO journey builder: AMI event sequences in, journeys with their legs out."""

from __future__ import annotations

from pathlib import Path

import pytest

from dispatcher.calllog import cel, journey
from dispatcher.calllog.journey import Directory, JourneyBuilder, JourneyRecord
from pbx.ami.protocol import AMIParser, Message
from tests.unit.calllog import calllog_scenarios as sc

CAPTURE = Path(__file__).resolve().parents[2] / "data" / "ami" / "asterisk22-session.raw"


def only(records: list[JourneyRecord]) -> JourneyRecord:
    """The single journey of a scenario."""
    assert len(records) == 1, [r.linkedid for r in records]
    return records[0]


def legs(record: JourneyRecord, kind: str) -> list[journey.LegRecord]:
    """The legs of one kind, in order."""
    return [leg for leg in record.legs if leg.kind == kind]


def rel(t: float | None) -> float | None:
    """A time relative to the scenarios' start."""
    return None if t is None else round(t - sc.T0, 3)


def test_given_an_answered_hotline_call_when_built_then_menu_queue_and_talk_legs_are_right():
    """Menu 0-5 s, queue 5-9 s, operator 201 from 9 s to 69 s; IVR choice and category kept."""
    record = only(journey.run(sc.answered_call().ami(), sc.DIRECTORY))
    assert record.outcome == "answered"
    assert record.direction == "inbound"
    assert record.caller_number == "081234567"
    assert record.answered_by == "op201"
    assert [leg.kind for leg in record.legs] == ["ivr", "queue_wait", "operator_talk"]
    assert [(rel(leg.started_at), rel(leg.ended_at)) for leg in record.legs] == [
        (0.0, 5.0),
        (5.0, 9.0),
        (9.0, 69.0),
    ]
    assert legs(record, "queue_wait")[0].result == "answered"
    assert (record.answer_seconds, record.queue_seconds, record.talk_seconds) == (9.0, 4.0, 60.0)
    assert record.duration_seconds == 69.0
    assert record.category == "police" and record.language == "id"
    assert [(c.menu, c.digit, c.choice, c.language) for c in record.ivr_choices] == [
        ("ivr-id", "1", "police", "id")
    ]
    assert [(r.path, rel(r.started_at), rel(r.ended_at)) for r in record.recordings] == [
        ("/rec/1000.1.wav", 9.0, 69.0)
    ]


def test_given_any_journey_when_built_then_its_events_are_in_time_order():
    """The audit trail is sorted by time and starts with the citizen's channel."""
    record = only(journey.run(sc.failed_transfer_with_fallback().ami(), sc.DIRECTORY))
    times = [e.at for e in record.events]
    assert times == sorted(times)
    assert record.events[0].kind == "chan_start"
    assert record.events[0].channel == "PJSIP/trunk-5000.1"
    assert record.events[-1].kind == "hangup"


def test_given_a_caller_hanging_up_in_the_menu_when_built_then_abandoned_in_ivr():
    """No queue, no operator: abandoned in the IVR, one menu leg."""
    record = only(journey.run(sc.abandoned_in_ivr(after=12.0).ami(), sc.DIRECTORY))
    assert record.outcome == "abandoned_ivr"
    assert [leg.kind for leg in record.legs] == ["ivr"]
    assert record.duration_seconds == 12.0
    assert record.answered_at is None and record.answer_seconds is None


def test_given_a_caller_hanging_up_while_queued_when_built_then_abandoned_in_queue():
    """QueueCallerAbandon makes the queue leg 'abandoned' and the call abandoned in queue."""
    record = only(journey.run(sc.abandoned_in_queue(after=20.0).ami(), sc.DIRECTORY))
    assert record.outcome == "abandoned_queue"
    wait = legs(record, "queue_wait")
    assert [(rel(w.started_at), rel(w.ended_at), w.result) for w in wait] == [
        (5.0, 20.0, "abandoned")
    ]
    assert record.category == "fire"


def test_given_a_call_queued_twice_when_built_then_one_journey_with_two_queue_passes():
    """Timeout then overflow back into the queue: one call, two waits, answer at 40 s."""
    records = journey.run(sc.queued_twice().ami(), sc.DIRECTORY)
    record = only(records)
    assert record.queue_passes == 2
    assert [w.result for w in legs(record, "queue_wait")] == ["exited", "answered"]
    assert record.queue_seconds == 34.0
    assert record.answer_seconds == 40.0
    assert record.answered_by == "op202"


def test_given_an_unanswered_transfer_when_a_fallback_answers_then_attempts_say_so():
    """Police 301 rings 20 s unanswered (fallback follows), 309 answers after 6 s; the three
    parties then talk in one bridge (a conference leg)."""
    record = only(journey.run(sc.failed_transfer_with_fallback().ami(), sc.DIRECTORY))
    attempts = legs(record, "transfer_attempt")
    assert [(a.channel, a.agency, a.result, a.fallback) for a in attempts] == [
        ("PJSIP/301-5000.1", "police", "no_answer", True),
        ("PJSIP/309-5000.1", "police", "answered", False),
    ]
    assert attempts[1].ring_seconds == 6.0
    talk = legs(record, "agency_talk")
    assert [(rel(t.started_at), rel(t.ended_at), t.agency) for t in talk] == [
        (47.0, 107.0, "police")
    ]
    assert [(rel(c.started_at), rel(c.ended_at)) for c in legs(record, "conference")] == [
        (47.0, 107.0)
    ]
    assert record.outcome == "answered"


def test_given_a_ring_group_when_one_phone_answers_then_one_answered_attempt():
    """301 and 302 ring together; 302 answers, 301 is cancelled: one attempt, answered, no
    fallback, no failure counted."""
    record = only(journey.run(sc.ring_group().ami(), sc.DIRECTORY))
    attempts = legs(record, "transfer_attempt")
    assert [(a.channel, a.result, a.fallback, a.ring_seconds) for a in attempts] == [
        ("PJSIP/302-6000.1", "answered", False, 5.0)
    ]
    assert [(rel(t.started_at), rel(t.ended_at)) for t in legs(record, "operator_talk")] == [
        (5.0, 25.0)
    ]


@pytest.mark.parametrize(
    ("status", "cause", "expected"),
    [
        ("BUSY", 17, "busy"),
        ("NOANSWER", 19, "no_answer"),
        ("CONGESTION", 34, "failed"),
        ("CHANUNAVAIL", 20, "failed"),
    ],
)
def test_given_a_transfer_dial_ending_with_status_when_built_then_attempt_result_follows(
    status: str, cause: int, expected: str
):
    """DialEnd's status decides the attempt's result; the call stays answered by the operator."""
    tl = sc.Timeline("8000.1")
    citizen, operator, police = "8000.1", "8000.11", "8000.12"
    tl.channel(0.0, citizen, "PJSIP/trunk-8000", "0816666", "112")
    tl.queue_join(1.0, citizen)
    tl.channel(2.0, operator, "PJSIP/201-8000")
    tl.answer(3.0, operator, dialed_by=citizen)
    tl.agent_connect(3.0, citizen, operator, "PJSIP/201")
    tl.bridge(3.0, "b", operator, citizen)
    tl.channel(10.0, police, "PJSIP/301-8000")
    tl.dial(10.0, operator, police)
    tl.no_answer(12.0, police, operator, status, cause)
    tl.hangup(30.0, citizen, 16)
    tl.hangup(30.0, operator, 16)
    record = only(journey.run(tl.ami(), sc.DIRECTORY))
    (attempt,) = legs(record, "transfer_attempt")
    assert attempt.result == expected
    assert attempt.fallback is False  # nothing was tried after it
    assert record.outcome == "answered"


def test_given_an_operator_first_callback_when_built_then_outbound_with_incident_and_number():
    """The operator's channel comes first: outbound; answered when the citizen is bridged."""
    record = only(journey.run(sc.callback_call(incident=42).ami(), sc.DIRECTORY))
    assert record.direction == "outbound"
    assert record.outcome == "answered"
    assert record.caller_number == "08199999"
    assert record.incident_ref == 42
    assert record.answer_seconds == 10.0
    assert [leg.kind for leg in record.legs] == ["operator_talk"]


def test_given_a_new_call_when_its_first_channel_appears_then_an_unfinished_copy_is_returned():
    """The start notice lets the log hold the call before it ends; it is a snapshot, not the
    live record the builder keeps changing."""
    builder = JourneyBuilder(sc.DIRECTORY)
    events = sc.answered_call().ami()
    first = builder.feed(events[0], now=0.0)
    assert [(r.linkedid, r.complete, r.outcome) for r in first] == [
        ("1000.1", False, "in_progress")
    ]
    finished = []
    for event in events[1:]:
        finished += builder.feed(event, now=0.0)
    assert [r.complete for r in finished] == [True]
    assert first[0].legs[0].ended_at is None  # the snapshot did not change under the writer
    assert builder.active == 0


def test_given_interleaved_calls_when_fed_then_each_journey_is_kept_apart():
    """Two calls at once, events interleaved by time: two journeys, each with its own legs."""
    a, b = sc.answered_call("1.1"), sc.abandoned_in_queue("2.1", t0=sc.T0 + 2)
    events = sorted(a.ami() + b.ami(), key=lambda e: float(e["Timestamp"]))
    records = {r.linkedid: r for r in journey.run(events, sc.DIRECTORY)}
    assert set(records) == {"1.1", "2.1"}
    assert records["1.1"].outcome == "answered"
    assert records["2.1"].outcome == "abandoned_queue"
    assert {leg.channel for leg in records["2.1"].legs} == {"PJSIP/trunk-2.1"}


def test_given_a_lost_ami_connection_when_abandon_all_then_journeys_in_progress_are_dropped():
    """After a disconnect the builder forgets half-seen calls (CEL will complete them)."""
    builder = JourneyBuilder(sc.DIRECTORY)
    for event in sc.answered_call().ami()[:6]:
        builder.feed(event, now=0.0)
    assert builder.active == 1
    assert builder.abandon_all() == ["1000.1"]
    assert builder.active == 0
    # Events of the forgotten call are ignored, not misfiled as a new journey.
    assert builder.feed({"Event": "Hangup", "Uniqueid": "1000.1", "Linkedid": "1000.1"}, 1) == []


def test_given_an_event_without_timestamp_when_fed_then_now_is_used():
    """Without ``timestampevents`` the caller's clock dates the event."""
    builder = JourneyBuilder(sc.DIRECTORY)
    event = {
        "Event": "Newchannel",
        "Channel": "PJSIP/trunk-1",
        "Uniqueid": "9.1",
        "Linkedid": "9.1",
        "CallerIDNum": "0817",
    }
    (record,) = builder.feed(event, now=1234.5)
    assert record.started_at == 1234.5


def test_given_ami_and_cel_of_the_same_calls_when_built_then_the_journeys_agree():
    """The live builder and the reconciliation give the same legs, outcome and figures."""
    for make in (
        sc.answered_call,
        sc.abandoned_in_ivr,
        sc.abandoned_in_queue,
        sc.queued_twice,
        sc.failed_transfer_with_fallback,
        sc.ring_group,
    ):
        tl = make()
        live = only(journey.run(tl.ami(), sc.DIRECTORY))
        rebuilt = cel.build_journey(tl.cel(), sc.DIRECTORY)
        assert rebuilt is not None
        assert rebuilt.outcome == live.outcome, make.__name__
        summary = [
            (leg.kind, leg.started_at, leg.ended_at, leg.result, leg.fallback) for leg in live.legs
        ]
        assert [
            (leg.kind, leg.started_at, leg.ended_at, leg.result, leg.fallback)
            for leg in rebuilt.legs
        ] == summary, make.__name__
        assert (rebuilt.answer_seconds, rebuilt.talk_seconds, rebuilt.queue_seconds) == (
            live.answer_seconds,
            live.talk_seconds,
            live.queue_seconds,
        ), make.__name__


def _capture_events() -> list[dict[str, str]]:
    parser = AMIParser()
    messages = parser.feed(CAPTURE.read_bytes())
    return [m.fields for m in messages if isinstance(m, Message) and m.kind == Message.EVENT]


def test_given_real_asterisk22_queue_traffic_when_built_then_two_answered_journeys():
    """Traffic recorded from Asterisk 22 for the AMI parser (two callers, queue members behind
    Local channels, plus a Local pair parked in a hold context): each caller is one answered
    journey with its queue wait and its operator's talk."""
    events = _capture_events()
    assert len(events) > 100
    builder = JourneyBuilder(Directory(operators={"op1": "op1", "op2": "op2"}))
    done: list[JourneyRecord] = []
    for i, event in enumerate(events):
        done += [r for r in builder.feed(event, now=1000.0 + i) if r.complete]
    queued = [r for r in done if r.queue_passes]
    assert sorted(r.answered_by or "" for r in queued) == ["op1", "op2"]
    for record in queued:
        assert record.outcome == "answered"
        kinds = [leg.kind for leg in record.legs]
        assert kinds[:2] == ["ivr", "queue_wait"] and "operator_talk" in kinds
        assert record.queue_passes == 1
        assert record.talk_seconds is not None and record.talk_seconds > 0
        starts = [leg.started_at for leg in record.legs]
        assert starts == sorted(starts)
    others = [r for r in done if not r.queue_passes]
    assert [r.outcome for r in others] == ["abandoned_ivr"]  # the hold pair never queued


def test_given_the_example_city_when_building_the_directory_then_phones_map_to_their_owner(
    tmp_path: Path,
):
    """Operators by extension; agency phones and fallbacks by agency key; a fallback that is a
    supervisor's phone stays nobody's agency."""
    from dispatcher.config.loader import load_center

    root = Path(__file__).resolve().parents[3]
    center = load_center(root / "config" / "siaga.example.yaml", state_dir=tmp_path)
    directory = Directory.from_center(center)
    assert directory.classify("PJSIP/201-00000001") == ("operator", "201")
    assert directory.classify("PJSIP/302-0000000a") == ("agency", "police")
    assert directory.classify("PJSIP/309-0000000b") == ("agency", "police")
    assert directory.classify("PJSIP/351-0000000c") == ("agency", "transport")
    assert directory.classify("PJSIP/290-0000000d") == ("other", None)
    assert directory.classify("Local/201@operators-00000001;1") == ("local", None)
    assert directory.operator_for_interface("Local/201@operators/n") == "201"


def test_given_an_inherited_variable_when_set_then_the_fact_is_still_recorded():
    """``Set(__SIAGA_CATEGORY=fire)`` is reported as ``__SIAGA_CATEGORY``: still the category."""
    tl = sc.abandoned_in_ivr("10.1")
    events = tl.ami()
    events.insert(
        2,
        {
            "Event": "VarSet",
            "Timestamp": f"{sc.T0 + 1:.6f}",
            "Linkedid": "10.1",
            "Uniqueid": "10.1",
            "Channel": "PJSIP/trunk-10.1",
            "Variable": "__SIAGA_CATEGORY",
            "Value": "fire",
        },
    )
    assert only(journey.run(events, sc.DIRECTORY)).category == "fire"


HOTLINE_AMI = (
    Path(__file__).resolve().parents[2] / "data" / "calllog" / "asterisk22-hotline.ami.json"
)
HOTLINE_CEL = (
    Path(__file__).resolve().parents[2] / "data" / "calllog" / "asterisk22-hotline.cel.csv"
)


def _example_directory(tmp_path: Path) -> Directory:
    from dispatcher.config.loader import load_center

    root = Path(__file__).resolve().parents[3]
    return Directory.from_center(
        load_center(root / "config" / "siaga.example.yaml", state_dir=tmp_path)
    )


def test_given_real_hotline_ami_traffic_when_built_then_menu_and_queue_abandons_are_told_apart(
    tmp_path: Path,
):
    """Recorded from Asterisk 22 on the example city (tests/data/calllog/capture.py): caller A
    pressed 1 (police) and hung up in the queue; caller B hung up in the menu after 4 s."""
    import json

    events = json.loads(HOTLINE_AMI.read_text())
    records = {r.caller_number: r for r in journey.run(events, _example_directory(tmp_path))}
    assert set(records) == {"08123456789", "08120000002"}
    a, b = records["08123456789"], records["08120000002"]
    assert (a.outcome, a.category, a.language) == ("abandoned_queue", "police", "id")
    assert [leg.kind for leg in a.legs] == ["ivr", "queue_wait"]
    assert [(c.menu, c.digit, c.choice) for c in a.ivr_choices] == [("ivr-id", "1", "police")]
    assert [r.path.rsplit("/", 1)[-1] for r in a.recordings] == [f"{a.linkedid}.wav"]
    assert (b.outcome, [leg.kind for leg in b.legs]) == ("abandoned_ivr", ["ivr"])
    assert b.duration_seconds == pytest.approx(4.0, abs=0.5)


def test_given_the_cel_file_of_the_same_calls_when_rebuilt_then_it_agrees_with_ami(
    tmp_path: Path,
):
    """The CEL file Asterisk wrote for those calls gives the same journeys: outcomes, legs and
    their durations (to the millisecond; AMI and CEL stamp the same moments), the IVR key."""
    import json

    directory = _example_directory(tmp_path)
    live = {r.linkedid: r for r in journey.run(json.loads(HOTLINE_AMI.read_text()), directory)}
    rows = cel.read_rows(str(HOTLINE_CEL))
    assert rows.bad_lines == []
    rebuilt = {
        linkedid: cel.build_journey(group, directory)
        for linkedid, group in cel.group_by_linkedid(rows.rows).items()
    }
    assert set(rebuilt) == set(live)
    for linkedid, record in rebuilt.items():
        assert record is not None
        ami = live[linkedid]
        assert (record.outcome, record.caller_number) == (ami.outcome, ami.caller_number)
        assert [leg.kind for leg in record.legs] == [leg.kind for leg in ami.legs]
        for mine, theirs in zip(record.legs, ami.legs, strict=True):
            assert mine.duration == pytest.approx(theirs.duration, abs=0.01)
            assert mine.result == theirs.result
        assert [c.digit for c in record.ivr_choices] == [c.digit for c in ami.ivr_choices]


def test_given_cel_without_the_dialplans_queue_events_when_rebuilt_then_the_queue_is_found():
    """Without SIAGA_QUEUE user events the queue shows in the appname of the citizen's records
    (its announcement): the wait runs from there to the operator's answer, as AMI says."""
    tl = sc.answered_call("11.1", user_events=False)
    assert not any(row.eventtype.startswith("SIAGA_QUEUE") for row in tl.cel())
    live = only(journey.run(tl.ami(), sc.DIRECTORY))
    rebuilt = cel.build_journey(tl.cel(), sc.DIRECTORY)
    assert rebuilt is not None
    assert [(leg.kind, leg.started_at, leg.ended_at, leg.result) for leg in rebuilt.legs] == [
        (leg.kind, leg.started_at, leg.ended_at, leg.result) for leg in live.legs
    ]
    assert rebuilt.queue_seconds == 4.0


def test_given_a_callback_when_the_citizens_channel_shows_our_caller_id_then_it_is_ignored():
    """The citizen's leg of a callback presents the center's number; the log keeps the number
    that was dialled."""
    events = sc.callback_call().ami()
    for event in events:
        if event.get("Uniqueid") == "7000.11":
            event["CallerIDNum"] = "021112"  # what the trunk presents for the center
    record = only(journey.run(events, sc.DIRECTORY))
    assert record.caller_number == "08199999"


TRANSFERS_AMI = HOTLINE_AMI.with_name("asterisk22-transfers.ami.json.xz")
TRANSFERS_CEL = HOTLINE_AMI.with_name("asterisk22-transfers.cel.csv")


def _transfer_events() -> list[dict[str, str]]:
    import json
    import lzma

    with lzma.open(TRANSFERS_AMI, "rt") as f:
        return json.load(f)


def _kinds(record: JourneyRecord) -> list[tuple[str, str | None, str | None, bool]]:
    return [(leg.kind, leg.agency, leg.result, leg.fallback) for leg in record.legs]


def test_given_real_transfers_when_built_from_ami_then_each_way_shows_in_the_legs(tmp_path: Path):
    """Recorded on Asterisk 22 with pjsua2 phones (tests/data/calllog/capture_transfers.py):
    a blind transfer, a consultation whose police group rang out to the fallback, and a
    conference whose agency leg Asterisk gave a linkedid of its own (merged back here)."""
    records = journey.run(_transfer_events(), _example_directory(tmp_path))
    assert len(records) == 3  # the conference's agency leg is not a journey of its own
    blind, consult, conference = sorted(records, key=lambda r: r.started_at)
    for record in records:
        assert (record.outcome, record.answered_by, record.category) == (
            "answered",
            "201",
            "police",
        )
    assert _kinds(blind)[2:] == [
        ("operator_talk", None, None, False),
        ("transfer_attempt", "police", "answered", False),
        ("agency_talk", "police", None, False),
    ]
    attempts = [leg for leg in consult.legs if leg.kind == "transfer_attempt"]
    assert [(a.channel.split("-")[0], a.result, a.fallback) for a in attempts] == [
        ("PJSIP/301", "no_answer", True),
        ("PJSIP/309", "answered", False),
    ]
    assert attempts[0].duration == pytest.approx(20.0, abs=0.5)  # the group's ring_seconds
    kinds = [leg.kind for leg in conference.legs]
    assert kinds.count("operator_talk") == 2 and "conference" in kinds
    assert "agency_talk" in kinds and "ivr" not in kinds[1:]


def test_given_real_transfers_when_rebuilt_from_cel_then_they_match_ami(tmp_path: Path):
    """The CEL file of the same calls: same journeys, same transfer, talk and conference legs
    to 20 ms. (Menu and queue split differently without the dialplan's SIAGA_QUEUE events:
    CEL alone sees the queue only once a record is written inside Queue().)"""
    directory = _example_directory(tmp_path)
    live = {r.linkedid: r for r in journey.run(_transfer_events(), directory)}
    rows = cel.read_rows(str(TRANSFERS_CEL)).rows
    groups = cel.merge_groups(cel.group_by_linkedid(rows))
    assert set(groups) == set(live)
    for linkedid, group in groups.items():
        rebuilt = cel.build_journey(group, directory)
        assert rebuilt is not None
        ami = live[linkedid]
        later = [leg for leg in ami.legs if leg.kind not in ("ivr", "queue_wait")]
        mine = [leg for leg in rebuilt.legs if leg.kind not in ("ivr", "queue_wait")]
        assert [(leg.kind, leg.result, leg.fallback) for leg in mine] == [
            (leg.kind, leg.result, leg.fallback) for leg in later
        ]
        for a, b in zip(mine, later, strict=True):
            assert a.started_at == pytest.approx(b.started_at, abs=0.02)
            assert a.duration == pytest.approx(b.duration, abs=0.02)
        assert rebuilt.answer_seconds == pytest.approx(ami.answer_seconds, abs=0.02)
        assert rebuilt.outcome == ami.outcome


def test_given_a_lost_hangup_event_when_cel_over_ami_reports_it_then_the_journey_ends(
    tmp_path: Path,
):
    """An AMI client can miss an event; CEL over AMI (cel.conf [manager]) reports the same
    channel's end, so the journey is still finished and written."""
    events = _transfer_events()
    first_police = next(
        e["Uniqueid"]
        for e in events
        if e["Event"] == "Newchannel" and e["Channel"].startswith("PJSIP/301-")
    )
    without = [
        e for e in events if not (e["Event"] == "Hangup" and e.get("Uniqueid") == first_police)
    ]
    assert len(without) == len(events) - 1
    records = journey.run(without, _example_directory(tmp_path))
    assert len(records) == 3


def test_given_an_alert_callback_through_a_local_pair_when_built_then_it_is_outbound():
    """The Local pair that runs the callback dialplan queues for an operator: that is the
    center calling out (incident 77), answered once the citizen is bridged at 12 s, not a
    citizen waiting in the hotline's queue. CEL says the same."""
    tl = sc.alert_callback()
    live = only(journey.run(tl.ami(), sc.DIRECTORY))
    rebuilt = cel.build_journey(tl.cel(), sc.DIRECTORY)
    assert rebuilt is not None
    for record in (live, rebuilt):
        assert (record.direction, record.outcome) == ("outbound", "answered")
        assert record.incident_ref == 77
        assert record.answered_by == "op202"
        assert record.answer_seconds == 12.0
        assert [leg.kind for leg in record.legs] == ["operator_talk"]
        assert record.queue_passes == 0
    assert live.caller_number == "08177777"


def test_given_a_journey_whose_end_never_came_when_expired_then_it_is_forgotten():
    """A journey idle past the limit is dropped (the log keeps it in progress for CEL);
    an active one stays."""
    builder = JourneyBuilder(sc.DIRECTORY)
    for event in sc.answered_call("1.1").ami()[:6]:
        builder.feed(event, now=0.0)
    for event in sc.answered_call("2.1", t0=sc.T0 + 3000).ami()[:6]:
        builder.feed(event, now=0.0)
    assert builder.expire(sc.T0 + 3599, idle_seconds=3600) == []
    assert builder.expire(sc.T0 + 3700, idle_seconds=3600) == ["1.1"]
    assert builder.active == 1
