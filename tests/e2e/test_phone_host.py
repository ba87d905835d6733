"""Phones in a child process (PhoneHost): past the per-process pjsua limits, crash-isolated."""

from __future__ import annotations

import os
import signal
from typing import TYPE_CHECKING

import pytest

from pbx.phone.errors import PhoneError, PhoneTimeout
from pbx.phone.limits import MAX_CALLS

if TYPE_CHECKING:
    from tests.phones import PhoneFactory


def connect(caller, callee):  # noqa: ANN001, ANN201 - local or remote phones alike
    """Call ``callee`` directly from ``caller``, answer, return both confirmed legs."""
    out = caller.call(callee.uri)
    inc = callee.wait_incoming(5)
    inc.answer()
    out.wait_confirmed()
    inc.wait_confirmed()
    return out, inc


def test_given_a_phone_in_a_host_when_called_from_here_then_audio_and_dtmf_flow_both_ways(
    phones: PhoneFactory,
) -> None:
    """A remote phone rings, answers, sends and hears tones, and sends DTMF like a local one."""
    host = phones.host()
    local, remote = phones.direct("here"), phones.direct("there", host=host)
    out, inc = connect(local, remote)
    assert local.user in inc.remote_uri
    heard = phones.two_way_audio(out, inc)
    assert heard.both, heard
    inc.send_dtmf("7#")
    assert out.wait_dtmf("7#") == "7#"
    out.send_dtmf("3")
    assert inc.wait_dtmf("3") == "3"
    assert inc.dtmf_received == ["3"]  # read back from the child
    out.hangup()
    inc.wait_disconnected()


def test_given_two_hosts_when_more_calls_than_one_process_holds_then_all_are_up(
    phones: PhoneFactory,
) -> None:
    """Six call legs at once: two per process across here and two hosts (limit 4 each)."""
    hosts = [phones.host(), phones.host()]
    here = phones.direct("here")
    there = [phones.direct(f"there{i}", host=h) for i, h in enumerate(hosts)]
    legs = []
    for callee in there:
        legs.append(connect(here, callee))
    callers = [phones.direct(f"caller{i}", host=h) for i, h in enumerate(hosts)]
    # Each host now holds its 1 leg + 1 more outgoing + 1 incoming: across processes.
    legs.append(connect(callers[0], there[1]))
    legs.append(connect(callers[1], there[0]))
    assert sum(2 for _ in legs) == 8 > MAX_CALLS
    for out, inc in legs:
        assert inc.state == out.state


def test_given_a_host_when_a_wait_times_out_then_the_timeout_comes_back_as_such(
    phones: PhoneFactory,
) -> None:
    """Errors raised in the child keep their meaning here."""
    remote = phones.direct("lonely", host=phones.host())
    with pytest.raises(PhoneTimeout, match="a call to"):
        remote.wait_incoming(0.2)
    with pytest.raises(AttributeError):
        remote.no_such_attribute  # noqa: B018


def test_given_a_host_that_crashes_when_used_then_the_test_process_lives_and_is_told(
    phones: PhoneFactory,
) -> None:
    """A child killed by SIGABRT (what a pjsua assertion does) is an error here, not a crash."""
    host = phones.host()
    remote = phones.direct("doomed", host=host)
    os.kill(host.pid, signal.SIGABRT)
    with pytest.raises(PhoneError, match=f"died with status -{int(signal.SIGABRT)}"):
        remote.uri  # noqa: B018
    assert host.closed
    remote.close()  # nothing left to close: no error
    # This process's own phones still work.
    out, inc = connect(phones.direct("a"), phones.direct("b"))
    assert inc.state == out.state


@pytest.mark.asterisk
def test_given_an_agency_phone_in_a_host_when_an_operator_calls_it_then_they_talk(
    phones: PhoneFactory,
) -> None:
    """A registered phone in a child process works through Asterisk like a local one."""
    police = phones.agency("police", 2, host=phones.host())
    assert police.registered
    operator = phones.operator(1)
    out = operator.call(police.user)
    inc = police.wait_incoming(5)
    inc.answer()
    out.wait_confirmed()
    inc.wait_confirmed()
    heard = phones.two_way_audio(out, inc)
    assert heard.both, heard
