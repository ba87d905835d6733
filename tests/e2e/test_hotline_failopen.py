"""Fail-open: a center whose siaga server never started, or was killed, still carries the
hotline.

A private Asterisk is started fresh (empty Asterisk database, nobody on AMI, no siaga
process at all): a hotline call reaches an operator, the operator's feature code reaches
an agency, and audio flows. Then Asterisk restarts while an operator is logged out: the
desk comes back available (static members), so a restart can never leave the queue empty.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from dispatcher.credentials import ensure_credentials
from dispatcher.hotline import codes
from pbx.phone.phone import Phone
from pbx.provision import AsteriskInstall
from tests.harness import (
    RunningAsterisk,
    SiagaProcess,
    start_asterisk,
    wait_for,
)
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




def test_given_siaga_killed_mid_call_when_operator_transfers_then_agency_and_new_calls_work(
        center_server: SiagaProcess, sip_stack, tmp_path: Path) -> None:  # noqa: ANN001
    """`siaga up` is SIGKILLed while a citizen talks to an operator: Asterisk carries on; the
    operator's *2 still reaches the fire brigade (two-way audio); a new hotline call still
    reaches an operator."""
    center = center_server.center
    creds = ensure_credentials(center)
    sip = f"{center.sip.host}:{center.sip.port}"
    phones = PhoneFactory(sip_stack, tmp_path)
    try:
        def staff(ext: str):  # noqa: ANN202
            return phones.extension(ext, creds.password(ext), sip)

        operator = staff(center.operators[0].extension)
        fire = staff(center.agency("fire").extensions[0])
        citizen = phones._keep(Phone(sip_stack, "citizen-killed", server=sip))
        call = citizen.call(center.hotline[0])
        call.wait_confirmed(10)
        call.send_dtmf("0")
        op_call = operator.answer(20)

        asterisk_pid = center_server.asterisk_pid()
        center_server.signal(signal.SIGKILL)
        center_server.wait_exit(10)
        assert center_server.asterisk_pid() == asterisk_pid  # Asterisk lives on, alone

        op_call.send_dtmf(f"{codes.BLIND_PREFIX}{center.agency('fire').digit}")
        fire_call = fire.answer(15)
        op_call.wait_disconnected(10)
        heard = phones.two_way_audio(call, fire_call)
        assert heard.both, heard
        call.hangup()
        fire_call.wait_disconnected(10)

        second = phones._keep(Phone(sip_stack, "citizen-after", server=sip))
        again = second.call(center.hotline[0])
        again.wait_confirmed(10)
        again.send_dtmf("0")
        answered = operator.answer(20)
        heard = phones.two_way_audio(again, answered)
        assert heard.both, heard
    finally:
        phones.close_all()
