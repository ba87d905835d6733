"""The location a caller's INVITE carried, joined to the call and kept in the call log.

Two halves meet here, in either order: Asterisk's copy of the INVITE (HEP, on a loopback UDP
port: ``(Call-ID, location)``, read by :mod:`dispatcher.console.pidf`) and the hotline
dialplan's mark on the citizen's channel (AMI ``VarSet`` of ``SIAGA_SIP_CALL_ID``: the
Call-ID and the call's linkedid). :class:`SipLocations` keeps each half a short while for its
partner (bounded: a flood of INVITEs cannot grow it) and hands a joined ``(linkedid,
location)`` on, to the call log and the operator's card. A packet from anywhere but the
loopback, or without Asterisk's capture id and password, is dropped unread.
"""

from __future__ import annotations

import hmac
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger

from dialplans import contract
from dispatcher.console.pidf import LocationRefused, SipLocation, decode_hep, invite_location

__all__ = ["HepListener", "SipLocations"]

log = Logger(namespace="dispatcher.console.sip_location")

OnLocation = Callable[[str, SipLocation], object]


class _Bounded(OrderedDict[str, Any]):
    """Oldest first; at most ``limit`` entries, each for at most ``ttl`` seconds."""

    def __init__(self, limit: int, ttl: float) -> None:
        super().__init__()
        self.limit, self.ttl = limit, ttl

    def put(self, key: str, value: Any, now: float) -> None:  # noqa: ANN401
        self.pop(key, None)
        self[key] = (now, value)
        self.expire(now)

    def expire(self, now: float) -> None:
        while self and (len(self) > self.limit
                        or next(iter(self.values()))[0] < now - self.ttl):
            self.popitem(last=False)


class SipLocations:
    """Joins INVITE locations (by Call-ID) to calls (by linkedid); remembers each call's.

    ``on_location(linkedid, location)`` hears each joined location once. ``clock()`` gives
    the time in seconds.
    """

    def __init__(self, clock: Callable[[], float], on_location: OnLocation | None = None,
                 limit: int = 2000, wait_seconds: float = 120.0) -> None:
        self.clock = clock
        self.on_location = on_location
        self._captured = _Bounded(limit, wait_seconds)  # Call-ID -> SipLocation
        self._marked = _Bounded(limit, wait_seconds)  # Call-ID -> linkedid
        self._calls = _Bounded(limit, 6 * 3600.0)  # linkedid -> SipLocation (the card's)

    def captured(self, call_id: str, location: SipLocation) -> None:
        """Asterisk's copy of an INVITE with this location arrived."""
        linkedid = self._marked.pop(call_id, (0.0, None))[1]
        if linkedid is None:
            self._captured.put(call_id, location, self.clock())
            return
        self._joined(linkedid, location)

    def marked(self, linkedid: str, call_id: str) -> None:
        """The dialplan marked call ``linkedid`` as the INVITE ``call_id`` (which carried a
        Geolocation header)."""
        if not linkedid or not call_id:
            return
        location = self._captured.pop(call_id, (0.0, None))[1]
        if location is None:
            self._marked.put(call_id, linkedid, self.clock())
            return
        self._joined(linkedid, location)

    def of_call(self, linkedid: str) -> SipLocation | None:
        """The location call ``linkedid``'s INVITE carried, if it is still remembered."""
        found = self._calls.get(linkedid)
        return found[1] if found is not None else None

    def _joined(self, linkedid: str, location: SipLocation) -> None:
        if linkedid in self._calls:
            return  # a re-sent INVITE, or a second mark: the first location stays
        self._calls.put(linkedid, location, self.clock())
        if self.on_location is not None:
            self.on_location(linkedid, location)

    def event_received(self, fields: dict[str, str]) -> None:
        """An AMI ``VarSet``: the dialplan's Call-ID mark on a citizen's channel."""
        if fields.get("Variable") == contract.VAR_SIP_CALL_ID:
            self.marked(fields.get("Linkedid", ""), fields.get("Value", ""))


class HepListener(DatagramProtocol):
    """Asterisk's copies of SIP messages (HEP v3 over UDP on the loopback)."""

    def __init__(self, locations: SipLocations, password: str) -> None:
        self.locations = locations
        self.password = password.encode()
        self.refused = 0  # INVITEs whose location was not acceptable (a metric)
        self.dropped = 0  # packets not from Asterisk

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:  # noqa: N802, ANN401
        """Read one packet: Asterisk's (loopback, capture id, password) or dropped."""
        if addr[0] != "127.0.0.1":
            self.dropped += 1
            return
        try:
            packet = decode_hep(datagram)
        except LocationRefused:
            self.dropped += 1
            return
        if packet.capture_id != contract.HEP_CAPTURE_ID or not hmac.compare_digest(
                packet.auth_key, self.password):
            self.dropped += 1
            return
        if packet.protocol not in (None, 1):
            return
        try:
            found = invite_location(packet.payload)
        except LocationRefused as exc:
            self.refused += 1
            log.warn("a caller's INVITE location was refused: {reason}", reason=str(exc))
            return
        if found is not None:
            self.locations.captured(*found)
