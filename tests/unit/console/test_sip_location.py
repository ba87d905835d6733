"""Joining an INVITE's location (HEP copy, by Call-ID) to its call (the dialplan's mark, by
linkedid), in either order, within bounds; packets not from Asterisk are dropped unread."""

from __future__ import annotations

import struct
from pathlib import Path

from dialplans import contract
from dispatcher.console.pidf import SipLocation
from dispatcher.console.sip_location import HepListener, SipLocations

DATA = Path(__file__).parents[2] / "data" / "location"
HERE = SipLocation(-6.2, 106.8, 50.0, "GPS")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_given_the_invite_first_when_the_mark_comes_then_joined_once() -> None:
    """The usual order: the INVITE's copy, then the dialplan's mark."""
    heard: list[tuple[str, SipLocation]] = []
    locs = SipLocations(Clock(), lambda lid, loc: heard.append((lid, loc)))
    locs.captured("cid-1", HERE)
    assert heard == []
    locs.event_received({"Variable": contract.VAR_SIP_CALL_ID, "Value": "cid-1",
                         "Linkedid": "1700000000.7"})
    locs.event_received({"Variable": contract.VAR_SIP_CALL_ID, "Value": "cid-1",
                         "Linkedid": "1700000000.7"})
    assert heard == [("1700000000.7", HERE)]
    assert locs.of_call("1700000000.7") == HERE


def test_given_the_mark_first_when_the_invite_comes_then_joined() -> None:
    """UDP may come after AMI: the mark waits for its INVITE."""
    heard: list[str] = []
    locs = SipLocations(Clock(), lambda lid, _loc: heard.append(lid))
    locs.marked("1700000000.8", "cid-2")
    locs.captured("cid-2", HERE)
    assert heard == ["1700000000.8"]


def test_given_a_flood_of_invites_when_never_marked_then_bounded_and_expired() -> None:
    """INVITEs no call claims are kept a short while and at most ``limit`` of them."""
    clock = Clock()
    locs = SipLocations(clock, limit=10, wait_seconds=60)
    for i in range(1000):
        locs.captured(f"cid-{i}", HERE)
    assert len(locs._captured) == 10
    clock.now += 61
    locs.captured("late", HERE)
    assert list(locs._captured) == ["late"]
    locs.marked("1.1", "cid-5")  # long gone
    assert locs.of_call("1.1") is None


def test_given_another_variable_when_set_then_ignored() -> None:
    """Only the Call-ID mark joins anything."""
    locs = SipLocations(Clock())
    locs.captured("cid-3", HERE)
    locs.event_received({"Variable": "SIAGA_CATEGORY", "Value": "cid-3", "Linkedid": "2.2"})
    assert locs.of_call("2.2") is None


def _hep(auth: bytes, capture_id: int, payload: bytes) -> bytes:
    chunks = [struct.pack("!HHHI", 0, 0x0C, 10, capture_id),
              struct.pack("!HHH", 0, 0x0E, 6 + len(auth)) + auth,
              struct.pack("!HHHB", 0, 0x0B, 7, 1),
              struct.pack("!HHH", 0, 0x0F, 6 + len(payload)) + payload]
    body = b"".join(chunks)
    return b"HEP3" + struct.pack("!H", 6 + len(body)) + body


def test_given_packets_when_received_then_only_asterisks_are_read() -> None:
    """The capture id and the password must match, and the packet come from the loopback."""
    payload = (DATA / "asterisk22-invite-pidf.hep").read_bytes()
    from dispatcher.console.pidf import decode_hep

    invite = decode_hep(payload).payload
    locs = SipLocations(Clock())
    listener = HepListener(locs, "right-password")
    listener.datagramReceived(_hep(b"wrong-password", contract.HEP_CAPTURE_ID, invite),
                              ("127.0.0.1", 5))
    listener.datagramReceived(_hep(b"right-password", 7, invite), ("127.0.0.1", 5))
    listener.datagramReceived(_hep(b"right-password", contract.HEP_CAPTURE_ID, invite),
                              ("10.0.0.9", 5))
    listener.datagramReceived(b"garbage", ("127.0.0.1", 5))
    assert listener.dropped == 4
    locs.marked("9.9", "E8n2y8bs7Fj33.1fWrpBJN7Lv.I17Mgl")
    assert locs.of_call("9.9") is None
    listener.datagramReceived(_hep(b"right-password", contract.HEP_CAPTURE_ID, invite),
                              ("127.0.0.1", 5))
    assert locs.of_call("9.9") == SipLocation(-6.2088, 106.8456, None, "GPS",
                                              locs.of_call("9.9").fix_time)  # type: ignore


def test_given_a_refused_location_when_received_then_counted_and_nothing_joined() -> None:
    """A caller's bad PIDF-LO costs the card a location, nothing more."""
    bad = (b"INVITE sip:112@h SIP/2.0\r\nCall-ID: c9\r\nGeolocation: <cid:l@x>\r\n"
           b"Content-Type: multipart/mixed;boundary=B\r\n\r\n--B\r\nContent-ID: <l@x>\r\n"
           b"Content-Type: application/pidf+xml\r\n\r\n<!DOCTYPE x []><x/>\r\n--B--\r\n")
    locs = SipLocations(Clock())
    listener = HepListener(locs, "pw")
    listener.datagramReceived(_hep(b"pw", contract.HEP_CAPTURE_ID, bad), ("127.0.0.1", 5))
    locs.marked("3.3", "c9")
    assert (listener.refused, locs.of_call("3.3")) == (1, None)
