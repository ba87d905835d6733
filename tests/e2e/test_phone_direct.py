"""pjsua2 phones calling each other directly (no server): the phone library on real SIP/RTP.

These need no Asterisk: each phone listens on its own 127.0.0.1 port and the others dial
``sip:user@127.0.0.1:port``. They prove the library itself; the same scenarios through
Asterisk live in ``test_phone_asterisk.py``.
"""

from __future__ import annotations

import wave
from typing import TYPE_CHECKING

import numpy as np
import pytest

from pbx.phone import tones
from pbx.phone.call import Call
from pbx.phone.errors import CallbackError, CallFailed, PhoneError, PhoneTimeout
from pbx.phone.events import CallState
from pbx.phone.limits import MAX_PHONES
from pbx.phone.phone import Phone
from pbx.phone.stack import SipStack

if TYPE_CHECKING:
    from tests.phones import PhoneFactory


CITIZEN_TONE = tones.CALLER_TONE_HZ
AGENCY_TONE = tones.CALLEE_TONE_HZ


def connect(caller: Phone, callee: Phone) -> tuple[Call, Call]:
    """Call ``callee`` from ``caller`` directly, answer, and return both confirmed legs."""
    out = caller.call(callee.uri)
    inc = callee.wait_incoming()
    inc.answer()
    return out.wait_confirmed(), inc.wait_confirmed()


def test_given_two_phones_when_one_calls_the_other_then_it_rings_and_both_are_confirmed(
    phones: PhoneFactory,
) -> None:
    """The callee sees the call ringing (180) before answering; both legs reach CONFIRMED."""
    a, b = phones.direct("citizen"), phones.direct("agency")
    out = a.call(b.uri)
    inc = b.wait_incoming()
    out.wait_state(CallState.EARLY)
    assert out.status_code == 180
    assert a.user in inc.remote_uri
    inc.answer()
    out.wait_confirmed()
    inc.wait_confirmed()
    assert out.state == inc.state == CallState.CONFIRMED


def test_given_a_call_when_each_side_plays_a_tone_then_each_hears_the_other_and_not_itself(
    phones: PhoneFactory,
) -> None:
    """Two-way audio: 697 Hz one way, 1209 Hz the other, each side hears only the far tone."""
    out, inc = connect(phones.direct("citizen"), phones.direct("agency"))
    heard = phones.two_way_audio(out, inc)
    assert heard.both, heard
    assert heard.a_heard == pytest.approx(AGENCY_TONE, abs=15)
    assert heard.b_heard == pytest.approx(CITIZEN_TONE, abs=15)
    # No loopback: a side's own tone is not what it records.
    assert not tones.hears_tone(out.recording, CITIZEN_TONE, skip_s=0.3)
    assert not tones.hears_tone(inc.recording, AGENCY_TONE, skip_s=0.3)


def test_given_a_call_when_nobody_plays_then_both_sides_hear_silence(
    phones: PhoneFactory,
) -> None:
    """With no source connected, the recordings are silence (the detector is not fooled)."""
    out, inc = connect(phones.direct("a"), phones.direct("b"))
    out.start_recording(phones.recording("a"))
    path = out.wait_heard(1.0)
    assert tones.is_silence(path)
    assert tones.dominant_frequency(path) is None


def test_given_a_call_when_a_wav_is_played_then_the_other_side_hears_it(
    phones: PhoneFactory,
) -> None:
    """play_wav sends a file's audio (here a 1209 Hz tone written with numpy) into the call."""
    samples = 0.3 * np.sin(2 * np.pi * AGENCY_TONE * np.arange(8000) / 8000)
    path = phones.workdir / "tone.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes((samples * 32767).astype("<i2").tobytes())
    out, inc = connect(phones.direct("ivr"), phones.direct("citizen"))
    out.play_wav(path)
    inc.start_recording(phones.recording("heard"))
    heard = inc.wait_heard(1.3)
    assert tones.hears_tone(heard, AGENCY_TONE, skip_s=0.3)
    out.stop_audio()
    inc.start_recording(phones.recording("after"))
    assert tones.is_silence(inc.wait_heard(0.8), skip_s=0.2)


def test_given_a_call_when_dtmf_is_sent_then_the_other_side_receives_the_digits(
    phones: PhoneFactory,
) -> None:
    """RFC 4733 digits arrive in order at the far end, none at the sender."""
    out, inc = connect(phones.direct("citizen"), phones.direct("ivr"))
    out.send_dtmf("12*#9")
    assert inc.wait_dtmf("12*#9") == "12*#9"
    assert out.dtmf_received == []


def test_given_a_call_when_it_is_held_then_the_holder_hears_nothing_until_unhold(
    phones: PhoneFactory,
) -> None:
    """Hold makes the stream sendonly from the holder: it stops hearing the far tone."""
    out, inc = connect(phones.direct("operator"), phones.direct("citizen"))
    inc.play_tone(AGENCY_TONE)
    out.hold()
    assert out.on_hold
    inc.stack.wait_until(lambda: inc.remote_hold, 5, "remote hold seen by the callee")
    out.start_recording(phones.recording("held"))
    held = out.wait_heard(1.0)
    assert tones.is_silence(held, skip_s=0.2)
    out.unhold()
    out.start_recording(phones.recording("unheld"))
    unheld = out.wait_heard(1.3)
    assert tones.hears_tone(unheld, AGENCY_TONE, skip_s=0.3)


