"""The server's side of the hotline (dispatcher.hotline) against the real Asterisk.

The service speaks through :class:`HarnessAmi`: the project's own AMI serializer checks and
builds every action (so an injection is refused exactly as in the server), and the harness's
independent asterisk-ami connection carries it. Missed calls are detected from the events
that connection records.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import pytest
from asterisk.ami import Action
from twisted.internet import defer

from dispatcher.hotline import (
    CallbackList,
    HotlineService,
    InvalidInput,
    MissedCallDetector,
    TransferMode,
    codes,
)
from dispatcher.hotline.callbacks import ABANDONED, DROPPED, MissedCall
from pbx.ami.actions import AMIActions
from pbx.ami.errors import AMIActionError
from pbx.ami.protocol import Message, serialize_action
from pbx.phone.events import CallState
from tests.e2e.hotline_helpers import (
    QUEUE,
    answer_as_operator,
    call_hotline,
    reset_queue,
    send_code,
    verbose_log,
    wait_no_channels,
    wait_two_way_audio,
)
from tests.harness import AmiWatch, RunningAsterisk, wait_for

pytestmark = pytest.mark.asterisk


class HarnessAmi(AMIActions):
    """AMIActions over the harness's AMI connection (synchronous; Deferreds already fired)."""

    def __init__(self, watch: AmiWatch) -> None:
        self.watch = watch
        self.sent: list[str] = []

    def send_action(self, name: str,
                    fields: Mapping[str, object] | Iterable[tuple[str, object]] = (),
                    timeout: float | None = None) -> defer.Deferred[Any]:
        """Serialize with pbx.ami (refusing injection), send, answer with a pbx Message."""
        try:
            raw = serialize_action(name, fields, "harness")
        except Exception as exc:
            return defer.fail(exc)
        keys: dict[str, str] = {}
        variables: dict[str, str] = {}
        for line in raw.decode().split("\r\n")[2:]:
            if not line:
                continue
            key, _, value = line.partition(": ")
            if key == "Variable" and name == "Originate":
                var, _, val = value.partition("=")
                variables[var] = val
            else:
                keys[key] = value
        self.sent.append(name)
        response = self.watch.client.send_action(Action(name, keys, variables)).response
        if response is None:
            return defer.fail(AssertionError(self.watch.no_answer(name)))
        message = Message("response", response.status, dict(response.keys))
        if response.status == "Error":
            return defer.fail(AMIActionError(name, message))
        return defer.succeed(message)


def result(d: defer.Deferred[Any]) -> Any:
    """The value of a fired Deferred (raise its failure)."""
    box: list[Any] = []
    d.addBoth(box.append)
    assert box, "the Deferred has not fired"
    if hasattr(box[0], "raiseException"):
        box[0].raiseException()
    return box[0]


@pytest.fixture
def ami(asterisk: RunningAsterisk):  # noqa: ANN201 (tests.harness.AmiWatch)
    """An AMI watch on a quiet Asterisk with every operator available."""
    watch = asterisk.ami()
    verbose_log(watch)
    wait_no_channels(watch)
    reset_queue(asterisk, watch)
    yield watch
    reset_queue(asterisk, watch)


@pytest.fixture
def hotline(asterisk: RunningAsterisk, ami: AmiWatch) -> HotlineService:
    """The hotline service on the harness's AMI."""
    return HotlineService(HarnessAmi(ami), asterisk.center, CallbackList())


@pytest.mark.parametrize("mode", [TransferMode.BLIND, TransferMode.ATTENDED,
                                  TransferMode.CONFERENCE])
def test_given_an_answered_call_when_the_console_transfers_to_fire_then_citizen_talks_to_fire(
        asterisk: RunningAsterisk, ami, hotline: HotlineService, phones,  # noqa: ANN001
        mode: TransferMode) -> None:
    """transfer(operator channel, "fire", mode) over AMI puts the citizen with the fire
    brigade; for attended the operator completes with #1, for conference the operator
    leaves; then citizen and fire hear each other."""
    operator = phones.operator(1)
    fire = phones.agency("fire")
    citizen, citizen_call = call_hotline(phones, "2")
    answered = answer_as_operator(ami, citizen, citizen_call, operator)

    result(hotline.transfer(answered.operator_channel, "fire", mode,
                            citizen_channel=answered.citizen_channel))
    fire_call = fire.answer(15)
    if mode is TransferMode.ATTENDED:
        send_code(answered.operator_call, codes.CONSULT_COMPLETE)
    elif mode is TransferMode.CONFERENCE:
        answered.operator_call.hangup()
    answered.operator_call.wait_disconnected(10)
    assert citizen_call.state == CallState.CONFIRMED
    heard = wait_two_way_audio(phones, citizen_call, fire_call)
    assert heard.both, heard


