"""The live model: built from recorded Asterisk 22 events, rebuilt from recorded lists."""

from __future__ import annotations

import lzma
from pathlib import Path

import pytest

from pbx.ami.model import LiveModel, device_state_name
from pbx.ami.protocol import AMIParser, Message

# Recorded by tests/data/ami/capture.py --calls 12: callers queue for two operators (Local
# channels), get bridged, hang up; CoreShowChannels/BridgeList/BridgeInfo/QueueStatus were
# sent in the middle of the calls and at the end.
CALLS = lzma.decompress(
    (Path(__file__).resolve().parents[2] / "data" / "ami" / "asterisk22-calls.raw.xz").read_bytes()
)


class Clock:
    """A settable time source."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def replay(data: bytes) -> list[tuple[str, LiveModel, LiveModel]]:
    """Feed the recording's events to one live model; at each list's end, rebuild a second
    model from that list alone. Returns (list name, live model copy, rebuilt model)."""
    live = LiveModel(Clock())
    lists: dict[str, list[Message]] = {}
    moments = []
    for m in AMIParser().feed(data):
        if not isinstance(m, Message):
            continue
        if m.kind == "response":
            if m.get("EventList") == "start":
                lists[m.action_id] = []
            continue
        if m.action_id in lists:
            if m.get("EventList") != "Complete":
                lists[m.action_id].append(m)
                continue
            items = lists.pop(m.action_id)
            rebuilt = LiveModel(Clock())
            if m.name == "CoreShowChannelsComplete":
                rebuilt.resync(items)
            elif m.name == "BridgeListComplete":
                rebuilt.resync([], items)
            elif m.name == "QueueStatusComplete":
                rebuilt.resync([], queues=items)
                if not live.queues:
                    live.resync([], queues=items)  # the recording starts with no members known
            else:
                continue
            moments.append((m.name, live.snapshot(), rebuilt.snapshot()))
            continue
        live.handle(m)
    return moments


MOMENTS = replay(CALLS)


def test_given_recorded_calls_then_channels_built_live_equal_every_channel_list() -> None:
    """At each CoreShowChannels in the recording, the channels built from events alone
    (state, caller ID, connected line, place in the dialplan, bridge) equal the list."""
    lists = [(live, rebuilt) for name, live, rebuilt in MOMENTS
             if name == "CoreShowChannelsComplete"]
    assert len(lists) == 3
    assert any(len(live["channels"]) >= 8 for live, _ in lists)
    for live, rebuilt in lists:
        assert live["channels"] == rebuilt["channels"]


def test_given_recorded_calls_then_bridges_built_live_equal_every_bridge_list() -> None:
    """Bridges created and destroyed by events match each BridgeList."""
    lists = [(live, rebuilt) for name, live, rebuilt in MOMENTS if name == "BridgeListComplete"]
    assert lists and any(rebuilt["bridges"] for _, rebuilt in lists)
    for live, rebuilt in lists:
        assert {k: v["type"] for k, v in live["bridges"].items()} == {
            k: v["type"] for k, v in rebuilt["bridges"].items()
        }


def test_given_recorded_calls_then_queue_members_built_live_equal_queue_status() -> None:
    """Queue members' state, pause and in-call flags follow the events."""
    lists = [(live, rebuilt) for name, live, rebuilt in MOMENTS if name == "QueueStatusComplete"]
    assert len(lists) == 2
    # The first list seeded the members (the recording starts before any member event).
    live, rebuilt = lists[1]
    assert any(m["in_call"] for m in rebuilt["queues"]["hotline"]["members"].values())
    assert live["queues"] == rebuilt["queues"]


def test_given_recorded_calls_ended_then_no_channel_or_bridge_is_left() -> None:
    """Once every call of the recording hung up, the live model holds no channel or bridge."""
    live = LiveModel(Clock())
    for m in AMIParser().feed(CALLS):
        if isinstance(m, Message) and m.kind == "event" and m.action_id is None:
            live.handle(m)
    assert live.channels == {} and live.bridges == {}


def event(name: str, **fields: str) -> dict[str, str]:
    """An event as a plain mapping (the model takes those as well as Messages)."""
    return {"Event": name, **fields}


def channel_event(name: str, uniqueid: str, **fields: str) -> dict[str, str]:
    """A channel event with Asterisk 22's channel snapshot fields."""
    base = {
        "Channel": f"PJSIP/201-{uniqueid}", "ChannelState": "4", "ChannelStateDesc": "Ring",
        "CallerIDNum": "08123", "CallerIDName": "Budi", "ConnectedLineNum": "<unknown>",
        "ConnectedLineName": "<unknown>", "Context": "hotline", "Exten": "112",
        "Priority": "1", "Uniqueid": uniqueid, "Linkedid": uniqueid,
    }
    base.update(fields)
    return event(name, **base)


