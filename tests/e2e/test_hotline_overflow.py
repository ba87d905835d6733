"""Overflow: no operator answers within queue.overflow_seconds -> the supervisors ring."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

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
