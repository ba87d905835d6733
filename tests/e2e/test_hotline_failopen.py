"""Fail-open: a center whose siaga server never started still carries the hotline.

A private Asterisk is started fresh (empty Asterisk database, nobody on AMI, no siaga
process at all): a hotline call reaches an operator, the operator's feature code reaches
an agency, and audio flows. Then Asterisk restarts while an operator is logged out: the
desk comes back available (static members), so a restart can never leave the queue empty.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from dispatcher.hotline import codes
from pbx.provision import AsteriskInstall
from tests.harness import RunningAsterisk, start_asterisk, wait_for
from tests.phones import Credentials, Directory, PhoneFactory

pytestmark = pytest.mark.asterisk


@pytest.fixture
def fresh(tmp_path: Path, asterisk_install: AsteriskInstall) -> Iterator[RunningAsterisk]:
    """An Asterisk of this test's own, just started on an empty state directory."""
    running = start_asterisk(tmp_path / "center", asterisk_install)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def fresh_phones(sip_stack, tmp_path: Path, fresh: RunningAsterisk  # noqa: ANN001
                 ) -> Iterator[PhoneFactory]:
    """Phones registered to the fresh Asterisk."""
    center = fresh.center

    def creds(ext: str) -> Credentials:
        return Credentials(ext, fresh.password(ext))

    directory = Directory(
        server=fresh.sip_address, hotline=center.hotline[0],
        operators=[creds(op.extension) for op in center.operators],
        agencies={a.key: [creds(e) for e in a.extensions] for a in center.agencies},
        extensions={ext: creds(ext) for ext in center.extensions()},
    )
    factory = PhoneFactory(sip_stack, tmp_path, directory)
    yield factory
    factory.close_all()


def test_given_no_server_ever_when_citizen_calls_then_operator_and_agency_are_reached(
        fresh: RunningAsterisk, fresh_phones: PhoneFactory) -> None:
    """Fresh center, no siaga server: 112 -> 0 -> operator -> *2 -> fire; they hear each
    other."""
    operator = fresh_phones.operator(1)
    fire = fresh_phones.agency("fire")
    citizen = fresh_phones.citizen()
    call = citizen.call(fresh.center.hotline[0])
    call.wait_confirmed(10)
    call.send_dtmf("0")
    op_call = operator.answer(15)
    op_call.send_dtmf(f"{codes.BLIND_PREFIX}{fresh.center.agency('fire').digit}")
    fire_call = fire.answer(15)
    op_call.wait_disconnected(10)
    heard = fresh_phones.two_way_audio(call, fire_call)
    assert heard.both, heard


def test_given_an_operator_logged_out_when_asterisk_restarts_then_the_desk_is_available(
        fresh: RunningAsterisk, fresh_phones: PhoneFactory) -> None:
    """*45 logs operator 1 out; after an Asterisk restart the desk is back in rotation (a
    restart never leaves the hotline without its operators)."""
    operator = fresh_phones.operator(1)
    operator.call(codes.LOGIN_TOGGLE).wait_disconnected(10)
    ami = fresh.ami()
    iface = f"PJSIP/{operator.user}"
    wait_for(lambda: "paused" in _member_line(ami, iface), 10, "operator 1 logged out")
    # A mark that only the running process holds: gone once a new one has booted.
    ami.action("Setvar", Variable="SIAGA_TEST_MARK", Value="before-restart")
    try:
        ami.command("core restart now")
    except RuntimeError:
        pass  # the answer may be lost with the connection as Asterisk re-executes itself
    wait_for(lambda: _restarted(fresh), 60, "Asterisk to restart")
    line = _member_line(fresh.ami(), iface)
    assert line and "paused" not in line


def _restarted(fresh: RunningAsterisk) -> bool:
    try:
        fresh.wait_booted(5)
        response = fresh.ami().action("Getvar", Variable="SIAGA_TEST_MARK")
    except (OSError, RuntimeError, TimeoutError):
        return False
    return response is not None and response.keys.get("Value", "") == ""


def _member_line(ami, iface: str) -> str:  # noqa: ANN001
    output = ami.command("queue show operators")
    return next((line for line in output.splitlines() if f"({iface})" in line), "")
