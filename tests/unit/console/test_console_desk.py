"""The operator's desk and call card (sans-HTTP): read from the live model, joined with the
journey, shown from the moment the desk's phone rings, never another desk's call."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from dialplans import contract
from dispatcher.calllog.journey import JourneyFacts
from dispatcher.config import load_center
from dispatcher.console.desk import Desks, card_document, desk_state
from dispatcher.console.lists import OpenIncidents, callbacks_owed, callers_waiting
from dispatcher.web.sessions import Staff
from pbx.ami.model import LiveModel
from tests.harness import EXAMPLE_CONFIG

T0 = 1_800_000_000.0
CITIZEN = "PJSIP/anonymous-00000001"


class Journeys:
    """The call log's live journeys, as the card reads them (``facts(linkedid)``)."""

    def __init__(self) -> None:
        self.by_linkedid: dict[str, JourneyFacts] = {}

    def facts(self, linkedid: str) -> JourneyFacts | None:
        return self.by_linkedid.get(linkedid)


def facts(linkedid: str = "1700.1", **changes: Any) -> JourneyFacts:  # noqa: ANN401
    base = JourneyFacts(linkedid=linkedid, started_at=T0, direction="inbound",
                        caller_number="081234567", caller_name="", dialed="112",
                        category="police", language="id", queued_at=T0 + 6,
                        answered_at=None, incident_ref=None, queue_priority=10,
                        citizen=CITIZEN, ended=False)
    return replace(base, **changes)


@pytest.fixture
def world(tmp_path: Path):  # noqa: ANN201
    center = load_center(EXAMPLE_CONFIG, state_dir=tmp_path)
    now = [T0 + 10]
    model = LiveModel(lambda: now[0])
    journeys = Journeys()
    incidents = OpenIncidents()
    desks = Desks(model, journeys, lambda: center, incidents)
    return center, model, journeys, incidents, desks


def channel(model: LiveModel, uid: str, name: str, linkedid: str, state: str = "Ringing",
            context: str = "operators") -> None:
    model.handle({"Event": "Newchannel", "Uniqueid": uid, "Channel": name, "Linkedid": linkedid,
                  "ChannelStateDesc": state, "Context": context, "CallerIDNum": "081234567"})


def member(model: LiveModel, ext: str, paused: bool = False, reason: str = "",
           status: str = "1") -> None:
    model.handle({"Event": "QueueMemberStatus", "Queue": contract.QUEUE_NAME,
                  "Interface": f"PJSIP/{ext}", "MemberName": ext, "Status": status,
                  "Paused": "1" if paused else "0", "PausedReason": reason, "InCall": "0"})


def test_given_a_citizen_call_ringing_one_desk_when_rendered_then_only_that_desk_has_the_card(
        world) -> None:  # noqa: ANN001
    """Operator 201's phone rings with a citizen's call (not answered yet): 201's card has
    the citizen's number, the number dialled, category, language, queue time, priority and
    origin, and 201's desk says ringing; 202 has no card."""
    center, model, journeys, _, desks = world
    member(model, "201")
    member(model, "202")
    channel(model, "1700.1", CITIZEN, "1700.1", state="Up")
    channel(model, "1700.2", "PJSIP/201-00000002", "1700.1")
    journeys.by_linkedid["1700.1"] = facts()
    mine = desks.document(Staff("201", "operator"))
    assert mine["card"] == {
        "linkedid": "1700.1", "citizen_channel": CITIZEN,
        "operator_channel": "PJSIP/201-00000002", "state": "ringing",
        "caller_number": "081234567", "caller_name": "", "dialed": "112",
        "category": "police", "language": "id", "started_at": T0, "queued_at": T0 + 6,
        "answered_at": None, "priority": 10,
        "origin": {"kind": "hotline", "incident_id": None, "device": None}}
    assert mine["desk"] == {"extension": "201", "name": center.operators[0].name,
                            "state": "ringing", "reason": ""}
    theirs = desks.document(Staff("202", "operator"))
    assert theirs["card"] is None and theirs["desk"]["state"] == "available"


