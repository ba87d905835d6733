"""The generated configuration in a real Asterisk: everything configured exists, nothing more."""

from __future__ import annotations

import re

import pytest

from pbx.phone.events import CallState
from tests.harness import RunningAsterisk, wait_for

pytestmark = pytest.mark.asterisk


def test_given_example_city_when_asterisk_boots_then_no_configuration_error(
        asterisk: RunningAsterisk) -> None:
    """Asterisk loaded every generated file without an ERROR or WARNING in its log."""
    assert asterisk.boot_problems == []


def test_given_example_city_when_asked_over_ami_then_every_endpoint_exists(
        asterisk: RunningAsterisk) -> None:
    """Each configured extension, and the anonymous endpoint, is a PJSIP endpoint."""
    ami = asterisk.ami()
    output = ami.command("pjsip show endpoints")
    # "name" or "name/caller id" (the anonymous endpoint and the trunk have a caller ID).
    endpoints = {found.split("/")[0] for found in re.findall(r"^\s*Endpoint:\s+(\S+)", output,
                                                             re.M)} - {"<Endpoint"}
    expected = set(asterisk.center.extensions()) | {"anonymous"}
    assert expected <= endpoints, expected - endpoints
    assert not {e for e in endpoints if e[0].isdigit()} - expected


def test_given_example_city_when_asked_over_ami_then_queue_has_every_operator(
        asterisk: RunningAsterisk) -> None:
    """The operators' queue exists with one member per operator desk."""
    ami = asterisk.ami()
    output = ami.command("queue show operators")
    assert output.lstrip().startswith("operators has")
    for op in asterisk.center.operators:
        assert f"PJSIP/{op.extension}" in output


def test_given_example_city_when_asked_over_ami_then_every_context_exists(
        asterisk: RunningAsterisk) -> None:
    """Every dialplan context the design relies on is loaded, with the hotline numbers."""
    ami = asterisk.ami()
    contexts = {"public", "hotline", "agency-groups", "operators", "agencies", "buttons",
                "staff-extensions"} | {f"agency-{a.key}" for a in asterisk.center.agencies}
    for context in sorted(contexts):
        output = ami.command(f"dialplan show {context}")
        assert f"Context '{context}' created by 'pbx_config'" in output, context
    public = ami.command("dialplan show public")
    for number in asterisk.center.hotline:
        assert f"'{number}' =>" in public


def test_given_an_operator_softphone_when_it_registers_then_asterisk_sees_its_contact(
        asterisk: RunningAsterisk, phones) -> None:  # noqa: ANN001
    """A pjsua2 phone registers as operator 201 with the generated password."""
    ami = asterisk.ami()
    operator = phones.operator(1)
    assert operator.registered
    ext = asterisk.center.operators[0].extension
    contacts = wait_for(lambda: re.findall(rf"Contact:\s+{ext}/sip:\S+",
                                           ami.command(f"pjsip show aor {ext}")),
                        10, "the operator's contact in Asterisk")
    assert len(contacts) == 1


def test_given_a_wrong_password_when_registering_then_refused(
        asterisk: RunningAsterisk, phones) -> None:  # noqa: ANN001
    """Registration with a made-up password is refused: staff extensions need their secret."""
    from pbx.phone.errors import PhoneError
    from pbx.phone.phone import Phone

    phone = phones._keep(Phone(phones.stack, "202", server=asterisk.sip_address,
                               password="not-the-password"))
    with pytest.raises(PhoneError):
        phone.wait_registered(5)
    assert not phone.registered


def test_given_an_anonymous_caller_when_dialling_a_staff_extension_then_refused(
        asterisk: RunningAsterisk, phones) -> None:  # noqa: ANN001
    """An anonymous caller cannot reach an operator directly: only hotline numbers exist."""
    citizen = phones.citizen()
    call = citizen.call(asterisk.center.operators[0].extension)
    call.wait_disconnected(10)
    assert call.status_code == 404
    # ...and the same caller does reach the hotline (it is answered by the hotline context).
    call = citizen.call(asterisk.center.hotline[0])
    call.wait_state(CallState.CONFIRMED, 10)
    call.hangup()
