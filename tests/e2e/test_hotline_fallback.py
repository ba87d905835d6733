"""An agency that does not answer: its fallback rings, and whoever waits hears why."""

from __future__ import annotations

import pytest

from dispatcher.hotline import codes
from pbx.phone import tones
from pbx.phone.events import CallState
from tests.e2e.hotline_helpers import (
    answer_as_operator,
    call_hotline,
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


def _fallback_phone(asterisk: RunningAsterisk, phones, key: str):  # noqa: ANN001, ANN202
    agency = asterisk.center.agency(key)
    phone = phones.extension(agency.fallback, asterisk.password(agency.fallback))
    phone.name = f"{key}-fallback"
    return agency, phone


def _played_failure(ami, channel_prefix: str) -> bool:  # noqa: ANN001
    # The failure prompt ran on that leg (Asterisk's own account of the dialplan).
    return any(e.get("Channel", "").startswith(channel_prefix)
               and e.get("Application") == "Playback"
               and "siaga-agency_failed" in e.get("AppData", "")
               for e in ami.matching("Newexten", Context="siaga-agency-failed"))


def test_given_police_rings_unanswered_when_consulting_then_operator_hears_it_and_fallback_rings(
        asterisk: RunningAsterisk, ami, phones) -> None:  # noqa: ANN001
    """**1: police's phone rings ring_seconds without answer; the operator hears the failure
    prompt; the fallback phone rings and answers; #1 hands the citizen to it; audio flows."""
    police_agency, fallback = _fallback_phone(asterisk, phones, "police")
    operator = phones.operator(1)
    police = phones.agency("police")  # registered, rings, never answers
    citizen, citizen_call = call_hotline(phones, "1")
    answered = answer_as_operator(ami, citizen, citizen_call, operator)

    send_code(answered.operator_call, f"{codes.CONSULT_PREFIX}{police_agency.digit}")
    ringing = police.wait_incoming(10)
    answered.operator_call.start_recording(phones.recording("operator-during-consult"))
    fallback_call = fallback.answer(police_agency.ring_seconds + 15)
    assert ringing.state == CallState.DISCONNECTED  # the group stopped ringing first
    failed = ami.wait_event("UserEvent", UserEvent="SiagaAgencyFailed", Agency="police",
                            Target="group")
    assert failed["Status"] == "NOANSWER"
    assert _played_failure(ami, "Local/")
    # What the operator heard between the consultation starting and the fallback: the
    # prompt (speech), not silence.
    heard = answered.operator_call.stop_recording()
    assert heard is not None and not tones.is_silence(heard, skip_s=0.3)

    send_code(answered.operator_call, codes.CONSULT_COMPLETE)
    answered.operator_call.wait_disconnected(10)
    both = wait_two_way_audio(phones, citizen_call, fallback_call)
    assert both.both, both


def test_given_no_police_phone_up_when_blind_transferred_then_citizen_hears_it_and_fallback_answers(
        asterisk: RunningAsterisk, ami, phones) -> None:  # noqa: ANN001
    """*1 with no police phone registered: the citizen hears the failure prompt and the
    police fallback answers the citizen."""
    police_agency, fallback = _fallback_phone(asterisk, phones, "police")
    operator = phones.operator(1)
    citizen, citizen_call = call_hotline(phones, "1")
    answered = answer_as_operator(ami, citizen, citizen_call, operator)
    send_code(answered.operator_call, f"{codes.BLIND_PREFIX}{police_agency.digit}")
    fallback_call = fallback.answer(20)
    wait_for(lambda: _played_failure(ami, answered.citizen_channel), 5, "the failure prompt")
    both = wait_two_way_audio(phones, citizen_call, fallback_call)
    assert both.both, both
