"""Overflow: no operator answers within queue.overflow_seconds -> the supervisors ring."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pbx.phone import tones
from pbx.phone.phone import Phone
from pbx.provision import AsteriskInstall
from tests.harness import EXAMPLE_CONFIG, RunningAsterisk, start_asterisk
from tests.phones import PhoneFactory

pytestmark = pytest.mark.asterisk


@pytest.fixture
def quick_overflow(tmp_path: Path, asterisk_install: AsteriskInstall
                   ) -> Iterator[RunningAsterisk]:
    """The example city with overflow after 10 s (the shortest allowed)."""
    text = EXAMPLE_CONFIG.read_text()
    old = "  overflow_seconds: 60 "
    assert old in text
    config = tmp_path / "siaga.example.yaml"
    config.write_text(text.replace(old, "  overflow_seconds: 10 ", 1))
    running = start_asterisk(tmp_path / "center", asterisk_install, config=config)
    try:
        yield running
    finally:
        running.stop()


def test_given_no_operator_answers_when_overflow_time_passes_then_a_supervisor_answers(
        quick_overflow: RunningAsterisk, sip_stack, tmp_path: Path) -> None:  # noqa: ANN001
    """Operator 1 lets the call ring; after overflow_seconds a supervisor's phone rings,
    answers, and talks with the citizen."""
    asterisk = quick_overflow
    phones = PhoneFactory(sip_stack, tmp_path)
    try:
        op_ext = asterisk.center.operators[0].extension
        sup_ext = asterisk.center.supervisors[0]
        operator = phones.extension(op_ext, asterisk.password(op_ext), asterisk.sip_address)
        supervisor = phones.extension(sup_ext, asterisk.password(sup_ext),
                                      asterisk.sip_address)
        # An anonymous caller at this Asterisk (registers nowhere).
        citizen = phones._keep(Phone(sip_stack, "citizen-overflow",
                                     server=asterisk.sip_address))
        call = citizen.call(asterisk.center.hotline[0])
        call.wait_confirmed(10)
        call.send_dtmf("0")
        operator.wait_incoming(10)  # rings, nobody picks up
        sup_call = supervisor.answer(asterisk.center.queue.overflow_seconds + 15)
        heard = phones.two_way_audio(call, sup_call)
        assert heard.both, heard
    finally:
        phones.close_all()


@pytest.fixture
def quick_announcements(tmp_path: Path, asterisk_install: AsteriskInstall
                        ) -> Iterator[RunningAsterisk]:
    """The example city announcing to waiting callers every 15 s."""
    text = EXAMPLE_CONFIG.read_text()
    old = "  announce_seconds: 30 "
    assert old in text
    config = tmp_path / "siaga.example.yaml"
    config.write_text(text.replace(old, "  announce_seconds: 15 ", 1))
    running = start_asterisk(tmp_path / "center", asterisk_install, config=config)
    try:
        yield running
    finally:
        running.stop()


def _speech_windows(path: Path, start: float = 0.0) -> int:
    """Half-second windows (from ``start`` s) that are loud and neither ringback (440/480 Hz)
    nor silence."""
    audio = tones.read_wav(path).slice(start)
    count = 0
    for i in range(int(audio.seconds * 2)):
        window = audio.slice(i / 2, (i + 1) / 2)
        freq = tones.dominant_frequency(window)
        if freq is not None and not (400 <= freq <= 520):
            count += 1
    return count


def test_given_a_caller_waiting_when_announce_time_passes_then_it_hears_the_wait_prompt(
        quick_announcements: RunningAsterisk, sip_stack, tmp_path: Path) -> None:  # noqa: ANN001
    """No operator available: the caller hears its position on joining, ringback, and again
    words (position and the configured "wait" prompt) once announce_seconds have passed."""
    asterisk = quick_announcements
    phones = PhoneFactory(sip_stack, tmp_path)
    try:
        citizen = phones._keep(Phone(sip_stack, "citizen-waiting", server=asterisk.sip_address))
        call = citizen.call(asterisk.center.hotline[0])
        call.wait_confirmed(10)
        call.send_dtmf("0")
        sip_stack.run_for(1.0)  # past the menu
        heard = call.start_recording(phones.recording("waiting"))
        call.wait_heard(asterisk.center.queue.announce_seconds + 6, timeout=40)
        call.stop_recording()
        assert not tones.is_silence(heard)
        every = asterisk.center.queue.announce_seconds
        assert _speech_windows(heard) >= 4, "no announcement heard while waiting"
        # The recording starts ~1 s after joining: the periodic one comes after ~every - 1 s.
        assert _speech_windows(heard, start=every - 1.5) >= 2, "no periodic announcement"
    finally:
        phones.close_all()


@pytest.fixture
def agency_overflow(tmp_path: Path, asterisk_install: AsteriskInstall
                    ) -> Iterator[RunningAsterisk]:
    """The example city overflowing to the caller's chosen agency after 10 s."""
    text = EXAMPLE_CONFIG.read_text()
    for old, new in (("  overflow_seconds: 60 ", "  overflow_seconds: 10 "),
                     ("  overflow: supervisors ", "  overflow: agency ")):
        assert old in text
        text = text.replace(old, new, 1)
    config = tmp_path / "siaga.example.yaml"
    config.write_text(text)
    running = start_asterisk(tmp_path / "center", asterisk_install, config=config)
    try:
        yield running
    finally:
        running.stop()


def test_given_overflow_to_the_agency_when_no_operator_answers_then_the_chosen_agency_rings(
        agency_overflow: RunningAsterisk, sip_stack, tmp_path: Path) -> None:  # noqa: ANN001
    """A caller who pressed 2 (fire) and waited overflow_seconds is put through to the fire
    brigade's ring group directly."""
    asterisk = agency_overflow
    phones = PhoneFactory(sip_stack, tmp_path)
    try:
        fire_ext = asterisk.center.agency("fire").extensions[0]
        fire = phones.extension(fire_ext, asterisk.password(fire_ext), asterisk.sip_address)
        citizen = phones._keep(Phone(sip_stack, "citizen-fire", server=asterisk.sip_address))
        call = citizen.call(asterisk.center.hotline[0])
        call.wait_confirmed(10)
        call.send_dtmf(str(asterisk.center.agency("fire").digit))
        fire_call = fire.answer(asterisk.center.queue.overflow_seconds + 15)
        heard = phones.two_way_audio(call, fire_call)
        assert heard.both, heard
    finally:
        phones.close_all()
