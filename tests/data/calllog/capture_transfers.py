"""Record real hotline calls handed to an agency three ways, for the call log's fixtures.

On the e2e harness (real Asterisk 22, example city, pjsua2 phones), with no siaga server:

1. citizen presses 1, operator 201 answers, blind-transfers to police (301 answers);
2. same, but the operator consults police: 301 rings unanswered, the fallback 309 answers,
   the operator completes the transfer;
3. same, but a conference: citizen + operator + police, then the operator leaves.

It saves the AMI events the harness received (minus RTCP, device and contact noise), xz
compressed, and the CEL file Asterisk wrote. Not collected by the suite (no ``test_`` prefix);
run it by hand, from the repository root, when the fixtures need renewing:

    .venv/bin/python -m pytest -q tests/data/calllog/capture_transfers.py
"""

from __future__ import annotations

import glob
import json
import lzma
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from dispatcher.hotline import codes
from tests.e2e.hotline_helpers import (
    answer_as_operator,
    call_hotline,
    reset_queue,
    send_code,
    wait_no_channels,
    wait_two_way_audio,
)
from tests.e2e.test_hotline_fallback import _fallback_phone
from tests.harness import AmiWatch, RunningAsterisk, wait_for

HERE = Path(__file__).resolve().parent
NOISE = {
    "RTCPSent",
    "RTCPReceived",
    "DeviceStateChange",
    "ContactStatus",
    "TestEvent",
    "PeerStatus",
    "Registry",
    "QueueMemberStatus",
}


def _police(asterisk: RunningAsterisk) -> codes.AgencyCodes:
    return next(c for c in codes.agency_codes(asterisk.center.agencies) if c.agency == "police")


@pytest.fixture(scope="module")
def ami(asterisk: RunningAsterisk) -> Iterator[AmiWatch]:
    """A watch over the three calls; at the end their AMI events and CEL file are saved."""
    watch = asterisk.ami()
    wait_no_channels(watch)
    reset_queue(asterisk, watch)
    yield watch
    with watch.lock:
        events = [e for e in watch.events if e.get("Event") not in NOISE]
    with lzma.open(HERE / "asterisk22-transfers.ami.json.xz", "wt") as f:
        json.dump(events, f, sort_keys=True)
    (cel_file,) = glob.glob(str(asterisk.prepared.paths.log) + "/**/Master.csv", recursive=True)
    shutil.copy(cel_file, HERE / "asterisk22-transfers.cel.csv")


def test_blind_transfer(asterisk: RunningAsterisk, ami: AmiWatch, phones) -> None:  # noqa: ANN001
    """Call 1: blind transfer to police."""
    operator, police = phones.operator(1), phones.agency("police")
    citizen, citizen_call = call_hotline(phones, "1")
    answered = answer_as_operator(ami, citizen, citizen_call, operator)
    send_code(answered.operator_call, _police(asterisk).blind)
    police_call = police.answer(15)
    answered.operator_call.wait_disconnected(10)
    wait_two_way_audio(phones, citizen_call, police_call)
    citizen_call.hangup()
    police_call.wait_disconnected(10)
    wait_no_channels(ami)


def test_consult_then_fallback(asterisk: RunningAsterisk, ami: AmiWatch, phones) -> None:  # noqa: ANN001
    """Call 2: consultation, police unanswered, fallback answers, transfer completed."""
    police_agency, fallback = _fallback_phone(asterisk, phones, "police")
    operator, police = phones.operator(1), phones.agency("police")
    citizen, citizen_call = call_hotline(phones, "1")
    answered = answer_as_operator(ami, citizen, citizen_call, operator)
    send_code(answered.operator_call, f"{codes.CONSULT_PREFIX}{police_agency.digit}")
    police.wait_incoming(10)
    fallback_call = fallback.answer(police_agency.ring_seconds + 15)
    send_code(answered.operator_call, codes.CONSULT_COMPLETE)
    answered.operator_call.wait_disconnected(10)
    wait_two_way_audio(phones, citizen_call, fallback_call)
    citizen_call.hangup()
    fallback_call.wait_disconnected(10)
    wait_no_channels(ami)


def test_conference(asterisk: RunningAsterisk, ami: AmiWatch, phones) -> None:  # noqa: ANN001
    """Call 3: conference with police; the operator leaves first."""
    operator, police = phones.operator(1), phones.agency("police")
    citizen, citizen_call = call_hotline(phones, "1")
    answered = answer_as_operator(ami, citizen, citizen_call, operator)
    send_code(answered.operator_call, _police(asterisk).conference)
    police_call = police.answer(15)
    wait_for(lambda: ami.matching("ConfbridgeJoin"), 10, "the conference")
    wait_two_way_audio(phones, citizen_call, police_call)
    answered.operator_call.hangup()
    answered.operator_call.wait_disconnected(10)
    citizen_call.hangup()
    police_call.wait_disconnected(10)
    wait_no_channels(ami)
