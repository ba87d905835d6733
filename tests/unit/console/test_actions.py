"""ConsoleActions: which AMI actions each console action sends, where the call stands, and
what is refused before anything is sent."""

from __future__ import annotations

from pathlib import Path

import pytest
from twisted.internet import defer

from dialplans import contract
from dispatcher.config.loader import load_center
from dispatcher.console.actions import (
    ACTIONS,
    ALLOWED,
    ConsoleActions,
    NotNow,
    UnknownAction,
    UnknownAgency,
)
from dispatcher.console.calls import NotYourCall
from dispatcher.console.handoffs import HandoffBoard
from dispatcher.hotline import HotlineService, InvalidInput
from pbx.ami.model import LiveModel
from tests.harness import EXAMPLE_CONFIG
from tests.unit.hotline.test_hotline_service import FakeAmi

CALL = "1700000000.1"
CITIZEN = "PJSIP/anonymous-00000001"
OPERATOR = "PJSIP/201-00000002"
AGENCY_LEG = f"Local/police@{contract.CONTEXT_CONSOLE_AGENCY}-00000003;1"


@pytest.fixture
def center(tmp_path: Path):  # noqa: ANN201
    return load_center(EXAMPLE_CONFIG, state_dir=tmp_path)


def channel(model: LiveModel, uniqueid: str, name: str, state: str = "Up",
            context: str = "", exten: str = "") -> None:
    model.handle({"Event": "Newchannel", "Uniqueid": uniqueid, "Channel": name,
                  "Linkedid": CALL, "ChannelStateDesc": state, "Context": context,
                  "Exten": exten})


def bridge(model: LiveModel, bridge_id: str, *uniqueids: str) -> None:
    for uniqueid in uniqueids:
        model.handle({"Event": "BridgeEnter", "BridgeUniqueid": bridge_id,
                      "Uniqueid": uniqueid})


def make(center, stand: str = "talking", agency_state: str = "Up"):  # noqa: ANN001, ANN201
    """A console over a fake AMI and a model holding operator 201's call, standing as
    ``stand`` says."""
    model = LiveModel(lambda: 0.0)
    channel(model, CALL, CITIZEN, context=contract.CONTEXT_HOTLINE, exten="queue")
    if stand == "talking":
        channel(model, "1700000000.2", OPERATOR)
        bridge(model, "b1", CALL, "1700000000.2")
    elif stand == "held":
        channel(model, "1700000000.2", OPERATOR, context=contract.CONTEXT_CONSOLE,
                exten=contract.EXTEN_HOLDING)
    elif stand == "consulting":
        channel(model, "1700000000.2", OPERATOR, context=contract.CONTEXT_CONSOLE,
                exten=contract.EXTEN_CONSULT)
        channel(model, "1700000000.3", AGENCY_LEG, state=agency_state)
        channel(model, "1700000000.4", AGENCY_LEG.replace(";1", ";2"), state=agency_state)
        bridge(model, "b2", "1700000000.2", "1700000000.3")
    elif stand == "conference":
        channel(model, "1700000000.2", OPERATOR, context=contract.CONTEXT_CONFERENCE,
                exten=contract.EXTEN_OPERATOR)
    else:
        channel(model, "1700000000.2", OPERATOR, state="Ringing")
    ami = FakeAmi()
    board = HandoffBoard([a.key for a in center.agencies], lambda: 100.0)
    actions = ConsoleActions(ami, model, center, HotlineService(ami, center), board)
    return actions, ami, board


def done(d: defer.Deferred) -> object:
    results: list[object] = []
    d.addBoth(results.append)
    assert results, "the action did not complete"
    if hasattr(results[0], "raiseException"):
        results[0].raiseException()  # type: ignore[attr-defined]
    return results[0]


