"""Helpers shared by the hotline's end-to-end tests (tests/e2e/test_hotline_*.py)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from pbx.phone.call import Call
from pbx.phone.phone import Phone
from tests.harness import PATIENCE, AmiWatch, RunningAsterisk, wait_for
from tests.phones import PhoneFactory

QUEUE = "operators"
FEATURE_DIGIT_TIMEOUT = 2.0


@dataclass
class Answered:
    """A hotline call an operator answered: both phones, both calls, and what AMI said."""

    citizen: Phone
    citizen_call: Call
    operator: Phone
    operator_call: Call
    connect: dict[str, str]  # the AgentConnect event: Channel (citizen), DestChannel (operator)

    @property
    def citizen_channel(self) -> str:
        """The citizen's Asterisk channel."""
        return self.connect["Channel"]

    @property
    def operator_channel(self) -> str:
        """The operator's Asterisk channel."""
        return self.connect["DestChannel"]


def verbose_log(ami: AmiWatch) -> None:
    """With SIAGA_TEST_VERBOSE=1, Asterisk logs every dialplan step to log/verbose.log."""
    if os.environ.get("SIAGA_TEST_VERBOSE") == "1":
        ami.command("logger add channel verbose.log notice,warning,error,verbose,dtmf")
        ami.command("core set verbose 5")


def reset_queue(asterisk: RunningAsterisk, ami: AmiWatch) -> None:
    """Every operator unpaused (an earlier test may have paused or logged one out)."""
    for op in asterisk.center.operators:
        ami.action("QueuePause", Queue=QUEUE, Interface=f"PJSIP/{op.extension}",
                   Paused="false")


def wait_no_channels(ami: AmiWatch, timeout: float = 10.0) -> None:
    """Wait until Asterisk has no channel left (the previous call is fully over)."""
    def quiet() -> bool:
        try:
            return ami.channels() == 0  # not "0 active channels" in: 10, 20.. hold it
        except RuntimeError:  # no answer in time (Asterisk busy): ask again
            return False

    wait_for(quiet, timeout, "every channel to be gone")


def call_hotline(phones: PhoneFactory, keys: str | None, caller_id: str | None = None,
                 asterisk: RunningAsterisk | None = None) -> tuple[Phone, Call]:
    """A citizen calls the hotline and, once answered, presses ``keys`` (None: nothing)."""
    citizen = phones.citizen(caller_id=caller_id)
    call = citizen.call(phones.directory.hotline)
    call.wait_confirmed(10)
    if keys:
        call.send_dtmf(keys)
    return citizen, call


def answer_as_operator(ami: AmiWatch, citizen: Phone, citizen_call: Call, operator: Phone,
                       timeout: float = 20.0) -> Answered:
    """The operator's phone rings with the hotline call; the operator answers."""
    op_call = operator.answer(timeout)
    connect = wait_for(lambda: [e for e in ami.matching("AgentConnect", Queue=QUEUE)
                                if e.get("DestChannel", "").startswith(f"PJSIP/{operator.user}-")
                                and e not in _SEEN],
                       10, f"AgentConnect of {operator.user}")[-1]
    _SEEN.append(connect)
    return Answered(citizen, citizen_call, operator, op_call, connect)


_SEEN: list[dict[str, str]] = []  # AgentConnect events already handed out


def getvar(ami: AmiWatch, channel: str, variable: str) -> str:
    """A channel variable's value ('' when unset)."""
    response = ami.action("Getvar", Channel=channel, Variable=variable)
    return response.keys.get("Value", "") if response is not None else ""


def send_code(call: Call, code: str) -> None:
    """Key a feature code, one digit at a time (as a person would, within the digit timeout)."""
    call.send_dtmf(code)
    # pjsua2 follows a digit string with stray end-of-event packets that Asterisk reads as
    # extra keys; past the feature digit timeout they are dropped instead of joining the
    # next code. (features.conf featuredigittimeout is 2 s.)
    call.stack.run_for(0.2 * len(code) + FEATURE_DIGIT_TIMEOUT + 0.3)


def wait_two_way_audio(phones: PhoneFactory, a: Call, b: Call, timeout: float = 12.0):  # noqa: ANN201
    """Check two-way audio until both sides hear each other (or the deadline passes).

    For a moment after a conference or bridge changes shape, media may pause (the mixer
    re-forms); the check is repeated rather than failing on that gap. Returns the last
    :class:`tests.phones.TwoWay`.
    """
    deadline = time.monotonic() + timeout * PATIENCE
    while True:
        heard = phones.two_way_audio(a, b)
        if heard.both or time.monotonic() >= deadline:
            return heard


def operator_then_citizen(operator: Phone, citizen: Phone, operator_timeout: float = 30.0,
                          citizen_timeout: float = 30.0) -> tuple[Call, Call]:
    """An operator-first callback: the operator's phone rings and answers, then the
    citizen's; (operator's call, citizen's call), both confirmed."""
    taken = operator.wait_incoming(operator_timeout)
    taken.answer()
    taken.wait_confirmed()
    ringing = citizen.wait_incoming(citizen_timeout)
    ringing.answer()
    ringing.wait_confirmed()
    return taken, ringing