def test_given_the_card_when_answered_then_hung_up_then_talking_then_ended_until_the_next_call(
        world) -> None:  # noqa: ANN001
    """The card follows the operator's channel: up is talking; gone, the last card stays as
    ended; the next call's ringing replaces it."""
    _, model, journeys, _, desks = world
    channel(model, "1700.2", "PJSIP/201-00000002", "1700.1")
    journeys.by_linkedid["1700.1"] = facts()
    assert desks.card("201")["state"] == "ringing"  # type: ignore[index]
    model.handle({"Event": "Newstate", "Uniqueid": "1700.2", "ChannelStateDesc": "Up"})
    assert desks.card("201")["state"] == "talking"  # type: ignore[index]
    model.handle({"Event": "Hangup", "Uniqueid": "1700.2", "Channel": "PJSIP/201-00000002"})
    ended = desks.card("201")
    assert ended is not None and ended["state"] == "ended" and ended["linkedid"] == "1700.1"
    channel(model, "1800.2", "PJSIP/201-00000003", "1800.1")
    journeys.by_linkedid["1800.1"] = facts("1800.1", caller_number="0899")
    assert desks.card("201")["linkedid"] == "1800.1"  # type: ignore[index]


def test_given_calls_on_the_phone_that_are_no_citizens_when_rendered_then_no_card(
        world) -> None:  # noqa: ANN001
    """The operator dialling a feature code (a journey of the operator's own, no citizen),
    a channel of no known journey, and a finished journey make no card."""
    _, model, journeys, _, desks = world
    channel(model, "1.1", "PJSIP/201-00000001", "1.1", state="Up")
    journeys.by_linkedid["1.1"] = facts("1.1", direction="outbound", citizen="",
                                        category=None, caller_number="")
    channel(model, "2.1", "PJSIP/201-00000004", "2.9")
    channel(model, "3.1", "PJSIP/201-00000005", "3.0")
    journeys.by_linkedid["3.0"] = facts("3.0", ended=True)
    assert card_document(model, "201", journeys, world[0]) is None
    # A desk whose extension is a prefix of another's: 20 is not 201.
    assert card_document(model, "20", journeys, world[0]) is None


def test_given_the_queue_member_when_paused_or_logged_out_then_the_desk_says_so(world) -> None:  # noqa: ANN001
    """Paused with a reason shows the reason; the feature codes' logout (a pause with the
    logged-out reason) and a desk not in the queue are logged out; an unreachable phone is
    offline."""
    _, model, _, _, _ = world
    assert desk_state(model, "201") == {"state": "logged out", "reason": ""}
    member(model, "201", paused=True, reason="meal")
    assert desk_state(model, "201") == {"state": "paused", "reason": "meal"}
    member(model, "201", paused=True, reason=contract.LOGGED_OUT_REASON)
    assert desk_state(model, "201")["state"] == "logged out"
    member(model, "201", paused=False, reason=contract.AVAILABLE_REASON)
    assert desk_state(model, "201") == {"state": "available", "reason": ""}
    member(model, "201", status="5")
    assert desk_state(model, "201")["state"] == "offline"


def test_given_calls_of_each_origin_when_rendered_then_the_origin_says_how_it_began(
        world) -> None:  # noqa: ANN001
    """A configured button's own phone is a button (its name, not its caller ID); the
    center's call for an app alert is an alert with its incident and device; any other call
    the center placed is a callback."""
    center, model, journeys, incidents, desks = world
    button = center.buttons[0]
    incidents.feed({"incident_id": 7, "state": "operator_ringing", "event": "alert_received",
                    "device_id": "app-42", "at": T0})
    channel(model, "1.2", "PJSIP/201-00000001", "1.1")
    cases = [
        (facts("1.1", citizen=f"PJSIP/{button.extension}-00000009", category="panic",
               incident_ref=5), {"kind": "button", "incident_id": 5, "device": button.name}),
        (facts("1.1", direction="outbound", incident_ref=7, caller_number=""),
         {"kind": "alert", "incident_id": 7, "device": "app-42"}),
        (facts("1.1", direction="outbound", category="callback"),
         {"kind": "callback", "incident_id": None, "device": None}),
    ]
    for journey, origin in cases:
        journeys.by_linkedid["1.1"] = journey
        assert desks.card("201")["origin"] == origin  # type: ignore[index]