def test_given_queue_callers_when_one_leaves_then_those_behind_move_up() -> None:
    """Positions follow Asterisk: a leaver's followers move up; a priority join pushes back."""
    clock = Clock()
    model = LiveModel(clock)
    for uid, pos in (("1.1", "1"), ("1.2", "2"), ("1.3", "3")):
        model.handle(channel_event("Newchannel", uid))
        clock.now += 5
        model.handle(channel_event("QueueCallerJoin", uid, Queue="operators", Position=pos))
    model.handle(channel_event("QueueCallerLeave", "1.1", Queue="operators", Position="1"))
    callers = model.queues["operators"].callers
    assert {u: c.position for u, c in callers.items()} == {"1.2": 1, "1.3": 2}
    assert callers["1.3"].wait_start == 1015.0
    model.handle(channel_event("Newchannel", "1.4"))
    model.handle(channel_event("QueueCallerJoin", "1.4", Queue="operators", Position="1"))
    assert {u: c.position for u, c in callers.items()} == {"1.4": 1, "1.2": 2, "1.3": 3}
    model.handle(channel_event("Hangup", "1.2"))
    assert {u: c.position for u, c in callers.items()} == {"1.4": 1, "1.3": 2}


def test_given_member_paused_with_reason_then_model_shows_it() -> None:
    """QueueMemberPause carries the pause and its reason; Status numbers become names."""
    model = LiveModel(Clock())
    model.handle(event("QueueMemberAdded", Queue="operators", Interface="PJSIP/201",
                       MemberName="Operator 201", StateInterface="PJSIP/201", Status="1",
                       Paused="0", PausedReason="", InCall="0", Membership="dynamic",
                       Penalty="0"))
    model.handle(event("QueueMemberPause", Queue="operators", Interface="PJSIP/201",
                       MemberName="Operator 201", Status="1", Paused="1",
                       PausedReason="istirahat"))
    member = model.queues["operators"].members["PJSIP/201"]
    assert (member.paused, member.paused_reason, member.status) == (True, "istirahat",
                                                                    "NOT_INUSE")
    model.handle(event("QueueMemberRemoved", Queue="operators", Interface="PJSIP/201"))
    assert model.queues["operators"].members == {}


def test_given_bridge_events_then_members_and_channel_bridge_follow() -> None:
    """BridgeEnter/Leave/Destroy keep bridge members and each channel's bridge in step;
    a hangup removes the channel from its bridge."""
    model = LiveModel(Clock())
    for uid in ("1.1", "1.2"):
        model.handle(channel_event("Newchannel", uid))
    model.handle(event("BridgeCreate", BridgeUniqueid="b1", BridgeType="basic"))
    for uid in ("1.1", "1.2"):
        model.handle(channel_event("BridgeEnter", uid, BridgeUniqueid="b1",
                                   BridgeType="basic", ChannelStateDesc="Up"))
    assert model.bridges["b1"].members == {"1.1", "1.2"}
    assert model.channels["1.1"].bridge == "b1" and model.channels["1.1"].state == "Up"
    model.handle(channel_event("BridgeLeave", "1.1", BridgeUniqueid="b1", BridgeType="basic"))
    assert model.channels["1.1"].bridge is None
    model.handle(channel_event("Hangup", "1.2"))
    assert model.bridges["b1"].members == set() and "1.2" not in model.channels
    model.handle(event("BridgeDestroy", BridgeUniqueid="b1"))
    assert model.bridges == {}


def test_given_events_for_unknown_channels_then_no_channel_is_invented() -> None:
    """Only Newchannel (or a resync) creates channels; stray events and unknown event
    names change nothing."""
    model = LiveModel(Clock())
    model.handle(channel_event("Newstate", "9.9"))
    model.handle(channel_event("Hangup", "9.9"))
    model.handle(event("SomethingNew", Uniqueid="9.9"))
    assert model.snapshot() == {"channels": {}, "bridges": {}, "queues": {}, "endpoints": {}}


def test_given_two_channel_event_then_both_channels_are_refreshed() -> None:
    """Events such as DialBegin carry the second channel with a Dest prefix."""
    model = LiveModel(Clock())
    model.handle(channel_event("Newchannel", "1.1"))
    model.handle(channel_event("Newchannel", "1.2"))
    dial = channel_event("DialBegin", "1.1", ChannelStateDesc="Ring")
    dial.update(DestUniqueid="1.2", DestChannelStateDesc="Ringing", DestCallerIDName="Op",
                DestChannel="PJSIP/201-x")
    model.handle(Message("event", "DialBegin", dial))
    assert model.channels["1.2"].state == "Ringing"
    assert model.channels["1.2"].caller_name == "Op"


