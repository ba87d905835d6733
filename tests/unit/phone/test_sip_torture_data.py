"""The RFC 4475 torture messages in tests/data/sip are the RFC's list, written out faithfully."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from tests.sipdata import NAMES, RFC4475, SIP_DATA, message

# Messages whose point is their length: larger than the body (clerr), negative (ncl), given
# twice (mcl01), followed by spurious octets (dblreq), or absent (inv2543, RFC 2543 style).
LENGTH_IS_THE_POINT = {"clerr", "ncl", "mcl01", "dblreq", "inv2543"}
# mpart01's Call-ID is a real client's; insuf has none (missing required header fields).
CALL_ID_NOT_NAMED = {"mpart01", "insuf"}


def headers_and_body(raw: bytes) -> tuple[list[bytes], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    return head.split(b"\r\n"), body


def test_given_the_data_directory_when_listed_then_it_holds_exactly_the_rfcs_messages() -> None:
    """One file per message the RFC names, none missing, none extra; 49 in the RFC's five
    groups: valid (13) and invalid (19) syntax, transaction (1) and application (15)
    semantics, backward compatibility (1)."""
    assert sorted(p.stem for p in SIP_DATA.glob("*.sip")) == sorted(NAMES)
    assert len(set(NAMES)) == len(NAMES) == 49
    assert Counter(section for section, _, _ in RFC4475) == {
        "3.1.1": 13, "3.1.2": 19, "3.2": 1, "3.3": 15, "3.4": 1}


@pytest.mark.parametrize("name", NAMES)
def test_given_a_message_when_loaded_then_it_is_one_sip_start_line_and_crlf_lines(
        name: str) -> None:
    """Each message starts with a request or status line; its header lines end in CRLF
    (a bare LF may only be a body's octet, as in mpart01's binary part)."""
    raw = message(name)
    start = raw.split(b"\r\n", 1)[0]
    assert re.match(rb"^(SIP/\d\.\d \d+ |\S+ +\S.* SIP/)", start), start
    head = raw.partition(b"\r\n\r\n")[0]
    assert b"\n" not in head.replace(b"\r\n", b""), "a bare LF survived"


@pytest.mark.parametrize("name", sorted(set(NAMES) - LENGTH_IS_THE_POINT))
def test_given_a_declared_length_when_the_body_is_measured_then_they_agree(name: str) -> None:
    """Where the length is not what the message tests, the body has exactly the declared
    number of octets: a transcription slip (a lost line, a stripped space) would show."""
    lines, body = headers_and_body(message(name))
    declared = [int(m.group(1)) for line in lines
                if (m := re.match(rb"(?i)^(?:content-length|l)\s*:\s*(\d+)\s*$", line))]
    assert declared == [len(body)], (declared, len(body))


@pytest.mark.parametrize("name", sorted(set(NAMES) - CALL_ID_NOT_NAMED))
def test_given_a_message_when_its_call_id_is_read_then_it_carries_the_rfcs_name(
        name: str) -> None:
    """The RFC names each message in its Call-ID (``Call-ID: wsinv.ndaksdj@...``): each file
    holds the message its name says."""
    lines, _ = headers_and_body(message(name))
    call_ids = [m.group(1) for line in lines
                if (m := re.match(rb"(?i)^(?:call-id|i)\s*:\s*(\S+)", line))]
    assert call_ids and all(c.startswith(name.encode() + b".") for c in call_ids), call_ids