def test_given_a_talking_call_when_consulting_then_both_legs_move_in_one_redirect(
        center) -> None:  # noqa: ANN001
    """consult: the agency and the way back set on the operator's leg, then one Redirect
    sends the citizen to hold and the operator's leg to dial the agency."""
    actions, ami, board = make(center)
    result = done(actions.act("201", CALL, "consult", "police"))
    assert result == {"linkedid": CALL, "action": "consult", "agency": "police",
                      "was": "talking"}
    assert ami.names() == ["Setvar", "Setvar", "Setvar", "Redirect"]
    assert [(f["Variable"], f.get("Value", "")) for f in map(ami.fields, range(3))] == [
        (contract.VAR_CONSOLE_AGENCY, "police"), (contract.VAR_CONSOLE_CITIZEN, CITIZEN),
        (contract.VAR_CONSOLE_DONE, "")]
    assert ami.fields() == {
        "Channel": CITIZEN, "Context": contract.CONTEXT_CONSOLE,
        "Exten": contract.EXTEN_HELD, "Priority": "1", "ExtraChannel": OPERATOR,
        "ExtraContext": contract.CONTEXT_CONSOLE, "ExtraExten": contract.EXTEN_CONSULT,
        "ExtraPriority": "1"}
    assert [(h["agency"], h["mode"], h["state"]) for h in board.document()[CALL]] == [
        ("police", "consult", "requested")]


def test_given_a_talking_call_when_blind_then_the_hotlines_blind_transfer(center) -> None:  # noqa: ANN001
    """blind: BlindTransfer of the operator's leg to the agency's context."""
    actions, ami, _board = make(center)
    done(actions.act("201", CALL, "blind", "fire"))
    assert ami.names() == ["BlindTransfer"]
    assert (ami.fields()["Channel"], ami.fields()["Context"]) == (
        OPERATOR, contract.agency_context("fire"))


def test_given_a_consultation_answered_when_handing_over_then_citizen_bridged_to_agency_leg(
        center) -> None:  # noqa: ANN001
    """handover: the operator's leg marked done, the citizen no longer owed a return, then
    Bridge citizen + the agency's Local leg; the board says handed over."""
    actions, ami, board = make(center, "consulting")
    board.requested(CALL, "police", "consult")
    result = done(actions.act("201", CALL, "handover"))
    assert result["agency"] == "police"  # type: ignore[index]
    assert ami.names() == ["Setvar", "Setvar", "Bridge"]
    assert (ami.fields(0)["Variable"], ami.fields(0)["Channel"]) == (
        contract.VAR_CONSOLE_DONE, OPERATOR)
    assert (ami.fields(1)["Variable"], ami.fields(1)["Channel"]) == (
        f"SHARED({contract.VAR_HELD})", CITIZEN)
    assert (ami.fields()["Channel1"], ami.fields()["Channel2"]) == (CITIZEN, AGENCY_LEG)
    assert board.document()[CALL][-1]["state"] == "handed_over"


def test_given_a_consultation_still_ringing_when_handing_over_then_refused(center) -> None:  # noqa: ANN001
    """No hand-over (nor three-way) to an agency that has not answered; cancel works."""
    actions, ami, _board = make(center, "consulting", agency_state="Ringing")
    for action in ("handover", "threeway"):
        with pytest.raises(NotNow, match="not answered"):
            actions.act("201", CALL, action)
    assert ami.sent == []
    done(actions.act("201", CALL, "cancel"))
    assert ami.names() == ["Hangup"] and ami.fields()["Channel"] == AGENCY_LEG


def test_given_a_consultation_when_three_way_then_citizen_first_then_agency_and_operator(
        center) -> None:  # noqa: ANN001
    """threeway from a consultation: the citizen into the conference, then the agency's leg
    and the operator's together (the operator joining, not calling anyone again)."""
    actions, ami, _board = make(center, "consulting")
    done(actions.act("201", CALL, "threeway"))
    assert ami.names() == ["Setvar", "Setvar", "Setvar", "Redirect", "Redirect"]
    assert (ami.fields(0)["Variable"], ami.fields(0).get("Value", "")) == (
        contract.VAR_CONF_AGENCY, "")
    first, second = ami.fields(3), ami.fields(4)
    assert (first["Channel"], first["Context"], first["Exten"]) == (
        CITIZEN, contract.CONTEXT_CONFERENCE, contract.EXTEN_CITIZEN)
    assert (second["Channel"], second["Exten"], second["ExtraChannel"],
            second["ExtraExten"]) == (AGENCY_LEG, "agency", OPERATOR, contract.EXTEN_OPERATOR)


