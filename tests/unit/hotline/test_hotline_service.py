"""HotlineService: the AMI actions it sends, and what it refuses to send."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from twisted.internet import defer, task

from dispatcher.config.loader import load_center
from dispatcher.config.model import Trunk
from dispatcher.hotline import (
    CallbackList,
    HotlineError,
    HotlineService,
    InvalidInput,
    MissedCallWatcher,
    NoWayBack,
    TransferMode,
    callback_target,
)
from dispatcher.hotline.callbacks import ABANDONED, MissedCall
from pbx.ami.actions import AMIActions
from pbx.ami.protocol import Message, serialize_action
from tests.harness import EXAMPLE_CONFIG

OPERATOR_CHANNEL = "PJSIP/201-0000000a"
CITIZEN_CHANNEL = "PJSIP/anonymous-00000009"


class FakeAmi(AMIActions):
    """Records each action as the wire would carry it (pbx.ami's serializer, which refuses
    CR/LF itself), answering Success, or a Getvar value."""

    def __init__(self, values: Mapping[str, str] | None = None) -> None:
        self.sent: list[tuple[str, list[tuple[str, str]]]] = []
        self.values = dict(values or {})

    def send_action(self, name: str,
                    fields: Mapping[str, object] | Iterable[tuple[str, object]] = (),
                    timeout: float | None = None) -> defer.Deferred[Any]:
        """Serialize, record the headers, answer."""
        try:
            raw = serialize_action(name, fields)
        except Exception as exc:
            return defer.fail(exc)
        headers = parse_message_fields(raw)
        self.sent.append((name, headers[1:]))
        answer = {"Response": "Success"}
        if name == "Getvar":
            answer["Value"] = self.values.get(dict(headers)["Variable"], "")
        return defer.succeed(Message("response", "Success", answer))

    def fields(self, index: int = -1) -> dict[str, str]:
        """Headers of one sent action (last by default)."""
        return dict(self.sent[index][1])

    def names(self) -> list[str]:
        """Names of the sent actions."""
        return [name for name, _ in self.sent]


def parse_message_fields(raw: bytes) -> list[tuple[str, str]]:
    """The headers of serialized action bytes, in order."""
    lines = raw.decode().split("\r\n")
    return [tuple(line.split(": ", 1)) for line in lines if line]  # type: ignore[misc]


def fired(d: defer.Deferred[Any]) -> Any:
    """The result of a fired Deferred (raises its failure)."""
    box: list[Any] = []
    d.addBoth(box.append)
    assert box, "not fired"
    if hasattr(box[0], "raiseException"):
        box[0].raiseException()
    return box[0]


@pytest.fixture
def center(tmp_path: Path):  # noqa: ANN201
    """The example city."""
    return load_center(EXAMPLE_CONFIG, state_dir=tmp_path)


@pytest.fixture
def ami() -> FakeAmi:
    """A fake AMI connection."""
    return FakeAmi()


@pytest.fixture
def hotline(ami: FakeAmi, center) -> HotlineService:  # noqa: ANN001
    """The service on the fake connection."""
    return HotlineService(ami, center, CallbackList())


def test_given_an_operator_when_logging_out_and_in_then_queue_pause_with_reasons(
        hotline: HotlineService, ami: FakeAmi) -> None:
    """Static members: logout is a pause with reason logged-out; login unpauses."""
    fired(hotline.logout("202"))
    fired(hotline.login("202"))
    fired(hotline.pause("202", "meal"))
    fired(hotline.unpause("202"))
    assert ami.names() == ["QueuePause"] * 4
    assert [(f["Interface"], f["Queue"], f["Paused"], f["Reason"])
            for f in (ami.fields(i) for i in range(4))] == [
        ("PJSIP/202", "operators", "true", "logged-out"),
        ("PJSIP/202", "operators", "false", "logged-in"),
        ("PJSIP/202", "operators", "true", "meal"),
        ("PJSIP/202", "operators", "false", "available"),
    ]


@pytest.mark.parametrize("call", [
    lambda h: h.pause("301"),  # an agency phone is no operator
    lambda h: h.pause("999"),  # not configured at all
    lambda h: h.pause("201\r\nAction: Logoff"),
    lambda h: h.pause("201", "lunch\r\nAction: QueueRemove"),
    lambda h: h.pause("201", "x" * 41),
    lambda h: h.transfer("PJSIP/201-0000000a\r\nAction: Hangup", "police", "blind"),
    lambda h: h.transfer("PJSIP/201-0000000a", "navy", "blind"),
    lambda h: h.transfer("PJSIP/201-0000000a", "police\n", "blind"),
    lambda h: h.transfer("SIP/201-0000000a", "police", "blind"),
    lambda h: h.transfer("PJSIP/201-0000000a,x", "police", "blind"),
    lambda h: h.transfer(OPERATOR_CHANNEL, "police", "conference", citizen_channel="a\nb"),
    lambda h: h.set_priority(CITIZEN_CHANNEL, 0),
    lambda h: h.set_priority("PJSIP/anonymous-1\r\n", 3),
    lambda h: h.add_member("290", name="Sup\r\nervisor"),
])
def test_given_bad_input_when_calling_the_service_then_refused_and_nothing_sent(
        hotline: HotlineService, ami: FakeAmi, call) -> None:  # noqa: ANN001
    """Every value from a caller is checked before an action exists."""
    with pytest.raises(InvalidInput):
        fired(call(hotline))
    assert ami.sent == []


def test_given_an_unknown_mode_when_transferring_then_refused(hotline: HotlineService,
                                                              ami: FakeAmi) -> None:
    """Only blind, attended and conference exist."""
    with pytest.raises(ValueError):
        fired(hotline.transfer(OPERATOR_CHANNEL, "police", "park"))
    assert ami.sent == []


def test_given_blind_when_transferring_then_blindtransfer_to_the_agency_group(
        hotline: HotlineService, ami: FakeAmi) -> None:
    """The operator's leg is the transferer; the target is the agency's ring group."""
    fired(hotline.transfer(OPERATOR_CHANNEL, "fire", TransferMode.BLIND))
    assert ami.sent == [("BlindTransfer", [("Channel", OPERATOR_CHANNEL), ("Exten", "s"),
                                           ("Context", "agency-fire")])]


def test_given_attended_when_transferring_then_atxfer_dials_the_agency_code(
        hotline: HotlineService, ami: FakeAmi) -> None:
    """Atxfer keys the agency's code in the transfer context (same path as **<d>)."""
    fired(hotline.transfer(OPERATOR_CHANNEL, "health", "attended"))
    assert ami.sent == [("Atxfer", [("Channel", OPERATOR_CHANNEL), ("Exten", "*3"),
                                    ("Context", "siaga-transfer")])]


