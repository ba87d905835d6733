"""The journey tells the server when an incident's citizen starts talking with an agency."""

from __future__ import annotations

from dispatcher.calllog.journey import JourneyBuilder, JourneyRecord
from tests.unit.calllog import calllog_scenarios as sc


def feed(timeline: sc.Timeline) -> list[tuple[int | None, str]]:
    """Run the timeline's AMI events; the hand-offs reported, as (incident, agency)."""
    seen: list[tuple[int | None, str]] = []

    def handoff(record: JourneyRecord, agency: str) -> None:
        seen.append((record.incident_ref, agency))

    builder = JourneyBuilder(sc.DIRECTORY, on_handoff=handoff)
    for event in timeline.ami():
        builder.feed(event, float(event["Timestamp"]))
    return seen


def callback_then(linkedid: str, incident: int | None = 42) -> tuple[sc.Timeline, str, str]:
    """An operator-first callback (operator 202, citizen answers at 10 s) still talking:
    the timeline, the operator's and the citizen's uid."""
    tl = sc.Timeline(linkedid)
    operator, citizen = linkedid, linkedid + "1"
    tl.channel(0.0, operator, f"PJSIP/202-{linkedid}", "", "s")
    if incident is not None:
        tl.mark(0.1, operator, "INCIDENT", str(incident))
    tl.answer(3.0, operator)
    tl.channel(3.0, citizen, f"PJSIP/trunk-{linkedid}")
    tl.dial(3.0, operator, citizen, "trunk/08199999")
    tl.answer(10.0, citizen, dialed_by=operator)
    tl.bridge(10.0, "b-" + linkedid, operator, citizen)
    return tl, operator, citizen


def test_given_a_callback_when_the_operator_blind_transfers_to_police_then_one_handoff():
    """The operator leaves, police 301 answers and joins the citizen: one hand-off."""
    tl, operator, citizen = callback_then("7100.1")
    police = "7100.12"
    tl.unbridge(20.0, operator)
    tl.hangup(20.0, operator, 16, by_self=True)
    tl.channel(20.5, police, "PJSIP/301-7100.1")
    tl.dial(20.5, citizen, police)
    tl.answer(25.0, police, dialed_by=citizen)
    tl.bridge(25.0, "b-7100.1", police)
    tl.hangup(60.0, citizen, 16, by_self=True)
    tl.hangup(60.0, police, 16)
    assert feed(tl) == [(42, "police")]


def test_given_an_operator_consulting_police_when_the_citizen_waits_then_no_handoff():
    """Police talks with the operator in a bridge of their own: not yet a hand-off."""
    tl, operator, citizen = callback_then("7200.1")
    police = "7200.12"
    tl.unbridge(20.0, operator)
    tl.channel(20.5, police, "PJSIP/301-7200.1")
    tl.dial(20.5, operator, police)
    tl.answer(25.0, police, dialed_by=operator)
    tl.bridge(25.0, "consult-7200.1", operator, police)
    tl.hangup(40.0, police, 16, by_self=True)
    tl.bridge(41.0, "b-7200.1", operator)
    tl.hangup(60.0, citizen, 16, by_self=True)
    tl.hangup(60.0, operator, 16)
    assert feed(tl) == []


def test_given_a_call_without_alert_incident_when_police_joins_then_reported_without_one():
    """A plain hotline call's hand-off is told with no incident: the console's incident
    opened from the call (if any) follows it; the alerts ignore it."""
    tl, operator, citizen = callback_then("7300.1", incident=None)
    police = "7300.12"
    tl.channel(20.5, police, "PJSIP/301-7300.1")
    tl.answer(25.0, police, dialed_by=operator)
    tl.bridge(25.0, "b-7300.1", police)
    assert feed(tl) == [(None, "police")]


def test_given_a_conference_through_a_local_pair_when_fire_answers_then_handoff_once():
    """The agency leg sits behind a Local pair (;1 in the conference, ;2 with fire's phone);
    fire is reached through it. Re-entering the bridge reports nothing new."""
    tl, operator, citizen = callback_then("7400.1")
    one, two, fire = "7400.13", "7400.14", "7400.15"
    tl.unbridge(20.0, operator, citizen)
    tl.bridge(20.0, "conf-7400.1", operator, citizen)
    tl.channel(20.5, one, "Local/fire@siaga-conference-agency-00000001;1")
    tl.channel(20.5, two, "Local/fire@siaga-conference-agency-00000001;2")
    tl.bridge(20.6, "conf-7400.1", one)
    tl.channel(21.0, fire, "PJSIP/311-7400.1")
    tl.dial(21.0, two, fire)
    tl.answer(26.0, fire, dialed_by=two)
    tl.bridge(26.0, "leg-7400.1", two, fire)
    tl.unbridge(40.0, operator)
    tl.hangup(40.0, operator, 16, by_self=True)
    tl.unbridge(41.0, citizen)
    tl.bridge(41.5, "conf-7400.1", citizen)
    assert feed(tl) == [(42, "fire")]


def test_given_the_incident_tag_after_the_agency_joined_then_the_handoff_is_reported_then():
    """A button call tagged by the server only once police already talks with the caller."""
    tl, operator, citizen = callback_then("7500.1", incident=None)
    police = "7500.12"
    tl.channel(20.5, police, "PJSIP/301-7500.1")
    tl.answer(25.0, police, dialed_by=citizen)
    tl.bridge(25.0, "b-7500.1", police)
    tl.mark(26.0, operator, "INCIDENT", "9")
    # Told at once (no incident known yet), and again for the incident once tagged.
    assert feed(tl) == [(None, "police"), (9, "police")]