def test_given_the_database_snapshot_and_the_feed_when_both_tell_then_the_feed_wins(
        world) -> None:  # noqa: ANN001
    """The open incidents read at start fill the list (nothing lost across a restart); an
    event of the feed, newer, wins over a snapshot read later; closed ones leave the list."""
    incidents: OpenIncidents = world[3]
    incidents.feed({"incident_id": 2, "state": "handed_to_agency", "event": "hand_to_agency",
                    "agency": "police", "at": T0 + 5})
    incidents.feed({"incident_id": 3, "state": "closed", "event": "close", "at": T0 + 6})
    incidents.load([
        {"id": 1, "state": "new", "type": "panic", "device": "app-1", "agency": None,
         "callback_number": "0811", "opened_at": T0},
        {"id": 2, "state": "talking", "type": "panic", "device": None, "agency": None,
         "callback_number": None, "opened_at": T0},
        {"id": 3, "state": "talking", "type": "panic", "device": None, "agency": None,
         "callback_number": None, "opened_at": T0},
    ])
    listed = {i["id"]: (i["state"], i["agency"]) for i in incidents.document()}
    assert listed == {1: ("new", None), 2: ("handed_to_agency", "police")}
    incidents.feed({"incident_id": 1, "state": "cancelled", "event": "cancel", "at": T0 + 7})
    assert [i["id"] for i in incidents.document()] == [2]


def test_given_the_snapshot_loaded_when_thousands_of_incidents_open_and_close_then_nothing_of_them_is_kept(  # noqa: E501
        world) -> None:  # noqa: ANN001
    """Past the start-up snapshot the feed alone keeps the list: a day of incidents opened
    and closed leaves no trace (the ids the feed told of were kept for ever, a slow growth
    the hour-long soak saw)."""
    incidents: OpenIncidents = world[3]
    incidents.feed({"incident_id": 1, "state": "new", "event": "alert_received", "at": T0})
    incidents.load([])
    for n in range(2, 5002):
        incidents.feed({"incident_id": n, "state": "new", "event": "alert_received",
                        "at": T0 + n})
        incidents.feed({"incident_id": n, "state": "cancelled", "event": "cancel",
                        "at": T0 + n})
    assert [i["id"] for i in incidents.document()] == [1]
    assert not incidents._seen
    incidents.load([{"id": 9, "state": "new", "type": "panic", "device": None, "agency": None,
                     "callback_number": None, "opened_at": T0}])  # a second load: kept too
    assert sorted(i["id"] for i in incidents.document()) == [1, 9]


def test_given_callers_in_the_queue_when_listed_then_in_order_with_category_and_wait_start(
        world) -> None:  # noqa: ANN001
    """The waiting list joins each queued caller with their journey's category; the page
    counts the wait from ``since``."""
    _, model, journeys, _, _ = world
    channel(model, "5.1", "PJSIP/anonymous-00000005", "5.1", state="Up")
    model.handle({"Event": "QueueCallerJoin", "Queue": contract.QUEUE_NAME, "Uniqueid": "5.1",
                  "Channel": "PJSIP/anonymous-00000005", "Position": "1"})
    journeys.by_linkedid["5.1"] = facts("5.1", category="fire", caller_number="0877")
    assert callers_waiting(model, journeys) == [
        {"position": 1, "caller": "0877", "since": T0 + 10, "category": "fire",
         "priority": 10, "incident": None, "outbound": False}]


