"""The live model of Asterisk: channels, bridges, queues (callers and operators), endpoints.

Sans-IO: :meth:`LiveModel.handle` is fed AMI events (a :class:`~pbx.ami.protocol.Message` or
a plain ``{"Event": ..., ...}`` mapping) and :meth:`LiveModel.resync` rebuilds everything from
the answers to CoreShowChannels, BridgeList (+BridgeInfo), QueueStatus and
PJSIPShowEndpoints. :meth:`LiveModel.snapshot` gives a plain, comparable dict, so "the model
built from live events" and "the model rebuilt from Asterisk's lists" can be checked equal.

Every channel event of Asterisk 22 carries the channel's full snapshot (state, caller ID,
connected line, context/exten/priority, linkedid); the model takes it from whichever event
brings it, so it needs no handler per event for those fields. Handlers for the events that
create, destroy or move things are found through a table, by event name.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict
from typing import Any

from pbx.ami.entities import (
    CONTACT_PRESENT,
    Bridge,
    Channel,
    Endpoint,
    Fields,
    Queue,
    QueueCaller,
    QueueMember,
    contact_uris,
    device_state_name,
    fields_of,
    flag,
    uniqueid_order,
)

__all__ = [
    "Bridge",
    "Channel",
    "Endpoint",
    "LiveModel",
    "Queue",
    "QueueCaller",
    "QueueMember",
    "device_state_name",
]

class LiveModel:
    """Channels, bridges, queues and endpoints, kept current from AMI events.

    ``clock`` returns the current time in seconds (``reactor.seconds``); it stamps queue
    callers' wait start.
    """

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.channels: dict[str, Channel] = {}
        self.bridges: dict[str, Bridge] = {}
        self.queues: dict[str, Queue] = {}
        self.endpoints: dict[str, Endpoint] = {}
        self.device_states: dict[str, str] = {}
        self._handlers: dict[str, Callable[[Fields], None]] = {
            name: getattr(self, method) for name, method in self.HANDLERS.items()
        }

    # Event name -> method. Events not listed only refresh channel snapshots.
    HANDLERS: dict[str, str] = {
        "Newchannel": "_on_newchannel",
        "Hangup": "_on_hangup",
        "Rename": "_on_rename",
        "BridgeCreate": "_on_bridge_create",
        "BridgeDestroy": "_on_bridge_destroy",
        "BridgeEnter": "_on_bridge_enter",
        "BridgeLeave": "_on_bridge_leave",
        "QueueCallerJoin": "_on_queue_caller_join",
        "QueueCallerLeave": "_on_queue_caller_leave",
        "QueueMemberAdded": "_on_queue_member",
        "QueueMemberStatus": "_on_queue_member",
        "QueueMemberPause": "_on_queue_member",
        "QueueMemberPenalty": "_on_queue_member",
        "QueueMemberRinginuse": "_on_queue_member",
        "QueueMemberRemoved": "_on_queue_member_removed",
        "AgentConnect": "_on_agent_connect",
        "AgentComplete": "_on_agent_complete",
        "DeviceStateChange": "_on_device_state",
        "ContactStatus": "_on_contact_status",
        "PeerStatus": "_on_peer_status",
    }

    # -- live events ----------------------------------------------------------------------

    def handle(self, event: Any) -> None:
        """Apply one AMI event (Message or mapping)."""
        f = fields_of(event)
        handler = self._handlers.get(f.get("Event", ""))
        if handler is not None:
            handler(f)
        elif "ChannelStateDesc" in f:
            channel = self.channels.get(f.get("Uniqueid", ""))
            if channel is not None:
                channel.update(f)
            if "DestChannelStateDesc" in f:
                dest = self.channels.get(f.get("DestUniqueid", ""))
                if dest is not None:
                    dest.update(f, "Dest")

    def _refresh(self, f: Fields) -> Channel | None:
        channel = self.channels.get(f.get("Uniqueid", ""))
        if channel is not None:
            channel.update(f)
        return channel

    def _on_newchannel(self, f: Fields) -> None:
        uniqueid = f["Uniqueid"]
        channel = self.channels.get(uniqueid) or Channel(uniqueid)
        channel.update(f)
        self.channels[uniqueid] = channel

    def _on_hangup(self, f: Fields) -> None:
        uniqueid = f.get("Uniqueid", "")
        channel = self.channels.pop(uniqueid, None)
        if channel is not None and channel.bridge is not None:
            bridge = self.bridges.get(channel.bridge)
            if bridge is not None:
                bridge.members.discard(uniqueid)
        for queue in self.queues.values():
            if uniqueid in queue.callers:
                self._remove_caller(queue, uniqueid)

    def _on_rename(self, f: Fields) -> None:
        channel = self.channels.get(f.get("Uniqueid", ""))
        if channel is not None:
            channel.name = f.get("Newname", channel.name)

    def _bridge(self, f: Fields) -> Bridge:
        uniqueid = f["BridgeUniqueid"]
        bridge = self.bridges.get(uniqueid)
        if bridge is None:
            bridge = self.bridges[uniqueid] = Bridge(uniqueid)
        bridge.update(f)
        return bridge

    def _on_bridge_create(self, f: Fields) -> None:
        self._bridge(f)

    def _on_bridge_destroy(self, f: Fields) -> None:
        bridge = self.bridges.pop(f.get("BridgeUniqueid", ""), None)
        if bridge is None:
            return
        for uniqueid in bridge.members:
            channel = self.channels.get(uniqueid)
            if channel is not None and channel.bridge == bridge.uniqueid:
                channel.bridge = None

    def _on_bridge_enter(self, f: Fields) -> None:
        bridge = self._bridge(f)
        channel = self._refresh(f)
        if channel is not None:
            bridge.members.add(channel.uniqueid)
            channel.bridge = bridge.uniqueid

    def _on_bridge_leave(self, f: Fields) -> None:
        bridge = self._bridge(f)
        uniqueid = f.get("Uniqueid", "")
        bridge.members.discard(uniqueid)
        channel = self._refresh(f)
        if channel is not None and channel.bridge == bridge.uniqueid:
            channel.bridge = None

    def _queue(self, name: str) -> Queue:
        queue = self.queues.get(name)
        if queue is None:
            queue = self.queues[name] = Queue(name)
        return queue

    def _on_queue_caller_join(self, f: Fields) -> None:
        self._refresh(f)
        queue = self._queue(f["Queue"])
        position = int(f.get("Position") or len(queue.callers) + 1)
        # A caller with a higher priority joins ahead: those at or behind its place move back.
        for caller in queue.callers.values():
            if caller.position >= position:
                caller.position += 1
        uniqueid = f["Uniqueid"]
        queue.callers[uniqueid] = QueueCaller(uniqueid, f.get("Channel", ""), position,
                                              self.clock())

    def _on_queue_caller_leave(self, f: Fields) -> None:
        self._refresh(f)
        queue = self.queues.get(f.get("Queue", ""))
        if queue is not None:
            self._remove_caller(queue, f.get("Uniqueid", ""))

    @staticmethod
    def _remove_caller(queue: Queue, uniqueid: str) -> None:
        caller = queue.callers.pop(uniqueid, None)
        if caller is None:
            return
        # Asterisk renumbers the callers behind the one who left.
        for other in queue.callers.values():
            if other.position > caller.position:
                other.position -= 1

    def _on_queue_member(self, f: Fields) -> None:
        queue = self._queue(f["Queue"])
        interface = f.get("Interface") or f.get("Location", "")
        member = queue.members.get(interface)
        if member is None:
            member = queue.members[interface] = QueueMember(interface)
        self._update_member(member, f)

    @staticmethod
    def _update_member(member: QueueMember, f: Fields) -> None:
        get = f.get
        member.name = get("MemberName") or get("Name") or member.name
        member.state_interface = get("StateInterface", member.state_interface)
        if "Status" in f:
            member.status = device_state_name(f["Status"])
        if "Paused" in f:
            member.paused = flag(f["Paused"])
        member.paused_reason = get("PausedReason", member.paused_reason)
        if "InCall" in f:
            member.in_call = flag(f["InCall"])
        member.membership = get("Membership", member.membership)
        member.penalty = get("Penalty", member.penalty)
        if (get("CallsTaken") or "").isdigit():
            member.calls_taken = int(f["CallsTaken"])

    def _agent_event(self, f: Fields, in_call: bool) -> None:
        # Asterisk flips a member's InCall without a QueueMemberStatus event; the agent
        # events of the call tell it.
        self._refresh(f)
        if "DestChannelStateDesc" in f:
            dest = self.channels.get(f.get("DestUniqueid", ""))
            if dest is not None:
                dest.update(f, "Dest")
        queue = self.queues.get(f.get("Queue", ""))
        member = queue.members.get(f.get("Interface", "")) if queue is not None else None
        if member is not None:
            member.in_call = in_call

    def _on_agent_connect(self, f: Fields) -> None:
        self._agent_event(f, True)

    def _on_agent_complete(self, f: Fields) -> None:
        self._agent_event(f, False)

    def _on_queue_member_removed(self, f: Fields) -> None:
        queue = self.queues.get(f.get("Queue", ""))
        if queue is not None:
            queue.members.pop(f.get("Interface") or f.get("Location", ""), None)

    def _endpoint(self, name: str) -> Endpoint:
        endpoint = self.endpoints.get(name)
        if endpoint is None:
            endpoint = self.endpoints[name] = Endpoint(name)
        return endpoint

    def _on_device_state(self, f: Fields) -> None:
        device = f.get("Device", "")
        state = device_state_name(f.get("State", ""))
        self.device_states[device] = state
        if device.startswith("PJSIP/"):
            self._endpoint(device[6:]).device_state = state

    def _on_contact_status(self, f: Fields) -> None:
        name = f.get("EndpointName") or f.get("AOR", "")
        if not name:
            return
        endpoint = self._endpoint(name)
        uri = f.get("URI", "")
        if f.get("ContactStatus") in CONTACT_PRESENT:
            endpoint.contacts.add(uri)
        else:
            endpoint.contacts.discard(uri)

    def _on_peer_status(self, f: Fields) -> None:
        peer = f.get("Peer", "")
        if peer.startswith("PJSIP/"):
            status = f.get("PeerStatus", "")
            reachable = {"Reachable": True, "Unreachable": False}.get(status)
            self._endpoint(peer[6:]).reachable = reachable

    # -- rebuilding from lists ----------------------------------------------------------

    def resync(
        self,
        channels: Iterable[Any],
        bridges: Iterable[Any] = (),
        bridge_members: Mapping[str, Iterable[Any]] | None = None,
        queues: Iterable[Any] = (),
        endpoints: Iterable[Any] = (),
        device_states: Iterable[Any] = (),
    ) -> None:
        """Replace the whole model with Asterisk's lists.

        ``channels``: CoreShowChannel events; ``bridges``: BridgeListItem events;
        ``bridge_members``: bridge id -> its BridgeInfoChannel events; ``queues``: the
        QueueParams, QueueMember and QueueEntry events of QueueStatus; ``endpoints``:
        EndpointList events of PJSIPShowEndpoints; ``device_states``: the DeviceStateChange
        events of DeviceStateList (an AMI user without the ``system`` class may not list
        endpoints, but may list device states: ``PJSIP/<name>`` devices then give the
        endpoints). Queue callers' wait start is now minus their reported wait.
        """
        now = self.clock()
        self.channels = {}
        self.bridges = {}
        self.queues = {}
        self.device_states = {}
        old_endpoints, self.endpoints = self.endpoints, {}
        for item in channels:
            f = fields_of(item)
            channel = Channel(f["Uniqueid"])
            channel.update(f)
            channel.bridge = f.get("BridgeId") or None
            self.channels[channel.uniqueid] = channel
        for item in bridges:
            f = fields_of(item)
            bridge = self.bridges[f["BridgeUniqueid"]] = Bridge(f["BridgeUniqueid"])
            bridge.update(f)
        for channel in self.channels.values():
            if channel.bridge is not None:
                bridge = self.bridges.get(channel.bridge)
                if bridge is None:
                    bridge = self.bridges[channel.bridge] = Bridge(channel.bridge)
                bridge.members.add(channel.uniqueid)
        for bridge_id, members in (bridge_members or {}).items():
            bridge = self.bridges.get(bridge_id)
            if bridge is None:
                continue  # destroyed between the two lists
            for item in members:
                uniqueid = fields_of(item).get("Uniqueid", "")
                channel = self.channels.get(uniqueid)
                if channel is not None:
                    bridge.members.add(uniqueid)
                    channel.bridge = bridge_id
        for item in queues:
            f = fields_of(item)
            event = f.get("Event")
            if event == "QueueParams":
                self._queue(f["Queue"]).strategy = f.get("Strategy", "")
            elif event == "QueueMember":
                self._on_queue_member(f)
            elif event == "QueueEntry":
                wait = f.get("Wait", "0")
                queue = self._queue(f["Queue"])
                queue.callers[f["Uniqueid"]] = QueueCaller(
                    f["Uniqueid"], f.get("Channel", ""), int(f.get("Position") or 0),
                    now - (int(wait) if wait.isdigit() else 0),
                )
        for item in endpoints:
            f = fields_of(item)
            name = f.get("ObjectName", "")
            if not name:
                continue
            endpoint = Endpoint(name, device_state_name(f.get("DeviceState", "")))
            endpoint.contacts = contact_uris(f.get("Contacts", ""))
            previous = old_endpoints.get(name)
            if previous is not None:
                endpoint.reachable = previous.reachable
            self.endpoints[name] = endpoint
        for item in device_states:
            f = fields_of(item)
            device = f.get("Device", "")
            if device.startswith("PJSIP/") and device[6:] not in self.endpoints:
                previous = old_endpoints.get(device[6:])
                if previous is not None:
                    # DeviceStateList says nothing of contacts: keep what events told.
                    endpoint = self._endpoint(device[6:])
                    endpoint.contacts = set(previous.contacts)
                    endpoint.reachable = previous.reachable
            self._on_device_state(f)

    # -- reading ------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """A plain dict of what the model holds, for comparison and for display.

        Times (queue wait starts) and counters (calls taken) are left out: they cannot be
        equal between a model built live and one rebuilt later.
        """
        channels = {
            uid: {k: v for k, v in asdict(c).items() if k != "uniqueid"}
            for uid, c in sorted(self.channels.items())
        }
        bridges = {
            bid: {"type": b.bridge_type, "name": b.name, "members": sorted(b.members)}
            for bid, b in sorted(self.bridges.items())
        }
        queues = {
            name: {
                "callers": sorted(
                    (c.position, c.uniqueid, c.channel) for c in q.callers.values()
                ),
                "members": {
                    iface: {
                        "name": m.name, "state_interface": m.state_interface,
                        "status": m.status, "paused": m.paused,
                        "paused_reason": m.paused_reason, "in_call": m.in_call,
                        "membership": m.membership, "penalty": m.penalty,
                    }
                    for iface, m in sorted(q.members.items())
                },
            }
            for name, q in sorted(self.queues.items())
        }
        endpoints = {
            name: {"device_state": e.device_state, "contacts": sorted(e.contacts)}
            for name, e in sorted(self.endpoints.items())
        }
        return {"channels": channels, "bridges": bridges, "queues": queues,
                "endpoints": endpoints}

    def channels_of(self, linkedid: str) -> list[Channel]:
        """The channels of one call (sharing a linkedid), oldest first."""
        return sorted((c for c in self.channels.values() if c.linkedid == linkedid),
                      key=lambda c: uniqueid_order(c.uniqueid))
