"""The IVR and the operators' queue on a real Asterisk with pjsua2 phones (no siaga server)."""

from __future__ import annotations

import pytest

from dispatcher.hotline import codes
from ivr.menu import build_menu
from pbx.phone import tones
from pbx.phone.events import CallState
from tests.e2e.hotline_helpers import (
    QUEUE,
    answer_as_operator,
    call_hotline,
    getvar,
    reset_queue,
    verbose_log,
    wait_no_channels,
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
    yield watch
    reset_queue(asterisk, watch)


def _menu(asterisk: RunningAsterisk):  # noqa: ANN202
    return build_menu(asterisk.center, asterisk.prepared.paths.sounds)


def test_given_no_key_when_the_menu_deadline_passes_then_caller_reaches_an_operator(
        asterisk: RunningAsterisk, ami, phones) -> None:  # noqa: ANN001
    """A caller who presses nothing is queued (category unknown) by the IVR's deadline."""
    menu = _menu(asterisk)
    operator = phones.operator(1)
    citizen, call = call_hotline(phones, None)
    # The deadline is ivr.max_seconds in total; the queue then rings the operator at once.
    answered = answer_as_operator(ami, citizen, call, operator, timeout=menu.max_seconds + 8)
    assert getvar(ami, answered.operator_channel, "SIAGA_CATEGORY") == "unknown"
    ami.wait_event("QueueCallerJoin", Queue=QUEUE, Channel=answered.citizen_channel)
    assert getvar(ami, answered.citizen_channel, "QUEUE_PRIO") == str(menu.default_queue_prio)
    # The IVR left through its timeout (t: no key after the prompts; T: overall deadline).
    left = [e["Exten"] for e in ami.matching("Newexten", Channel=answered.citizen_channel)
            if e.get("Context", "").startswith("ivr-") and e.get("Exten") in ("t", "T")]
    assert left, "the caller did not leave the menu by its timeout"
    heard = phones.two_way_audio(call, answered.operator_call)
    assert heard.both, heard


def test_given_a_key_that_means_nothing_when_pressed_then_caller_goes_to_the_queue(
        asterisk: RunningAsterisk, ami, phones) -> None:  # noqa: ANN001
    """7 is neither an agency, 0, nor a language key: the caller is queued, never re-prompted."""
    menu = _menu(asterisk)
    assert menu.resolve("7") == ("unknown", menu.default_queue_prio)
    operator = phones.operator(1)
    citizen, call = call_hotline(phones, "7")
    answered = answer_as_operator(ami, citizen, call, operator, timeout=10)
    assert getvar(ami, answered.operator_channel, "SIAGA_CATEGORY") == "unknown"
    entered = [e for e in ami.matching("Newexten", Channel=answered.citizen_channel)
               if e.get("Exten") == "i" and e.get("Context", "").startswith("ivr-")]
    assert entered


def test_given_english_chosen_when_pressing_2_then_fire_category_and_english_travel(
        asterisk: RunningAsterisk, ami, phones) -> None:  # noqa: ANN001
    """9 switches the menu to English; 2 then chooses fire; both reach the operator's leg."""
    menu = _menu(asterisk)
    english = next(lang for lang in menu.languages if lang.code == "en")
    operator = phones.operator(1)
    citizen, call = call_hotline(phones, None)
    call.send_dtmf(str(english.key))
    wait_for(lambda: ami.matching("Newexten", Context="ivr-en"), 10, "the English menu")
    call.send_dtmf("2")
    answered = answer_as_operator(ami, citizen, call, operator, timeout=10)
    assert getvar(ami, answered.operator_channel, "SIAGA_CATEGORY") == "fire"
    assert getvar(ami, answered.operator_channel, "SIAGA_LANGUAGE") == "en"
    fire = menu.option(2)
    assert fire is not None
    join = ami.wait_event("QueueCallerJoin", Queue=QUEUE, Channel=answered.citizen_channel)
    assert getvar(ami, answered.citizen_channel, "QUEUE_PRIO") == str(fire.queue_prio)
    assert join["Queue"] == QUEUE


def test_given_two_waiting_callers_when_an_operator_frees_up_then_fire_before_public_order(
        asterisk: RunningAsterisk, ami, phones) -> None:  # noqa: ANN001
    """Life-threatening first: a fire caller who came second is answered before a public
    order caller who came first."""
    operator = phones.operator(1)
    iface = f"PJSIP/{operator.user}"
    for op in asterisk.center.operators:
        ami.action("QueuePause", Queue=QUEUE, Interface=f"PJSIP/{op.extension}",
                   Paused="true", Reason="test")
    first, first_call = call_hotline(phones, "5", caller_id="5550005")
    wait_for(lambda: ami.matching("QueueCallerJoin", CallerIDNum="5550005"), 10, "caller 1")
    second, second_call = call_hotline(phones, "2", caller_id="5550002")
    wait_for(lambda: ami.matching("QueueCallerJoin", CallerIDNum="5550002"), 10, "caller 2")
    ami.action("QueuePause", Queue=QUEUE, Interface=iface, Paused="false")
    answered = answer_as_operator(ami, second, second_call, operator, timeout=15)
    assert answered.connect["CallerIDNum"] == "5550002"
    assert getvar(ami, answered.operator_channel, "SIAGA_CATEGORY") == "fire"
    assert first_call.state == CallState.CONFIRMED  # still waiting, not dropped


def test_given_operator_paused_by_code_when_a_call_comes_then_the_other_operator_rings(
        asterisk: RunningAsterisk, ami, phones) -> None:  # noqa: ANN001
    """*462 pauses operator 1 (reason meal): the queue skips it; *47 makes it available."""
    op1 = phones.operator(1)
    op2 = phones.operator(2)
    code = op1.call(f"{codes.PAUSE}2")
    code.wait_disconnected(10)
    paused = ami.wait_event("QueueMemberPause", Interface=f"PJSIP/{op1.user}", Paused="1")
    assert paused.get("PausedReason") == codes.PAUSE_REASONS[2]

    citizen, call = call_hotline(phones, "0")
    answered = answer_as_operator(ami, citizen, call, op2, timeout=15)
    assert answered.operator_channel.startswith(f"PJSIP/{op2.user}-")
    assert not [c for c in op1.calls if c.direction == "incoming"]
    answered.operator_call.hangup()
    call.wait_disconnected(10)

    code = op1.call(codes.UNPAUSE)
    code.wait_disconnected(10)
    ami.wait_event("QueueMemberPause", Interface=f"PJSIP/{op1.user}", Paused="0")


def test_given_login_toggle_when_dialled_twice_then_logged_out_then_in(
        asterisk: RunningAsterisk, ami, phones) -> None:  # noqa: ANN001
    """*45 logs an available operator out (a pause with reason logged-out), then back in."""
    op1 = phones.operator(1)
    iface = f"PJSIP/{op1.user}"
    op1.call(codes.LOGIN_TOGGLE).wait_disconnected(10)
    out = ami.wait_event("QueueMemberPause", Interface=iface, Paused="1")
    assert out.get("PausedReason") == codes.LOGGED_OUT_REASON
    status = ami.command(f"queue show {QUEUE}")
    assert "paused" in next(line for line in status.splitlines() if iface in line)
    op1.call(codes.LOGIN_TOGGLE).wait_disconnected(10)
    ami.wait_event("QueueMemberPause", Interface=iface, Paused="0")


def test_given_a_hotline_call_when_it_ends_then_its_recording_exists_and_is_not_silence(
        asterisk: RunningAsterisk, ami, phones) -> None:  # noqa: ANN001
    """MixMonitor writes <recordings>/<linkedid>.wav with the citizen's voice in it."""
    operator = phones.operator(1)
    citizen, call = call_hotline(phones, "0")
    answered = answer_as_operator(ami, citizen, call, operator, timeout=10)
    linkedid = getvar(ami, answered.citizen_channel, "SIAGA_CALL")
    assert linkedid
    heard = phones.two_way_audio(call, answered.operator_call, seconds=1.5)
    assert heard.both, heard
    call.hangup()
    answered.operator_call.wait_disconnected(10)
    path = asterisk.center.recordings_dir / f"{linkedid}.wav"
    wait_for(lambda: ami.matching("Hangup", Channel=answered.citizen_channel), 10, "hangup")
    wait_for(path.exists, 10, f"recording {path}")
    recording = tones.read_wav(path)
    assert not tones.is_silence(recording)
    # Both sides of the conversation are in it: the citizen's tone and the operator's.
    assert tones.tone_fraction(recording, tones.CALLER_TONE_HZ, min_ratio=0.3) > 0.1
    assert tones.tone_fraction(recording, tones.CALLEE_TONE_HZ, min_ratio=0.3) > 0.1