def test_given_an_alerts_call_waiting_in_the_queue_then_listed_with_its_incident_and_number(
        world) -> None:  # noqa: ANN001
    """An alert's operator-first call waits in the queue with no caller ID of its own: the
    list names its incident and the number it will ring (the open incident's), and a
    callback waiting is marked outbound, not shown as an unknown caller."""
    _, model, journeys, incidents, _ = world
    incidents.feed({"incident_id": 12, "state": "new", "type": "panic", "at": T0,
                    "callback_number": "081299", "device_id": "app-7"})
    for n, (linkedid, kind) in enumerate((("6.1", "alert"), ("7.1", "callback")), start=1):
        channel(model, linkedid, f"Local/operator@siaga-alerts-0000000{n};2", linkedid,
                state="Up")
        model.handle({"Event": "QueueCallerJoin", "Queue": contract.QUEUE_NAME,
                      "Uniqueid": linkedid, "Channel": f"Local/x-{n};2", "Position": str(n)})
        journeys.by_linkedid[linkedid] = facts(
            linkedid, direction="outbound", caller_number="", citizen="",
            incident_ref=12 if kind == "alert" else None, category=None)
    listed = callers_waiting(model, journeys, incidents)
    assert [(c["caller"], c["incident"], c["outbound"]) for c in listed] == [
        ("081299", 12, True), ("", None, True)]


def test_given_owed_callbacks_when_listed_then_only_open_ones_with_their_ids() -> None:
    """"Call back now" sends the entry's id: the list carries it, and only open entries."""
    from dispatcher.callbacks.missed import MissedCall
    from dispatcher.callbacks.owed import CallbackList

    callbacks = CallbackList()
    entry = callbacks.add(MissedCall("abandoned", "0812", "9.1", "PJSIP/trunk-1", "trunk",
                                     None, "police", 30.0, None, True), T0)
    assert entry is not None
    listed = callbacks_owed(callbacks.page(0, 10))
    assert [(c["id"], c["number"], c["state"]) for c in listed] == [(entry.id, "0812",
                                                                     "pending")]


def test_given_a_callback_ringing_my_phone_first_when_rendered_then_its_card_and_number(
        world) -> None:  # noqa: ANN001
    """"Call back now" rings the operator before the citizen: the journey has no citizen
    yet, only the callback's id (set by the originate); the card is there from the first
    ring, with the number owed the call."""
    center, model, journeys, incidents, _ = world
    desks = Desks(model, journeys, lambda: center, incidents,
                  lambda entry: "0812999" if entry == 4 else None)
    channel(model, "8.1", "PJSIP/201-00000008", "8.1")
    journeys.by_linkedid["8.1"] = facts("8.1", direction="outbound", citizen="",
                                        caller_number="", category=None, callback_id=4)
    card = desks.card("201")
    assert card is not None and card["state"] == "ringing"
    assert card["caller_number"] == "0812999" and card["citizen_channel"] is None
    assert card["origin"] == {"kind": "callback", "incident_id": None, "device": None}


def test_given_an_alerts_call_ringing_my_phone_first_when_rendered_then_the_number_to_call_back(
        world) -> None:  # noqa: ANN001
    """An app's alert: the center rings the operator before the citizen's mobile. The card
    shows the alert's callback number (told by the incident feed as the alert arrives), not
    a blank; and no "number dialled" (the center dialled, not the citizen: the dialplan's
    ``s`` is nobody's number)."""
    center, model, journeys, incidents, desks = world
    incidents.feed({"incident_id": 9, "state": "operator_ringing", "event": "alert_received",
                    "device_id": "app-7", "callback_number": "0813555", "at": T0})
    channel(model, "9.2", "PJSIP/201-00000009", "9.1")
    journeys.by_linkedid["9.1"] = facts("9.1", direction="outbound", citizen="",
                                        caller_number="", dialed="s", category="alert",
                                        incident_ref=9)
    card = desks.card("201")
    assert card is not None and card["state"] == "ringing"
    assert card["caller_number"] == "0813555"
    assert card["dialed"] is None
    assert card["origin"] == {"kind": "alert", "incident_id": 9, "device": "app-7"}


