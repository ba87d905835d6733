"""The journey's change hook: the console's call card hears each change of a live
journey's facts (caller, category, language, queue time, priority, origin) as it happens."""

from __future__ import annotations

from dispatcher.calllog.journey import JourneyFacts, JourneyTracker
from tests.unit.calllog.calllog_scenarios import DIRECTORY, T0, answered_call, callback_call


def heard(events: list[dict[str, str]]) -> tuple[JourneyTracker, list[tuple[int, JourneyFacts]]]:
    """Feed ``events``; every (event index, facts) the listener heard."""
    tracker = JourneyTracker(DIRECTORY)
    told: list[tuple[int, JourneyFacts]] = []
    index = 0
    tracker.listeners.append(lambda facts: told.append((index, facts)))
    for index, event in enumerate(events):  # noqa: B007 (read by the listener)
        tracker.feed(event, 0.0)
    return tracker, told


def test_given_a_hotline_call_when_its_facts_change_then_the_listener_hears_each_change_once(
) -> None:
    """The citizen's channel, the category and language marks, the queue join, the
    priority the dialplan set and the answer each reach the listener, with the facts as they
    are then; an event that changes no fact (a recording starting) tells nothing."""
    timeline = answered_call("1000.1", number="081234567")
    events = timeline.ami()
    at = next(i for i, e in enumerate(events) if e.get("Event") == "QueueCallerJoin")
    events.insert(at, {"Event": "VarSet", "Timestamp": f"{T0 + 4:.6f}", "Linkedid": "1000.1",
                       "Uniqueid": "1000.1", "Channel": "PJSIP/trunk-1000.1",
                       "Variable": "__SIAGA_QPRIO", "Value": "10"})
    _tracker, told = heard(events)
    facts = [f for _, f in told]
    assert facts[0].caller_number == "081234567" and facts[0].dialed == "112"
    assert facts[0].category is None
    assert any(f.category == "police" and f.language == "id" for f in facts)
    queued = next(f for f in facts if f.queued_at is not None)
    assert queued.queued_at == T0 + 5.0 and queued.citizen == "PJSIP/trunk-1000.1"
    assert any(f.queue_priority == 10 for f in facts)
    assert facts[-1].ended and facts[-1].answered_at == T0 + 9.0
    # Once per change: no two consecutive notifications carry the same facts.
    assert all(a != b for a, b in zip(facts, facts[1:], strict=False))
    recording = next(i for i, e in enumerate(events)
                     if e.get("Variable") == "MIXMONITOR_FILENAME")
    assert recording not in [i for i, _ in told]


def test_given_a_callback_the_center_places_when_it_starts_then_heard_as_outbound_with_incident(
) -> None:
    """An alert's operator-first callback is told as an outbound journey with its incident:
    the card's origin."""
    _tracker, told = heard(callback_call("7000.1", incident=42).ami())
    assert told and told[-1][1].direction == "outbound"
    assert any(f.incident_ref == 42 for _, f in told)


def test_given_a_listener_that_raises_when_facts_change_then_the_others_and_the_log_go_on(
) -> None:
    """A failing listener is logged; the next listener still hears and the records are
    still produced for the writer."""
    tracker = JourneyTracker(DIRECTORY)
    tracker.listeners.append(lambda facts: 1 / 0)
    told: list[JourneyFacts] = []
    tracker.listeners.append(told.append)
    records = [r for e in answered_call("1000.2").ami() for r in tracker.feed(e, 0.0)]
    assert told and records and records[-1].complete


def test_given_a_live_journey_when_asked_then_its_facts_by_linkedid() -> None:
    """``facts(linkedid)`` reads a live journey's facts (the card's join); None once over."""
    tracker = JourneyTracker(DIRECTORY)
    events = answered_call("1000.3").ami()
    for event in events[:-4]:
        tracker.feed(event, 0.0)
    facts = tracker.facts("1000.3")
    assert facts is not None and facts.category == "police" and not facts.ended
    for event in events[-4:]:
        tracker.feed(event, 0.0)
    assert tracker.facts("1000.3") is None


def test_given_the_callback_originate_when_its_variable_is_set_then_the_facts_carry_its_id(
) -> None:
    """The server's originate sets SIAGA_CALLBACK_ID on the operator's phone before it
    rings: the facts say which callback the call is (the card's number while ringing)."""
    tracker = JourneyTracker(DIRECTORY)
    told: list[JourneyFacts] = []
    tracker.listeners.append(told.append)
    base = {"Linkedid": "7.1", "Uniqueid": "7.1", "Channel": "PJSIP/201-00000007",
            "Timestamp": f"{T0:.6f}"}
    tracker.feed({**base, "Event": "Newchannel", "CallerIDNum": "201", "Exten": "s",
                  "Context": "operators"}, 0.0)
    tracker.feed({**base, "Event": "VarSet", "Variable": "SIAGA_CALLBACK_ID", "Value": "4"},
                 0.0)
    facts = tracker.facts("7.1")
    assert facts is not None and facts.callback_id == 4 and facts.direction == "outbound"
    assert told[-1].callback_id == 4
