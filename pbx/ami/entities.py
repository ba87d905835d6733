"""What the live model holds: channels, bridges, queues (callers and operators), endpoints.

Plain data classes and the small parsers of AMI field values they need;
:class:`pbx.ami.model.LiveModel` keeps them current from events.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Bridge",
    "Channel",
    "Endpoint",
    "Fields",
    "Queue",
    "QueueCaller",
    "QueueMember",
    "device_state_name",
]

Fields = Mapping[str, str]

# Asterisk's device states: the numbers queue members report, the words EndpointList uses,
# and the constants DeviceStateChange uses, all mapped to the constants.
DEVICE_STATES = (
    "UNKNOWN", "NOT_INUSE", "INUSE", "BUSY", "INVALID", "UNAVAILABLE", "RINGING",
    "RINGINUSE", "ONHOLD",
)
DEVICE_STATE_WORDS = {
    "unknown": "UNKNOWN", "not in use": "NOT_INUSE", "in use": "INUSE", "busy": "BUSY",
    "invalid": "INVALID", "unavailable": "UNAVAILABLE", "ringing": "RINGING",
    "ring+inuse": "RINGINUSE", "on hold": "ONHOLD",
}
# ContactStatus values under which a contact still exists.
CONTACT_PRESENT = {"Created", "Reachable", "Unreachable", "NonQualified", "Updated", "Unknown"}


def device_state_name(value: str) -> str:
    """Normalize a device state given as a number, a word or a constant to the constant."""
    text = value.strip()
    if text.isdigit():
        number = int(text)
        return DEVICE_STATES[number] if number < len(DEVICE_STATES) else "UNKNOWN"
    upper = text.upper().replace(" ", "_")
    if upper in DEVICE_STATES:
        return upper
    return DEVICE_STATE_WORDS.get(text.lower(), "UNKNOWN")


def fields_of(event: Any) -> Fields:
    # Accept a parsed Message (its .fields) or any mapping of header -> value.
    return getattr(event, "fields", event)


def flag(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes")


@dataclass
class Channel:
    """One Asterisk channel, as its latest snapshot showed it."""

    uniqueid: str
    name: str = ""
    linkedid: str = ""
    state: str = ""
    caller_num: str = ""
    caller_name: str = ""
    connected_num: str = ""
    connected_name: str = ""
    context: str = ""
    exten: str = ""
    priority: str = ""
    bridge: str | None = None

    def update(self, f: Fields, prefix: str = "") -> None:
        """Take the channel snapshot fields of an event (``Dest``-prefixed ones for the
        second channel of two-channel events)."""
        get = f.get
        self.name = get(prefix + "Channel", self.name)
        self.linkedid = get(prefix + "Linkedid", self.linkedid)
        self.state = get(prefix + "ChannelStateDesc", self.state)
        self.caller_num = get(prefix + "CallerIDNum", self.caller_num)
        self.caller_name = get(prefix + "CallerIDName", self.caller_name)
        self.connected_num = get(prefix + "ConnectedLineNum", self.connected_num)
        self.connected_name = get(prefix + "ConnectedLineName", self.connected_name)
        self.context = get(prefix + "Context", self.context)
        self.exten = get(prefix + "Exten", self.exten)
        self.priority = get(prefix + "Priority", self.priority)


@dataclass
class Bridge:
    """A bridge and the channels (by uniqueid) in it."""

    uniqueid: str
    bridge_type: str = ""
    technology: str = ""
    name: str = ""
    creator: str = ""
    members: set[str] = field(default_factory=set)

    def update(self, f: Fields) -> None:
        """Take the bridge snapshot fields of an event."""
        self.bridge_type = f.get("BridgeType", self.bridge_type)
        self.technology = f.get("BridgeTechnology", self.technology)
        self.name = f.get("BridgeName", self.name)
        self.creator = f.get("BridgeCreator", self.creator)


@dataclass
class QueueCaller:
    """A caller waiting in a queue."""

    uniqueid: str
    channel: str
    position: int
    wait_start: float


@dataclass
class QueueMember:
    """An operator's interface in a queue."""

    interface: str
    name: str = ""
    state_interface: str = ""
    status: str = "UNKNOWN"
    paused: bool = False
    paused_reason: str = ""
    in_call: bool = False
    membership: str = ""
    penalty: str = "0"
    calls_taken: int = 0


@dataclass
class Queue:
    """A queue: callers by uniqueid, members by interface."""

    name: str
    strategy: str = ""
    callers: dict[str, QueueCaller] = field(default_factory=dict)
    members: dict[str, QueueMember] = field(default_factory=dict)


@dataclass
class Endpoint:
    """A PJSIP endpoint: device state, registered contact URIs, reachability."""

    name: str
    device_state: str = "UNKNOWN"
    contacts: set[str] = field(default_factory=set)
    reachable: bool | None = None


def contact_uris(text: str) -> set[str]:
    """EndpointList's ``Contacts: aor/uri,aor/uri,`` as a set of URIs."""
    uris = set()
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        _, slash, uri = item.partition("/")
        uris.add(uri if slash else item)
    return uris


def uniqueid_order(uniqueid: str) -> tuple[int, ...]:
    """Uniqueids are ``<epoch>.<sequence>``, behind ``<systemname>-`` on a topology's node:
    order them numerically, not as text."""
    number = uniqueid.rpartition("-")[2]
    return tuple(int(part) if part.isdigit() else 0 for part in number.split("."))