def test_given_a_channel_with_crlf_when_transferring_then_refused_and_nothing_sent(
        asterisk: RunningAsterisk, ami, hotline: HotlineService) -> None:  # noqa: ANN001
    """A channel or agency smuggling an AMI header is refused before anything is sent."""
    sent = hotline.ami.sent  # type: ignore[attr-defined]
    with pytest.raises(InvalidInput):
        result(hotline.transfer("PJSIP/201-00000001\r\nAction: Hangup", "police", "blind"))
    with pytest.raises(InvalidInput):
        result(hotline.transfer("PJSIP/201-00000001", "police\nfire", "blind"))
    with pytest.raises(InvalidInput):
        result(hotline.pause("201", "lunch\r\nAction: QueueRemove"))
    assert sent == []


def test_given_operator_paused_by_the_server_when_a_call_comes_then_it_is_skipped(
        asterisk: RunningAsterisk, ami, hotline: HotlineService, phones) -> None:  # noqa: ANN001
    """pause() over AMI takes operator 1 out of rotation (with its reason); operator 2
    answers; logout/login work the same way."""
    op1 = phones.operator(1)
    op2 = phones.operator(2)
    result(hotline.pause(op1.user, "training"))
    paused = ami.wait_event("QueueMemberPause", Interface=f"PJSIP/{op1.user}", Paused="1")
    assert paused["PausedReason"] == "training"
    citizen, call = call_hotline(phones, "0")
    answered = answer_as_operator(ami, citizen, call, op2, timeout=15)
    assert not [c for c in op1.calls if c.direction == "incoming"]
    answered.operator_call.hangup()
    result(hotline.logout(op2.user))
    out = ami.wait_event("QueueMemberPause", Interface=f"PJSIP/{op2.user}",
                         PausedReason=codes.LOGGED_OUT_REASON)
    assert out["Paused"] == "1"
    result(hotline.login(op2.user))
    ami.wait_event("QueueMemberPause", Interface=f"PJSIP/{op2.user}", Paused="0")


class Feeder:
    """Feeds the harness's recorded AMI events, once each, to a detector (Asterisk's own
    timestamps as the time)."""

    def __init__(self, detector: MissedCallDetector, ami: AmiWatch) -> None:
        self.detector = detector
        self.ami = ami
        self.position = len(ami.events)
        self.missed: list = []

    def __call__(self) -> list:
        """Feed what arrived since the last call; return every missed call so far."""
        with self.ami.lock:
            events = list(self.ami.events[self.position:])
        self.position += len(events)
        for event in events:
            self.missed += self.detector.feed(event["Event"], event,
                                              float(event.get("Timestamp", 0)))
        return self.missed


def test_given_citizen_hangs_up_in_queue_when_called_back_then_operator_then_citizen(
        asterisk: RunningAsterisk, ami, hotline: HotlineService, phones) -> None:  # noqa: ANN001
    """An abandoned call lands on the callback list; call_back rings the operator first,
    then the citizen; they hear each other."""
    for op in asterisk.center.operators:  # nobody answers: the citizen gives up
        result(hotline.pause(op.extension, "test"))
    feed = Feeder(MissedCallDetector(), ami)
    citizen, call = call_hotline(phones, "3", caller_id="5551234")
    ami.wait_event("QueueCallerJoin", Queue=QUEUE, CallerIDNum="5551234")
    call.hangup()
    call.wait_disconnected(10)
    wait_for(lambda: ami.matching("QueueCallerAbandon", CallerIDNum="5551234"), 10, "abandon")

    missed = wait_for(feed, 10, "the missed call")
    assert [(m.reason, m.number, m.category) for m in missed] == [
        (ABANDONED, "5551234", "health")]
    entry = hotline.callbacks.add(missed[0], missed[0].waited)
    assert entry is not None and [e.id for e in hotline.callbacks.pending()] == [entry.id]

    operator = phones.operator(1)
    result(hotline.unpause(operator.user))
    result(hotline.call_back(entry.id, operator.user))
    assert hotline.callbacks.get(entry.id).state == "ringing"
    op_call = operator.answer(15)  # the operator first...
    citizen_back = citizen.answer(15)  # ...then the citizen
    heard = phones.two_way_audio(op_call, citizen_back)
    assert heard.both, heard
    op_call.hangup()
    citizen_back.wait_disconnected(10)
    done = ami.wait_event("UserEvent", UserEvent="SiagaCallbackResult")
    assert hotline.callback_result(done).state == "done"


