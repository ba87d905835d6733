"""A citizen reaches an agency through an operator, three ways, by softphone feature codes.

These run on the harness's Asterisk, which has no siaga server at all: each one is also a
fail-open test (the dialplan alone carries the hotline and the transfers).
"""

from __future__ import annotations

import pytest

from dispatcher.hotline import codes
from pbx.phone.events import CallState
from tests.e2e.hotline_helpers import (
    answer_as_operator,
    call_hotline,
    getvar,
    reset_queue,
    send_code,
    verbose_log,
    wait_no_channels,
    wait_two_way_audio,
)
from tests.harness import RunningAsterisk, wait_for

pytestmark = pytest.mark.asterisk


@pytest.fixture
def ami(asterisk: RunningAsterisk):  # noqa: ANN201 (tests.harness.AmiWatch)
    """An AMI watch on a quiet Asterisk with every operator available."""
    watch = asterisk.ami()
    verbose_log(watch)
    wait_no_channels(watch)
    reset_queue(asterisk, watch)
    return watch


def _police(asterisk: RunningAsterisk) -> codes.AgencyCodes:
    return next(c for c in codes.agency_codes(asterisk.center.agencies) if c.agency == "police")


def test_given_citizen_pressed_1_when_operator_blind_transfers_then_citizen_talks_to_police(
        asterisk: RunningAsterisk, ami, phones) -> None:  # noqa: ANN001
    """IVR 1 -> operator (sees category police) -> *1 -> police answers -> two-way audio."""
    operator = phones.operator(1)
    police = phones.agency("police")
    citizen, citizen_call = call_hotline(phones, "1")
    answered = answer_as_operator(ami, citizen, citizen_call, operator)
    assert getvar(ami, answered.operator_channel, "SIAGA_CATEGORY") == "police"

    send_code(answered.operator_call, _police(asterisk).blind)
    police_call = police.answer(15)
    # The operator is free at once: a blind transfer.
    answered.operator_call.wait_disconnected(10)
    assert citizen_call.state == CallState.CONFIRMED

    heard = phones.two_way_audio(citizen_call, police_call)
    assert heard.both, heard


def test_given_operator_consults_police_when_completing_then_citizen_talks_to_police(
        asterisk: RunningAsterisk, ami, phones) -> None:  # noqa: ANN001
    """**1 rings police while the citizen waits; #1 hands the citizen over; audio flows."""
    operator = phones.operator(1)
    police = phones.agency("police")
    citizen, citizen_call = call_hotline(phones, "1")
    answered = answer_as_operator(ami, citizen, citizen_call, operator)

    send_code(answered.operator_call, _police(asterisk).consult)
    police_call = police.answer(15)
    # Operator and agency talk first (the citizen is held meanwhile).
    consult = phones.two_way_audio(answered.operator_call, police_call)
    assert consult.both, consult

    send_code(answered.operator_call, codes.CONSULT_COMPLETE)
    answered.operator_call.wait_disconnected(10)
    heard = phones.two_way_audio(citizen_call, police_call)
    assert heard.both, heard


def test_given_operator_consults_police_when_cancelling_then_operator_is_back_with_citizen(
        asterisk: RunningAsterisk, ami, phones) -> None:  # noqa: ANN001
    """#0 during a consultation hangs the agency leg up and reconnects citizen and operator."""
    operator = phones.operator(1)
    police = phones.agency("police")
    citizen, citizen_call = call_hotline(phones, "1")
    answered = answer_as_operator(ami, citizen, citizen_call, operator)

    send_code(answered.operator_call, _police(asterisk).consult)
    police_call = police.answer(15)
    send_code(answered.operator_call, codes.CONSULT_CANCEL)
    police_call.wait_disconnected(10)
    heard = phones.two_way_audio(citizen_call, answered.operator_call)
    assert heard.both, heard


def test_given_a_conference_when_operator_leaves_then_citizen_and_police_stay_connected(
        asterisk: RunningAsterisk, ami, phones) -> None:  # noqa: ANN001
    """*01 makes citizen + operator + police one ConfBridge; the operator hangs up; the
    citizen and the police still hear each other."""
    operator = phones.operator(1)
    police = phones.agency("police")
    citizen, citizen_call = call_hotline(phones, "1")
    answered = answer_as_operator(ami, citizen, citizen_call, operator)

    send_code(answered.operator_call, _police(asterisk).conference)
    police_call = police.answer(15)
    wait_for(lambda: ami.matching("ConfbridgeJoin", Conference=getvar(
        ami, answered.citizen_channel, "SIAGA_CALL")), 10, "the conference")
    three = phones.two_way_audio(citizen_call, police_call)
    assert three.both, three

    answered.operator_call.hangup()
    answered.operator_call.wait_disconnected(10)
    assert citizen_call.state == CallState.CONFIRMED
    assert police_call.state == CallState.CONFIRMED
    # The mixer re-forms as the operator leaves: media may pause a moment, then flows.
    heard = wait_two_way_audio(phones, citizen_call, police_call)
    assert heard.both, heard