def test_given_a_call_when_the_callee_rejects_then_the_caller_sees_the_status(
    phones: PhoneFactory,
) -> None:
    """A 486 from the callee fails the caller's wait with that status."""
    a, b = phones.direct("citizen"), phones.direct("busy")
    out = a.call(b.uri)
    b.wait_incoming().hangup(486)
    with pytest.raises(CallFailed) as failed:
        out.wait_confirmed()
    assert failed.value.call.status_code == 486
    assert out.state == CallState.DISCONNECTED


def test_given_a_call_when_one_side_hangs_up_then_the_other_is_disconnected(
    phones: PhoneFactory,
) -> None:
    """BYE ends the other leg too; the recording of an ended call is finished and readable."""
    out, inc = connect(phones.direct("a"), phones.direct("b"))
    inc.start_recording(phones.recording("b"))
    out.play_tone(CITIZEN_TONE)
    inc.wait_heard(0.8)
    out.hangup()
    inc.wait_disconnected()
    assert inc.released  # reaped on the next pump: the WAV header is now complete
    audio = tones.read_wav(inc.recording)
    assert audio.rate == 8000
    assert tones.hears_tone(audio, CITIZEN_TONE, skip_s=0.3)


def test_given_a_call_when_the_callee_blind_transfers_then_the_caller_talks_to_the_target(
    phones: PhoneFactory,
) -> None:
    """REFER from B sends A to C; A and C then hear each other."""
    a, b, c = phones.direct("citizen"), phones.direct("operator"), phones.direct("police")
    a_b, b_a = connect(a, b)
    b_a.transfer_blind(c.uri, wait=False)
    c_a = c.wait_incoming()
    assert a.user in c_a.remote_uri
    c_a.answer()
    c_a.wait_confirmed()
    assert b_a.wait_transfer() == 200
    b_a.hangup()
    a_c = a.wait_call(lambda k: k.direction == "transfer" and k.media_active, what="new leg")
    a_b.wait_disconnected()
    heard = phones.two_way_audio(a_c, c_a)
    assert heard.both, heard


def test_given_four_calls_when_a_fifth_is_placed_then_it_is_refused_with_the_limit(
    phones: PhoneFactory,
) -> None:
    """pjsua is built for 4 calls per process: the fifth is a clear error, not a crash.

    (This is why an attended transfer is tested through Asterisk only: phone to phone it
    needs six call legs in one process.)
    """
    a, b = phones.direct("a"), phones.direct("b")
    connect(a, b)
    connect(a, b)
    with pytest.raises(PhoneError, match="4 calls at a time"):
        a.call(b.uri)
    assert len(a.active_calls) == len(b.active_calls) == 2


def test_given_a_header_with_a_line_break_when_calling_then_it_is_refused_and_no_call_is_left(
    phones: PhoneFactory,
) -> None:
    """A header value with CR LF never reaches the wire, and the phone keeps no half-made call
    behind (one that could never end, which close() would wait on and fail)."""
    a, b = phones.direct("a"), phones.direct("b")
    with pytest.raises(ValueError, match="bad SIP header"):
        a.call(b.uri, headers={"X-Siaga": "1\r\nInjected: yes"})
    assert a.calls == [] and a.active_calls == []
    a.close(timeout=1.0)
    assert a.closed


def test_given_no_caller_when_waiting_for_a_call_then_it_times_out(phones: PhoneFactory) -> None:
    """wait_incoming has a deadline and says what it waited for."""
    lonely = phones.direct("lonely")
    with pytest.raises(PhoneTimeout, match="a call to"):
        lonely.wait_incoming(timeout=0.2)


def test_given_live_calls_when_the_phones_are_closed_then_the_stack_still_works(
    sip_stack: SipStack, tmp_path
) -> None:
    """Closing phones with calls up (a test failing halfway) leaves the stack usable."""
    from tests.phones import PhoneFactory

    first = PhoneFactory(sip_stack, tmp_path)
    out, inc = connect(first.direct("a"), first.direct("b"))
    out.play_tone(CITIZEN_TONE)
    inc.start_recording(tmp_path / "cut.wav")
    first.close_all()
    assert out.released and inc.released
    assert sip_stack.phones == []
    second = PhoneFactory(sip_stack, tmp_path)
    try:
        out2, inc2 = connect(second.direct("c"), second.direct("d"))
        assert out2.state == inc2.state == CallState.CONFIRMED
    finally:
        second.close_all()


def test_given_a_failing_event_handler_when_an_event_comes_then_the_error_is_raised_in_the_test(
    phones: PhoneFactory,
) -> None:
    """An exception in code run from a pjsua2 callback surfaces from the wait, no abort."""
    a, b = phones.direct("a"), phones.direct("b")

    def explode(event: object) -> None:
        if getattr(event, "kind", "") == "incoming":
            raise RuntimeError("handler bug")

    b.on_event = explode
    a.call(b.uri)
    with pytest.raises(CallbackError, match="handler bug"):
        b.wait_incoming()


def test_given_a_full_stack_when_one_more_phone_is_made_then_it_is_refused(
    phones: PhoneFactory,
) -> None:
    """pjsua's account limit is an assertion in C; the stack refuses before reaching it."""
    for i in range(MAX_PHONES - len(phones.stack.phones)):
        phones.direct(f"p{i}")
    with pytest.raises(PhoneError, match="at most"):
        phones.direct("one-too-many")


def test_given_a_stack_when_a_second_is_created_then_it_is_refused(sip_stack: SipStack) -> None:
    """One pjsua2 endpoint per process: a second stack is an error, not a crash."""
    with pytest.raises(PhoneError, match="already runs"):
        SipStack()