def test_given_citizen_hangs_up_right_after_answer_then_it_is_a_dropped_call(
        asterisk: RunningAsterisk, ami, phones) -> None:  # noqa: ANN001
    """A call that ends seconds after the operator answered, not handed over, is dropped;
    one that lasted longer is not."""
    feed = Feeder(MissedCallDetector(dropped_seconds=5.0), ami)
    operator = phones.operator(1)
    citizen, call = call_hotline(phones, "0", caller_id="5559876")
    answer_as_operator(ami, citizen, call, operator, timeout=10)
    call.hangup()
    call.wait_disconnected(10)
    missed = wait_for(feed, 10, "the dropped call")
    assert [(m.reason, m.number) for m in missed] == [(DROPPED, "5559876")]
    assert missed[0].talked is not None and missed[0].talked < 5.0


def test_given_two_waiting_callers_when_the_server_raises_one_then_it_is_answered_first(
        asterisk: RunningAsterisk, ami, hotline: HotlineService, phones) -> None:  # noqa: ANN001
    """set_priority (QueueChangePriorityCaller) moves a transport caller ahead of a fire
    caller who came first: the server's say over the dialplan's default."""
    for op in asterisk.center.operators:
        result(hotline.pause(op.extension, "test"))
    first, first_call = call_hotline(phones, "2", caller_id="5552002")
    ami.wait_event("QueueCallerJoin", Queue=QUEUE, CallerIDNum="5552002")
    second, second_call = call_hotline(phones, "6", caller_id="5556006")
    join = ami.wait_event("QueueCallerJoin", Queue=QUEUE, CallerIDNum="5556006")
    assert join["Position"] == "2"  # fire (priority 1) is ahead of transport (5)
    result(hotline.set_priority(join["Channel"], 20))
    operator = phones.operator(1)
    result(hotline.unpause(operator.user))
    answered = answer_as_operator(ami, second, second_call, operator, timeout=15)
    assert answered.connect["CallerIDNum"] == "5556006"
    assert first_call.state == CallState.CONFIRMED


def test_given_only_the_operator_channel_when_conferencing_then_the_peer_is_found(
        asterisk: RunningAsterisk, ami, hotline: HotlineService, phones) -> None:  # noqa: ANN001
    """Without the citizen's channel, the service asks Asterisk for the operator's bridge
    peer (BRIDGEPEER) and conferences the right two legs with the agency."""
    operator = phones.operator(1)
    police = phones.agency("police")
    citizen, citizen_call = call_hotline(phones, "1")
    answered = answer_as_operator(ami, citizen, citizen_call, operator)
    wait_for(lambda: ami.matching("BridgeEnter", Channel=answered.operator_channel), 10,
             "the operator in the bridge")
    wait_for(lambda: _peer(ami, answered.operator_channel) == answered.citizen_channel, 10,
             "BRIDGEPEER to be set")
    result(hotline.transfer(answered.operator_channel, "police", "conference"))
    police_call = police.answer(15)
    heard = wait_two_way_audio(phones, citizen_call, police_call)
    assert heard.both, heard


def _peer(ami: AmiWatch, channel: str) -> str:
    response = ami.action("Getvar", Channel=channel, Variable="BRIDGEPEER")
    return response.keys.get("Value", "") if response is not None else ""


def test_given_a_callback_connected_when_operator_keys_conference_then_ambulance_joins(
        asterisk: RunningAsterisk, ami, hotline: HotlineService, phones) -> None:  # noqa: ANN001
    """On a callback the operator is the calling side; *03 still makes the three-way call and
    the operator may leave it."""
    entry = hotline.callbacks.add(MissedCall(
        ABANDONED, "citizen-cb", "0.0", "PJSIP/anonymous-0", "anonymous", None, "health",
        5.0, None), now=0)
    operator = phones.operator(1)
    health = phones.agency("health")
    citizen = phones.citizen(caller_id="citizen-cb")
    entry.source = f"127.0.0.1:{citizen.port}"  # where the app's SIP lives
    result(hotline.call_back(entry.id, operator.user))
    op_call = operator.answer(15)
    citizen_call = citizen.answer(15)
    send_code(op_call, f"{codes.CONFERENCE_PREFIX}{asterisk.center.agency('health').digit}")
    health_call = health.answer(15)
    op_call.hangup()
    op_call.wait_disconnected(10)
    heard = wait_two_way_audio(phones, citizen_call, health_call)
    assert heard.both, heard