def test_given_conference_when_transferring_then_both_legs_are_redirected_at_once(
        center) -> None:  # noqa: ANN001
    """The agency goes on the operator's leg; one Redirect moves operator and citizen."""
    ami = FakeAmi({"BRIDGEPEER": CITIZEN_CHANNEL})
    fired(HotlineService(ami, center).transfer(OPERATOR_CHANNEL, "police", "conference"))
    assert ami.names() == ["Getvar", "Setvar", "Redirect"]
    assert ami.fields(1) == {"Channel": OPERATOR_CHANNEL, "Variable": "SIAGA_CONF_AGENCY",
                             "Value": "police"}
    assert ami.fields(2) == {
        "Channel": OPERATOR_CHANNEL, "Context": "siaga-conference", "Exten": "operator",
        "Priority": "1", "ExtraChannel": CITIZEN_CHANNEL, "ExtraContext": "siaga-conference",
        "ExtraExten": "citizen", "ExtraPriority": "1"}


def test_given_an_operator_bridged_to_nobody_when_conferencing_then_error_and_no_redirect(
        hotline: HotlineService, ami: FakeAmi) -> None:
    """No peer: nothing is moved."""
    with pytest.raises(HotlineError, match="not bridged"):
        fired(hotline.transfer(OPERATOR_CHANNEL, "police", "conference"))
    assert ami.names() == ["Getvar"]


def test_given_priorities_when_set_then_queue_change_priority_caller(
        hotline: HotlineService, ami: FakeAmi) -> None:
    """1..10 is a config priority (1 -> QUEUE_PRIO 10); above 10 is a QUEUE_PRIO as is."""
    fired(hotline.set_priority(CITIZEN_CHANNEL, 1))
    fired(hotline.set_priority(CITIZEN_CHANNEL, 20))
    assert [(f["Caller"], f["Priority"], f["Immediate"], f["Queue"])
            for f in (ami.fields(0), ami.fields(1))] == [
        (CITIZEN_CHANNEL, "10", "true", "operators"), (CITIZEN_CHANNEL, "20", "true",
                                                       "operators")]