def test_given_held_when_unholding_then_bridged_again(center) -> None:  # noqa: ANN001
    """unhold: the citizen released from hold, then Bridge operator + citizen."""
    actions, ami, _board = make(center, "held")
    done(actions.act("201", CALL, "unhold"))
    assert ami.names() == ["Setvar", "Bridge"]
    assert (ami.fields()["Channel1"], ami.fields()["Channel2"]) == (OPERATOR, CITIZEN)


def test_given_a_conference_when_leaving_then_only_the_operators_leg_hangs_up(center) -> None:  # noqa: ANN001
    """leave: Hangup of the operator's leg alone; hangup: the citizen's, then the operator's."""
    actions, ami, _board = make(center, "conference")
    done(actions.act("201", CALL, "leave"))
    assert ami.names() == ["Hangup"] and ami.fields()["Channel"] == OPERATOR
    ami.sent.clear()
    done(actions.act("201", CALL, "hangup"))
    assert [f["Channel"] for f in map(ami.fields, range(2))] == [CITIZEN, OPERATOR]


@pytest.mark.parametrize("stand", sorted(ALLOWED))
@pytest.mark.parametrize("action", ACTIONS)
def test_given_each_stand_when_each_action_then_the_table_decides(
        center, stand: str, action: str) -> None:  # noqa: ANN001
    """An action the table allows where the call stands sends something; any other is
    refused with NotNow and sends nothing."""
    actions, ami, _board = make(center, stand)
    agency = "police" if action in ("blind", "consult") or (
        action == "threeway" and stand == "talking") else None
    if action in ALLOWED[stand]:
        done(actions.act("201", CALL, action, agency))
        assert ami.sent
    else:
        with pytest.raises(NotNow):
            actions.act("201", CALL, action, agency)
        assert ami.sent == []


@pytest.mark.parametrize(("extension", "linkedid", "action", "agency", "error"), [
    ("202", CALL, "hangup", None, NotYourCall),
    ("201", "1700000000.99", "hangup", None, NotYourCall),
    ("201", CALL, "explode", None, UnknownAction),
    ("201", CALL, ["blind"], None, UnknownAction),
    ("201", CALL, "blind", None, UnknownAgency),
    ("201", CALL, "blind", "navy", UnknownAgency),
    ("201", CALL, "blind", "police\r\nAction: Hangup", UnknownAgency),
    ("201", CALL, "blind", {"key": "police"}, UnknownAgency),
    ("201", CALL, "threeway", None, UnknownAgency),
    ("201", f"{CALL}\r\nAction: Hangup", "hangup", None, InvalidInput),
    ("201", 1700000000.1, "hangup", None, InvalidInput),
    ("201", None, "hangup", None, InvalidInput),
])
def test_given_hostile_or_foreign_requests_when_acting_then_refused_and_nothing_sent(
        center, extension, linkedid, action, agency, error) -> None:  # noqa: ANN001
    """Another desk's call, an unknown call, action or agency, a value with CR/LF or of the
    wrong type: refused with its reason, no AMI action sent, the board unchanged."""
    actions, ami, board = make(center)
    with pytest.raises(error):
        actions.act(extension, linkedid, action, agency)
    assert ami.sent == [] and board.document() == {}


def test_given_a_hostile_channel_name_in_the_model_when_acting_then_refused(center) -> None:  # noqa: ANN001
    """A channel name that is no clean channel name (whatever put it there) never reaches
    an action."""
    actions, ami, _board = make(center)
    citizen = actions.model.channels[CALL]
    citizen.name = "PJSIP/anonymous-1\r\nAction: Originate"
    with pytest.raises(InvalidInput):
        actions.act("201", CALL, "hangup")
    assert ami.sent == []


