"""Listen, whisper, barge (dispatcher.console.spy): who may, what reaches AMI, what is kept."""

from __future__ import annotations

import json

import pytest
from twisted.internet import defer

from dialplans import contract
from dispatcher.console.spy import (
    NotASupervisor,
    NothingToSpyOn,
    PhoneAway,
    SpyRefused,
    SpyRequest,
    SpyService,
    UnknownDesk,
    spy_target,
)
from pbx.ami.errors import AMIActionError
from pbx.ami.model import LiveModel
from pbx.ami.protocol import Message
from tests.unit.console.console_fakes import FakeAMI, FakeWriter, model_with_call

SUPERVISORS = ("290", "291")
OPERATORS = ("201", "202")


def service(model: LiveModel, ami: FakeAMI | None = None,
            writer: FakeWriter | None = None) -> tuple[SpyService, FakeAMI, FakeWriter]:
    ami, writer = ami or FakeAMI(), writer or FakeWriter()
    spy = SpyService(ami, model, lambda: SUPERVISORS, lambda: OPERATORS, writer,
                     lambda: 1_800_000_100.0)
    return spy, ami, writer


def result_of(d: defer.Deferred) -> object:
    box: list[object] = []
    d.addBoth(box.append)
    assert box, "the Deferred did not fire"
    return box[0]


@pytest.mark.parametrize("document", [
    {"extension": "201", "mode": "eavesdrop"},
    {"extension": "201", "mode": ""},
    {"extension": "201", "mode": ["listen"]},
    {"extension": 201, "mode": "listen"},
    {"extension": "201,qB", "mode": "listen"},
    {"extension": "PJSIP/201-0000000b", "mode": "listen"},
    {"extension": "201\r\nAction: Originate", "mode": "listen"},
    {"extension": "1", "mode": "listen"},
    {"mode": "listen"},
    {"extension": "201", "mode": "listen", "channel": "PJSIP/202-00000001"},
])
def test_given_a_bad_request_when_parsed_then_refused_with_a_reason(document: dict) -> None:
    """Only a desk's digits and one of the three modes; no other field (a channel above
    all) is accepted."""
    with pytest.raises(SpyRefused) as refused:
        SpyRequest.parse("290", document)
    assert str(refused.value)


@pytest.mark.parametrize("mode, options", [("listen", "qES"), ("whisper", "qESw"),
                                           ("barge", "qESB")])
def test_given_a_supervisor_when_spying_then_their_phone_is_rung_into_the_mode(
        mode: str, options: str) -> None:
    """Originate to the supervisor's own phone into the spy context's extension of the
    mode, the operator's channel (from the model) as the checked variable; no application."""
    spy, ami, writer = service(model_with_call("201"))
    answer = result_of(spy.start(SpyRequest("290", "201", mode)))
    assert answer == {"mode": mode, "extension": "201", "channel": "PJSIP/201-0000000b",
                      "linkedid": "1800000000.10"}
    [sent] = ami.originates
    assert sent["channel"] == "PJSIP/290"
    assert (sent["context"], sent["exten"], sent["priority"]) == (contract.CONTEXT_SPY, mode, 1)
    assert sent["variables"] == {contract.VAR_SPY_TARGET: "PJSIP/201-0000000b",
                                 contract.VAR_SUPERVISION: mode}
    assert "application" not in sent and "data" not in sent
    assert contract.SPY_MODES[mode] == options
    [row] = writer.rows
    assert (row.supervisor, row.operator, row.mode, row.result, row.channel, row.linkedid) == (
        "290", "201", mode, "originated", "PJSIP/201-0000000b", "1800000000.10")
    assert row.at.timestamp() == 1_800_000_100.0


def test_given_an_operator_when_spying_then_refused_and_nothing_reaches_ami() -> None:
    """The role is checked again below the HTTP layer: an operator's extension may not."""
    spy, ami, writer = service(model_with_call("201"))
    failure = result_of(spy.start(SpyRequest("202", "201", "listen")))
    assert isinstance(failure.value, NotASupervisor)  # type: ignore[attr-defined]
    assert ami.originates == [] and writer.rows == []


def test_given_no_call_on_the_desk_when_spying_then_409_kind_and_nothing_sent() -> None:
    """A desk with no channel: nothing to spy on; an unknown desk: not an operator's."""
    spy, ami, _ = service(LiveModel(lambda: 0.0))
    assert isinstance(result_of(spy.start(SpyRequest("290", "201", "listen"))).value,
                      NothingToSpyOn)
    assert isinstance(result_of(spy.start(SpyRequest("290", "290", "listen"))).value,
                      UnknownDesk)
    assert ami.originates == []


def test_given_the_pbx_refuses_when_spying_then_the_failure_is_kept_and_reported() -> None:
    """An Originate Asterisk refuses is written to the call log as failed, and fails."""
    spy, _, writer = service(model_with_call("201"),
                             ami=FakeAMI(AMIActionError("Originate", Message(
                                 "response", "Error", {"Message": "Originate failed"}))))
    failure = result_of(spy.start(SpyRequest("290", "201", "barge")))
    assert isinstance(failure.value, AMIActionError)  # type: ignore[attr-defined]
    [row] = writer.rows
    assert row.result == "failed" and "Originate failed" in json.loads(row.detail)["error"]


def test_given_a_ringing_desk_when_targeted_then_its_channel_and_a_talking_one_first() -> None:
    """The bridged channel is the call; a desk only ringing still has its channel."""
    assert spy_target(model_with_call("201", bridged=False), "201") == (
        "PJSIP/201-0000000b", "1800000000.10")
    model = model_with_call("201")
    model.handle({"Event": "Newchannel", "Uniqueid": "1800000001.1", "Linkedid": "1800000001.1",
                  "Channel": "PJSIP/201-0000000c"})  # a second, newer, unbridged channel
    assert spy_target(model, "201")[0] == "PJSIP/201-0000000b"


def test_given_the_supervisors_phone_unregistered_when_spying_then_refused_first() -> None:
    """Asterisk says the supervisor's phone is unavailable: refused with a reason, nothing
    originated (the page would otherwise say "your phone rings"); once it registers, rung."""
    model = model_with_call("201")
    model.handle({"Event": "DeviceStateChange", "Device": "PJSIP/290", "State": "UNAVAILABLE"})
    spy, ami, writer = service(model)
    failure = result_of(spy.start(SpyRequest("290", "201", "listen")))
    assert isinstance(failure.value, PhoneAway)  # type: ignore[attr-defined]
    assert ami.originates == [] and writer.rows == []
    model.handle({"Event": "ContactStatus", "EndpointName": "290", "AOR": "290",
                  "URI": "sip:290@127.0.0.1:5070", "ContactStatus": "Created"})
    assert result_of(spy.start(SpyRequest("290", "201", "listen")))["mode"] == "listen"  # type: ignore[index]