def test_given_endpoint_events_then_device_state_and_contacts_follow() -> None:
    """DeviceStateChange, ContactStatus and PeerStatus keep endpoints current."""
    model = LiveModel(Clock())
    model.handle(event("ContactStatus", URI="sip:201@127.0.0.1:5070", ContactStatus="Created",
                       AOR="201", EndpointName="201"))
    model.handle(event("DeviceStateChange", Device="PJSIP/201", State="NOT_INUSE"))
    model.handle(event("PeerStatus", ChannelType="PJSIP", Peer="PJSIP/201",
                       PeerStatus="Reachable"))
    endpoint = model.endpoints["201"]
    assert (endpoint.device_state, endpoint.contacts, endpoint.reachable) == (
        "NOT_INUSE", {"sip:201@127.0.0.1:5070"}, True)
    model.handle(event("ContactStatus", URI="sip:201@127.0.0.1:5070", ContactStatus="Removed",
                       AOR="201", EndpointName="201"))
    assert endpoint.contacts == set()
    model.handle(event("DeviceStateChange", Device="Local/s@hold", State="INUSE"))
    assert model.device_states["Local/s@hold"] == "INUSE" and set(model.endpoints) == {"201"}


@pytest.mark.parametrize(("given", "expected"), [
    ("Not in use", "NOT_INUSE"), ("Unavailable", "UNAVAILABLE"), ("In use", "INUSE"),
    ("Ring+Inuse", "RINGINUSE"), ("On Hold", "ONHOLD"), ("5", "UNAVAILABLE"),
    ("1", "NOT_INUSE"), ("NOT_INUSE", "NOT_INUSE"), ("99", "UNKNOWN"), ("gibberish", "UNKNOWN"),
])
def test_device_state_names_are_normalized(given: str, expected: str) -> None:
    """EndpointList words, queue member numbers and DeviceStateChange constants agree."""
    assert device_state_name(given) == expected


def test_given_lists_when_resynced_then_model_is_replaced_with_them() -> None:
    """resync() replaces everything: channels with their bridges (from BridgeId and
    BridgeInfo), queues with members and waiting callers, endpoints with contacts."""
    clock = Clock()
    model = LiveModel(clock)
    model.handle(channel_event("Newchannel", "0.1"))  # gone by the time of the lists
    channels = [channel_event("CoreShowChannel", "1.1", BridgeId="b1", ChannelStateDesc="Up"),
                channel_event("CoreShowChannel", "1.2", BridgeId=""),
                channel_event("CoreShowChannel", "1.3", BridgeId="")]
    bridges = [event("BridgeListItem", BridgeUniqueid="b1", BridgeType="basic"),
               event("BridgeListItem", BridgeUniqueid="b2", BridgeType="basic")]
    members = {"b1": [event("BridgeInfoChannel", Uniqueid="1.1")],
               "b2": [event("BridgeInfoChannel", Uniqueid="1.3")],
               "gone": [event("BridgeInfoChannel", Uniqueid="1.2")]}
    queues = [event("QueueParams", Queue="operators", Strategy="rrmemory"),
              event("QueueMember", Queue="operators", Name="Operator 202",
                    Location="PJSIP/202", StateInterface="PJSIP/202", Status="2", Paused="1",
                    PausedReason="rapat", InCall="1", Membership="static", Penalty="0"),
              event("QueueEntry", Queue="operators", Position="1", Channel="PJSIP/201-1.2",
                    Uniqueid="1.2", Wait="42")]
    endpoints = [event("EndpointList", ObjectName="202", DeviceState="In use",
                       Contacts="202/sip:202@127.0.0.1:5072,")]
    model.resync(channels, bridges, members, queues, endpoints)
    snap = model.snapshot()
    assert set(snap["channels"]) == {"1.1", "1.2", "1.3"}
    assert snap["bridges"]["b1"]["members"] == ["1.1"]
    assert snap["bridges"]["b2"]["members"] == ["1.3"]
    assert model.channels["1.3"].bridge == "b2"
    assert snap["queues"]["operators"]["callers"] == [(1, "1.2", "PJSIP/201-1.2")]
    assert model.queues["operators"].callers["1.2"].wait_start == clock.now - 42
    assert snap["queues"]["operators"]["members"]["PJSIP/202"] == {
        "name": "Operator 202", "state_interface": "PJSIP/202", "status": "INUSE",
        "paused": True, "paused_reason": "rapat", "in_call": True, "membership": "static",
        "penalty": "0"}
    assert snap["endpoints"] == {"202": {"device_state": "INUSE",
                                         "contacts": ["sip:202@127.0.0.1:5072"]}}


def test_snapshot_leaves_out_times_so_live_and_resynced_can_be_equal() -> None:
    """A caller who joined live and the same caller listed later compare equal although
    their wait starts were measured differently."""
    clock = Clock()
    live = LiveModel(clock)
    live.handle(channel_event("Newchannel", "1.1"))
    live.handle(channel_event("QueueCallerJoin", "1.1", Queue="operators", Position="1"))
    clock.now += 30
    rebuilt = LiveModel(clock)
    rebuilt.resync([channel_event("CoreShowChannel", "1.1", BridgeId="")],
                   queues=[event("QueueEntry", Queue="operators", Position="1",
                                 Channel="PJSIP/201-1.1", Uniqueid="1.1", Wait="29")])
    assert live.snapshot() == rebuilt.snapshot()
    assert live.queues["operators"].callers["1.1"].wait_start != (
        rebuilt.queues["operators"].callers["1.1"].wait_start)