def test_given_the_list_once_rendered_when_an_incident_moves_then_the_old_rendering_is_unchanged(
        world) -> None:  # noqa: ANN001
    """The push channel compares each view with its last rendering to send a delta: a
    rendering must not change under it when an incident moves (else the move is never sent
    and every page shows the old state)."""
    incidents: OpenIncidents = world[3]
    incidents.feed({"incident_id": 4, "state": "talking", "event": "open", "at": T0,
                    "category": "police"})
    before = incidents.document()
    incidents.feed({"incident_id": 4, "state": "handed_to_agency", "event": "hand_to_agency",
                    "agency": "police", "at": T0 + 5})
    after = incidents.document()
    assert [(i["state"], i["agency"]) for i in before] == [("talking", None)]
    assert [(i["state"], i["agency"]) for i in after] == [("handed_to_agency", "police")]


def test_given_a_call_older_than_the_server_when_rendered_then_a_card_from_what_asterisk_knows(
        world) -> None:  # noqa: ANN001
    """After a restart the journeys do not know a call that was already up: the desk still
    gets its card (the citizen's number, talking), the rest unknown; a call between two
    staff phones stays without a card."""
    _center, model, _journeys, _incidents, desks = world
    channel(model, "3.1", "PJSIP/anonymous-00000003", "3.1", state="Up")
    channel(model, "3.2", "PJSIP/201-00000004", "3.1", state="Up")
    card = desks.card("201")
    assert card is not None
    assert (card["linkedid"], card["state"], card["caller_number"], card["citizen_channel"],
            card["operator_channel"], card["category"]) == (
        "3.1", "talking", "081234567", "PJSIP/anonymous-00000003", "PJSIP/201-00000004", None)
    channel(model, "4.1", "PJSIP/202-00000005", "4.1", state="Up")
    channel(model, "4.2", "PJSIP/203-00000006", "4.1", state="Up")
    assert desks.card("203") is None


def test_given_calls_on_two_desks_when_personal_views_render_then_each_operator_sees_only_theirs(
        world) -> None:  # noqa: ANN001
    """The calls' actions and hand-offs go to their operator's streams only: 202's page
    never carries 201's call (the floor of every desk has a supervisors-only audience,
    tests/unit/web/test_web_push_roles.py)."""
    from types import SimpleNamespace

    from dispatcher.console.views import ConsoleViews

    center, model, journeys, _incidents, _desks = world
    views = ConsoleViews(model, journeys, lambda: center, SimpleNamespace())
    channel(model, "6.1", "PJSIP/anonymous-00000006", "6.1", state="Up")
    channel(model, "6.2", "PJSIP/201-00000007", "6.1", state="Up")
    journeys.by_linkedid["6.1"] = facts("6.1", citizen="PJSIP/anonymous-00000006")
    every = views.own_calls(lambda: {"6.1": {"state": "talking"}, "7.1": {"state": "talking"}})
    op201, op202 = SimpleNamespace(extension="201", role="operator"), SimpleNamespace(
        extension="202", role="operator")
    boss = SimpleNamespace(extension="301", role="supervisor")
    assert every(op201) == {"6.1": {"state": "talking"}}
    assert every(op202) == {}
    assert every(boss) == {}  # a supervisor's phone was in neither call
    # The call left 201's phone: it stays 201's while its card (drawn for 201's page while
    # the call was up) shows it, ended.
    assert views.desks.card("201")["linkedid"] == "6.1"
    del model.channels["6.2"]
    assert every(op201) == {"6.1": {"state": "talking"}}
    # A call seen on 201's phone (AMI) and gone before any card was drawn stays 201's.
    views.desk_calls.on_event({"Event": "Newchannel", "Channel": "PJSIP/201-00000009",
                               "Linkedid": "7.1"})
    views.desk_calls.on_event({"Event": "Newchannel", "Channel": "PJSIP/anonymous-0000000a",
                               "Linkedid": "8.1"})
    assert set(every(op201)) == {"6.1", "7.1"} and every(op202) == {}