def test_given_asterisk_refuses_a_transfer_when_acting_then_the_request_shows_cancelled(
        center) -> None:  # noqa: ANN001
    """The AMI action fails: the Deferred fails with it, and the card does not show the
    hand-off as requested for ever."""
    from pbx.ami.errors import AMIActionError
    from pbx.ami.protocol import Message

    actions, ami, board = make(center)

    def refuse(name, fields=(), timeout=None):  # noqa: ANN001, ANN202
        return defer.fail(AMIActionError(name, Message("response", "Error",
                                                       {"Message": "No such channel"})))

    ami.send_action = refuse  # type: ignore[method-assign]
    with pytest.raises(AMIActionError):
        done(actions.act("201", CALL, "blind", "police"))
    assert board.document()[CALL][-1]["state"] == "cancelled"


def test_given_a_leg_bridged_back_from_hold_when_acting_then_it_is_talking(center) -> None:  # noqa: ANN001
    """Unheld (or back from a cancelled consultation), the operator's leg still shows the
    siaga-console extension it left from: sharing the citizen's bridge, it is talking."""
    actions, ami, _board = make(center, "held")
    bridge(actions.model, "b9", CALL, "1700000000.2")
    done(actions.act("201", CALL, "consult", "police"))
    assert ami.names()[-1] == "Redirect"


def test_given_an_action_under_way_when_another_comes_then_refused_until_it_ends(
        center) -> None:  # noqa: ANN001
    """A double click: while Asterisk has not answered the first action, a second on the
    same call is refused (nothing sent); once it answered, the call is free again."""
    actions, ami, _board = make(center)
    pending: defer.Deferred = defer.Deferred()
    sent = ami.send_action

    def slow(name, fields=(), timeout=None):  # noqa: ANN001, ANN202
        sent(name, fields, timeout)
        return pending

    ami.send_action = slow  # type: ignore[method-assign]
    first = actions.act("201", CALL, "hold")
    assert ami.names() == ["Setvar"]
    with pytest.raises(NotNow, match="under way"):
        actions.act("201", CALL, "hangup")
    assert ami.names() == ["Setvar"]
    ami.send_action = sent  # type: ignore[method-assign]
    pending.callback({"Response": "Success"})
    done(first)
    done(actions.act("201", CALL, "hangup"))
    assert ami.names()[-2:] == ["Hangup", "Hangup"]


@pytest.mark.parametrize("stand", ["talking", "held", "consulting", "conference", "other"])
def test_given_a_call_when_the_view_renders_then_its_state_and_allowed_actions(
        center, stand: str) -> None:  # noqa: ANN001
    """The push view ``call_actions`` says, per operator call, where it stands and what
    the table allows there (what the page's buttons offer)."""
    actions, _ami, _board = make(center, stand)
    assert actions.document() == {CALL: {"state": stand, "allowed": sorted(ALLOWED[stand])}}


def test_given_a_hangup_when_the_operators_leg_ends_with_the_citizens_then_it_succeeded(
        center) -> None:  # noqa: ANN001
    """hangup: the citizen's leg hung up often takes the operator's with it (their bridge
    ends) before its own Hangup arrives: that "No such channel" is the call ended as asked,
    not a failure shown on the card; any other refusal still fails the action."""
    from pbx.ami.errors import AMIActionError
    from pbx.ami.protocol import Message

    actions, ami, _board = make(center)
    sent: list[str] = []

    def gone_with_it(name, fields=(), timeout=None):  # noqa: ANN001, ANN202
        channel = dict(fields)["Channel"]
        sent.append(channel)
        if channel == OPERATOR:
            return defer.fail(AMIActionError(name, Message("response", "Error",
                                                           {"Message": "No such channel"})))
        return defer.succeed(Message("response", "Success", {}))

    ami.send_action = gone_with_it  # type: ignore[method-assign]
    done(actions.act("201", CALL, "hangup"))
    assert sent == [CITIZEN, OPERATOR]

    actions, ami, _board = make(center)

    def refuse(name, fields=(), timeout=None):  # noqa: ANN001, ANN202
        return defer.fail(AMIActionError(name, Message("response", "Error",
                                                       {"Message": "Permission denied"})))

    ami.send_action = refuse  # type: ignore[method-assign]
    with pytest.raises(AMIActionError):
        done(actions.act("201", CALL, "hangup"))
