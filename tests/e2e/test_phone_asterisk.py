"""Phones through the example city's Asterisk: registration, two-way audio, DTMF, transfers.

Each scenario is checked the way a person would: by what the phones hear (a 697 Hz tone one
way, 1209 Hz the other) and, for DTMF, by what Asterisk itself reports on AMI.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from pbx.phone import tones
from pbx.phone.phone import Call, CallState, Phone
from pbx.phone.stack import PhoneError

if TYPE_CHECKING:
    from tests.harness import RunningAsterisk
    from tests.phones import Directory, PhoneFactory

pytestmark = pytest.mark.asterisk

CITIZEN_TONE = tones.CALLER_TONE_HZ
OTHER_TONE = tones.CALLEE_TONE_HZ


def hotline_call(phones: PhoneFactory, citizen: Phone, operator: Phone) -> tuple[Call, Call]:
    """The citizen dials the hotline and the operator answers the queue call."""
    call = citizen.call(phones.directory.hotline)
    call.wait_confirmed(10)  # the hotline answers before queueing
    taken = operator.wait_incoming(20)  # the queue may try an absent operator first
    taken.answer()
    taken.wait_confirmed()
    return call, taken


def test_given_an_extension_when_it_registers_then_asterisk_holds_its_contact(
    phones: PhoneFactory, asterisk: RunningAsterisk
) -> None:
    """Operator 1 registers with its generated password; Asterisk lists the contact."""
    operator = phones.operator(1)
    assert operator.registered
    contacts = asterisk.ami().command(f"pjsip show contacts like {operator.user}")
    assert f"{operator.user}/sip:{operator.user}@127.0.0.1:{operator.port}" in contacts


def test_given_a_wrong_password_when_registering_then_it_is_refused(
    phones: PhoneFactory, phone_directory: Directory
) -> None:
    """A bad password is a clear registration error, not a hang."""
    with pytest.raises(PhoneError, match="registration refused: 401"):
        phones.extension(phone_directory.operator(2).user, "not-the-password")


def test_given_two_extensions_when_one_calls_the_other_then_both_hear_each_other(
    phones: PhoneFactory,
) -> None:
    """Operator to police through Asterisk: 697 Hz one way, 1209 Hz the other."""
    operator, police = phones.operator(1), phones.agency("police")
    out = operator.call(police.user)
    inc = police.wait_incoming(5)
    assert operator.user in inc.remote_uri
    inc.answer()
    out.wait_confirmed()
    inc.wait_confirmed()
    heard = phones.two_way_audio(out, inc)
    assert heard.both, heard
    assert heard.a_heard == pytest.approx(OTHER_TONE, abs=15)
    assert heard.b_heard == pytest.approx(CITIZEN_TONE, abs=15)


def test_given_a_citizen_when_calling_the_hotline_then_an_operator_talks_with_them(
    phones: PhoneFactory,
) -> None:
    """Anonymous citizen -> 112 -> queue -> operator: two-way audio between them."""
    citizen, operator = phones.citizen(), phones.operator(1)
    call, taken = hotline_call(phones, citizen, operator)
    heard = phones.two_way_audio(call, taken)
    assert heard.both, heard


def test_given_a_hotline_call_when_the_citizen_presses_keys_then_asterisk_sees_the_dtmf(
    phones: PhoneFactory, asterisk: RunningAsterisk
) -> None:
    """RFC 4733 digits from the phone arrive as DTMFBegin/DTMFEnd on the citizen's channel."""
    ami = asterisk.ami()
    citizen = phones.citizen()
    call = citizen.call(phones.directory.hotline)
    call.wait_confirmed(10)
    newchannel = ami.wait_event("Newchannel", 5, Exten=phones.directory.hotline)
    channel = newchannel["Channel"]
    call.send_dtmf("19#")
    for digit in "19#":
        ami.wait_event("DTMFEnd", 5, Channel=channel, Digit=digit, Direction="Received")
    begins = [e["Digit"] for e in ami.matching("DTMFBegin", Channel=channel)]
    ends = [e["Digit"] for e in ami.matching("DTMFEnd", Channel=channel)]
    assert begins == ends == ["1", "9", "#"]
    durations = [int(e["DurationMs"]) for e in ami.matching("DTMFEnd", Channel=channel)]
    assert all(d > 0 for d in durations)


def test_given_a_hotline_call_when_the_operator_blind_transfers_then_citizen_and_agency_talk(
    phones: PhoneFactory,
) -> None:
    """Operator REFERs the citizen to police: citizen and police hear each other, operator out."""
    citizen, operator, police = phones.citizen(), phones.operator(1), phones.agency("police")
    call, taken = hotline_call(phones, citizen, operator)
    taken.transfer_blind(police.user)
    ringing = police.wait_incoming(10)
    ringing.answer()
    ringing.wait_confirmed()
    taken.wait_disconnected(10)  # Asterisk hangs the operator up once it took the transfer
    assert call.state == CallState.CONFIRMED  # the citizen never left their call
    heard = phones.two_way_audio(call, ringing)
    assert heard.both, heard


def test_given_a_hotline_call_when_the_operator_transfers_attended_then_citizen_and_agency_talk(
    phones: PhoneFactory,
) -> None:
    """Operator holds the citizen, consults fire, then joins them (REFER with Replaces)."""
    citizen, operator, fire = phones.citizen(), phones.operator(1), phones.agency("fire")
    call, taken = hotline_call(phones, citizen, operator)
    taken.hold()
    consult = operator.call(fire.user)
    at_fire = fire.wait_incoming(10)
    at_fire.answer()
    consult.wait_confirmed()
    at_fire.wait_confirmed()
    # The operator and fire talk first: the consultation is a real call.
    assert phones.two_way_audio(consult, at_fire).both
    taken.transfer_attended(consult)
    taken.wait_disconnected(10)
    consult.wait_disconnected(10)
    assert call.state == CallState.CONFIRMED
    assert at_fire.state == CallState.CONFIRMED or at_fire.replaced_by is not None
    fire_leg = at_fire.replaced_by or at_fire
    heard = phones.two_way_audio(call, fire_leg)
    assert heard.both, heard