def test_given_a_supervisor_when_added_and_removed_then_dynamic_member_actions(
        hotline: HotlineService, ami: FakeAmi) -> None:
    """Extra members are dynamic: QueueAdd / QueueRemove."""
    fired(hotline.add_member("290", name="Supervisor A"))
    fired(hotline.remove_member("290"))
    assert ami.names() == ["QueueAdd", "QueueRemove"]
    assert ami.fields(0)["MemberName"] == "Supervisor A"
    assert ami.fields(0)["StateInterface"] == "PJSIP/290"


def test_given_callers_when_targets_are_made_then_each_way_back_is_right(center) -> None:  # noqa: ANN001
    """Staff extension direct; an app at its SIP address; trunk callers through the trunk."""
    assert callback_target(center, "202", "202", None) == "PJSIP/202"
    assert (callback_target(center, "citizen-1", "anonymous", "127.0.0.1:40123")
            == "PJSIP/anonymous/sip:citizen-1@127.0.0.1:40123")
    with pytest.raises(NoWayBack):
        callback_target(center, "0812", "trunk", None)  # the example has no trunk
    with_trunk = replace(center, trunk=Trunk("198.51.100.7", 5060, None, None))
    assert callback_target(with_trunk, "0812", "trunk", None) == "PJSIP/0812@trunk"
    for number, source in (("08&12", None), ("0812,x", None), ("a", "1.2.3.4:5,6"),
                           ("a", "host:5060")):
        with pytest.raises(InvalidInput):
            callback_target(center, number, "anonymous", source)


def missed(number: str = "citizen-7") -> MissedCall:
    """An abandoned call from an app."""
    return MissedCall(ABANDONED, number, "1.1", "PJSIP/anonymous-1", "anonymous",
                      "127.0.0.1:40000", "fire", 9.0, None)


def test_given_a_callback_when_started_then_operator_is_originated_with_the_target(
        hotline: HotlineService, ami: FakeAmi) -> None:
    """Originate rings the operator into siaga-callback with the validated dial string."""
    entry = hotline.callbacks.add(missed(), now=1)
    assert entry is not None
    fired(hotline.call_back(entry.id, "203"))
    name, headers = ami.sent[-1]
    fields = dict(headers)
    assert name == "Originate"
    assert (fields["Channel"], fields["Context"], fields["Exten"], fields["Async"]) == (
        "PJSIP/203", "siaga-callback", "s", "true")
    assert fields["CallerID"] == '"Callback" <citizen-7>'
    assert sorted(v for k, v in headers if k == "Variable") == [
        f"SIAGA_CALLBACK_ID={entry.id}",
        "SIAGA_CALLBACK_TARGET=PJSIP/anonymous/sip:citizen-7@127.0.0.1:40000"]
    assert entry.state == "ringing" and entry.attempts == 1
    assert hotline.callback_result({"Callback": str(entry.id), "Status": "ANSWER",
                                    "Call": "5.5"}).state == "done"
    assert entry.result_linkedid == "5.5"


def test_given_an_unknown_callback_id_when_result_comes_then_ignored(
        hotline: HotlineService) -> None:
    """A result for no entry changes nothing."""
    assert hotline.callback_result({"Callback": "42", "Status": "ANSWER"}) is None
    assert hotline.callback_result({"Callback": "x"}) is None


class FakeEvents:
    """subscribe_all, as AMIService offers it."""

    def __init__(self) -> None:
        self.callbacks: list[Any] = []

    def subscribe_all(self, callback: Any) -> Any:
        """Remember the subscriber; return an unsubscriber."""
        self.callbacks.append(callback)
        return lambda: self.callbacks.remove(callback)

    def emit(self, name: str, **fields: str) -> None:
        """Deliver one event."""
        message = Message("event", name, {"Event": name, **fields})
        for callback in list(self.callbacks):
            callback(message)


def test_given_ami_events_when_watched_then_missed_calls_land_on_the_list(
        hotline: HotlineService) -> None:
    """The watcher feeds the detector with the clock's time and fills the list."""
    clock = task.Clock()
    events = FakeEvents()
    watcher = MissedCallWatcher(events, clock, hotline.callbacks, service=hotline)
    watcher.start()
    base = {"Channel": "PJSIP/anonymous-2", "Uniqueid": "7.7", "Linkedid": "7.7",
            "CallerIDNum": "0877"}
    events.emit("VarSet", Variable="SIAGA_CITIZEN", Value="yes", **base)
    clock.advance(12)
    events.emit("Hangup", **base)
    [entry] = hotline.callbacks.pending()
    assert (entry.number, entry.reason) == ("0877", ABANDONED)
    watcher.stop()
    assert events.callbacks == []
