"""The self-test's desk on a real Asterisk (no server: nothing else registers the desk):
a test call from the self-test endpoint rings the desk and no operator; a citizen's call
never rings the desk, even when the desk is the only phone up."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from dialplans.contract import QUEUE_NAME
from dispatcher.selftest.settings import PROBE_ENDPOINT
from pbx.phone.errors import PhoneTimeout
from pbx.phone.phone import Phone
from pbx.phone.stack import SipStack
from tests.harness import EXAMPLE_CONFIG, RunningAsterisk, start_asterisk

pytestmark = pytest.mark.asterisk

DESK, OPERATOR = "204", "201"


@pytest.fixture(scope="module")
def desk_asterisk(tmp_path_factory: pytest.TempPathFactory,
                  asterisk_install) -> Iterator[RunningAsterisk]:  # noqa: ANN001
    """The example city with desk 204 kept for the self-test, in a real Asterisk."""
    tmp = tmp_path_factory.mktemp("selftest-desk")
    doc = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    doc["selftest"] = {"desk": DESK}
    config = tmp / "center.yaml"
    config.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
    running = start_asterisk(tmp / "state", asterisk_install, config=Path(config))
    try:
        yield running
    finally:
        running.stop()


def staff(stack: SipStack, running: RunningAsterisk, ext: str) -> Phone:
    """A registered staff phone."""
    phone = Phone(stack, ext, server=running.sip_address, password=running.password(ext),
                  name=f"phone-{ext}")
    phone.wait_registered(10)
    return phone


def into_queue(stack: SipStack, running: RunningAsterisk, caller: Phone) -> object:
    """``caller`` calls the hotline and presses 0 (an operator) once the menu plays."""
    call = caller.call(running.center.hotline[0])
    call.wait_confirmed(10)
    stack.run_for(1.0)  # a caller listens a moment before pressing, as the probe does
    call.send_dtmf("0")
    return call


def test_given_a_desk_when_the_self_test_endpoint_calls_then_the_desk_rings_and_no_operator(
        desk_asterisk: RunningAsterisk, sip_stack: SipStack) -> None:
    """The self-test's call (authenticated as its endpoint) rings the desk, not the free
    operator beside it."""
    running = desk_asterisk
    operator, desk = staff(sip_stack, running, OPERATOR), staff(sip_stack, running, DESK)
    probe = Phone(sip_stack, PROBE_ENDPOINT, server=running.sip_address,
                  password=running.prepared.creds.selftest_password, register=False,
                  name="selftest")
    try:
        call = into_queue(sip_stack, running, probe)
        sip_stack.wait_until(lambda: desk.incoming_waiting > 0, 15, "the desk to ring")
        assert operator.incoming_waiting == 0
        call.hangup()
    finally:
        for phone in (probe, desk, operator):
            phone.close()


def test_given_only_the_desk_up_when_a_citizen_calls_then_the_desk_never_rings(
        desk_asterisk: RunningAsterisk, sip_stack: SipStack) -> None:
    """A citizen who asks for an operator waits in the queue while the desk, though free,
    is never offered the call (the desk's phone is the self-test's, no person's)."""
    running = desk_asterisk
    desk = staff(sip_stack, running, DESK)
    citizen = Phone(sip_stack, "citizen", server=running.sip_address, name="citizen")
    watch = running.ami()
    try:
        call = into_queue(sip_stack, running, citizen)
        watch.wait_event("QueueCallerJoin", 15, Queue=QUEUE_NAME)
        with pytest.raises(PhoneTimeout):
            sip_stack.wait_until(lambda: desk.incoming_waiting > 0, 5, "the desk to ring")
        # The citizen is still waiting for a person, not dropped.
        assert not watch.matching("QueueCallerLeave", Queue=QUEUE_NAME)
        call.hangup()
    finally:
        watch.close()
        for phone in (citizen, desk):
            phone.close()
