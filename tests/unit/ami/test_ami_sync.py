"""ModelSync: the live model follows events and is rebuilt from lists on every login."""

from __future__ import annotations

from typing import Any

from twisted.internet import error, task
from twisted.internet.testing import StringTransportWithDisconnection
from twisted.python.failure import Failure

from pbx.ami.connection import Credentials
from pbx.ami.model import LiveModel
from pbx.ami.protocol import AMIParser, Message
from pbx.ami.service import AMIService
from pbx.ami.sync import ModelSync
from tests.unit.ami.test_ami_client import FakeEndpoint, log_in

Fields = dict[str, str]


def channel(uniqueid: str, name: str, **extra: str) -> Fields:
    """A channel snapshot as Asterisk 22 puts it in channel events and CoreShowChannel."""
    return {"Channel": name, "ChannelState": "6", "ChannelStateDesc": "Up",
            "CallerIDNum": "0812", "CallerIDName": "Warga", "ConnectedLineNum": "<unknown>",
            "ConnectedLineName": "<unknown>", "Context": "hotline", "Exten": "queue",
            "Priority": "7", "Uniqueid": uniqueid, "Linkedid": uniqueid, **extra}


class FakeAsterisk:
    """Answers the list actions written on a connection from canned lists."""

    def __init__(self, proto: Any, transport: StringTransportWithDisconnection) -> None:
        self.proto = proto
        self.transport = transport
        self.seen = 0
        self.lists: dict[str, list[Fields]] = {
            "CoreShowChannels": [], "BridgeList": [], "QueueStatus": [],
            "DeviceStateList": [],
        }
        self.refuse = {"PJSIPShowEndpoints"}
        self.errors: dict[str, str] = {}

    def actions(self) -> list[Message]:
        """Actions written so far."""
        return [m for m in AMIParser().feed(self.transport.value()) if isinstance(m, Message)]

    def pending(self) -> list[Message]:
        """Actions not answered yet (and mark them answered)."""
        actions = self.actions()
        new, self.seen = actions[self.seen:], len(actions)
        return new

    def answer(self, only: set[str] | None = None) -> None:
        """Answer every unanswered action (or only those named)."""
        for action in self.pending():
            name, aid = action["Action"], action.action_id
            if only is not None and name not in only:
                continue
            if name in self.refuse:
                self.send({"Response": "Error", "ActionID": aid,
                           "Message": "Permission denied"})
            elif name in self.errors:
                self.send({"Response": "Error", "ActionID": aid, "Message": self.errors[name]})
            elif name == "BridgeInfo":
                bridge = action["BridgeUniqueid"]
                items = [{"Event": "BridgeInfoChannel", **c} for c in self.lists["CoreShowChannels"]
                         if c.get("BridgeId") == bridge]
                self.send_list(aid, items, "BridgeInfoComplete")
            else:
                items = self.lists.get(name, [])
                self.send_list(aid, items, f"{name}Complete")

    def send_list(self, aid: str, items: list[Fields], complete: str) -> None:
        """An EventList answer."""
        self.send({"Response": "Success", "ActionID": aid, "EventList": "start"})
        for item in items:
            self.send({"Event": item.get("Event", "Item"), "ActionID": aid, **item})
        self.send({"Event": complete, "ActionID": aid, "EventList": "Complete",
                   "ListItems": str(len(items))})

    def send(self, fields: Fields) -> None:
        """One message from Asterisk."""
        text = "".join(f"{k}: {v}\r\n" for k, v in fields.items()) + "\r\n"
        self.proto.dataReceived(text.encode())


def setup() -> tuple[task.Clock, FakeEndpoint, AMIService, LiveModel, ModelSync]:
    """A started service with a model synced to it; nothing connected yet answered."""
    clock, endpoint = task.Clock(), FakeEndpoint()
    service = AMIService(clock, endpoint, Credentials("siaga", "x"), keepalive_interval=0,
                         retry_policy=lambda attempt: 1.0)
    model = LiveModel(clock.seconds)
    sync = ModelSync(service, model)
    service.startService()
    return clock, endpoint, service, model, sync


def connect(endpoint: FakeEndpoint, n: int = 0) -> FakeAsterisk:
    """Log in on connection ``n``; return the fake Asterisk answering on it."""
    proto, transport = endpoint.connections[n]
    log_in(proto, transport)
    fake = FakeAsterisk(proto, transport)
    fake.seen = 2  # Challenge and Login are answered
    return fake


def test_given_login_then_model_is_rebuilt_from_the_lists() -> None:
    """After login the lists are asked for, and the model becomes what they say (endpoints
    from DeviceStateList when PJSIPShowEndpoints is refused)."""
    _, endpoint, _, model, sync = setup()
    fake = connect(endpoint)
    fake.lists["CoreShowChannels"] = [
        {"Event": "CoreShowChannel", **channel("1.1", "PJSIP/201-1", BridgeId="b1")},
        {"Event": "CoreShowChannel", **channel("1.2", "PJSIP/202-2", BridgeId="b1")},
    ]
    fake.lists["BridgeList"] = [{"Event": "BridgeListItem", "BridgeUniqueid": "b1",
                                 "BridgeType": "basic"}]
    fake.lists["DeviceStateList"] = [{"Event": "DeviceStateChange", "Device": "PJSIP/201",
                                      "State": "INUSE"}]
    assert sync.resyncing
    fake.answer()
    fake.answer()  # BridgeInfo is asked once the bridge list is in
    assert not sync.resyncing and sync.resyncs == 1
    assert model.bridges["b1"].members == {"1.1", "1.2"}
    assert model.endpoints["201"].device_state == "INUSE"
    # Setvar: the dialplan's event key, set after every login (pbx.ami.attribution).
    sent = [m["Action"] for m in fake.actions() if m["Action"] != "Setvar"]
    assert sent[2:] == ["CoreShowChannels", "BridgeList", "QueueStatus", "PJSIPShowEndpoints",
                        "DeviceStateList", "BridgeInfo"]


def test_given_events_during_resync_then_they_are_applied_after_the_rebuild() -> None:
    """A hangup that arrives while the lists are fetched is not lost under the rebuild."""
    _, endpoint, _, model, _ = setup()
    fake = connect(endpoint)
    fake.lists["CoreShowChannels"] = [
        {"Event": "CoreShowChannel", **channel("1.1", "PJSIP/201-1", BridgeId="")}]
    fake.send({"Event": "Newchannel", **channel("1.2", "PJSIP/202-2")})
    fake.send({"Event": "Hangup", **channel("1.1", "PJSIP/201-1")})
    assert model.channels == {}  # held, not applied to the model about to be replaced
    fake.answer()
    assert set(model.channels) == {"1.2"}


def test_given_fully_booted_later_then_model_resyncs_again_but_not_during_a_resync() -> None:
    """FullyBooted during the login's resync changes nothing; one arriving afterwards
    (Asterisk finished booting) triggers a fresh resync."""
    _, endpoint, _, model, sync = setup()
    fake = connect(endpoint)  # log_in already delivered a FullyBooted during the resync
    fake.answer()
    assert sync.resyncs == 1
    fake.lists["CoreShowChannels"] = [
        {"Event": "CoreShowChannel", **channel("1.5", "PJSIP/203-5", BridgeId="")}]
    fake.send({"Event": "FullyBooted", "Status": "Fully Booted"})
    assert sync.resyncing
    fake.answer()
    assert sync.resyncs == 2 and set(model.channels) == {"1.5"}


def test_given_connection_lost_mid_resync_then_next_login_resyncs() -> None:
    """A drop during the resync leaves the model following events; the reconnection's login
    rebuilds it."""
    clock, endpoint, service, model, sync = setup()
    connect(endpoint)
    endpoint.connections[0][1].loseConnection()
    assert not sync.resyncing and sync.resyncs == 0
    clock.advance(1.0)
    fake = connect(endpoint, 1)
    fake.lists["CoreShowChannels"] = [
        {"Event": "CoreShowChannel", **channel("2.1", "PJSIP/204-1", BridgeId="")}]
    fake.answer()
    assert sync.resyncs == 1 and set(model.channels) == {"2.1"}
    assert service.connections == 2


def test_given_bridge_gone_before_bridge_info_then_resync_still_completes() -> None:
    """A bridge listed by BridgeList but gone when BridgeInfo asks is simply empty."""
    _, endpoint, _, model, sync = setup()
    fake = connect(endpoint)
    fake.lists["BridgeList"] = [{"Event": "BridgeListItem", "BridgeUniqueid": "gone",
                                 "BridgeType": "basic"}]
    fake.errors["BridgeInfo"] = "Bridge not found"
    fake.answer()
    fake.answer()
    assert sync.resyncs == 1 and model.bridges["gone"].members == set()


def test_given_resynced_listener_then_it_is_told_after_each_resync() -> None:
    """on_resynced listeners hear of every completed resync, not of failed ones."""
    clock, endpoint, _, model, sync = setup()
    told: list[LiveModel] = []
    sync.on_resynced(told.append)
    fake = connect(endpoint)
    fake.answer()
    assert told == [model]
    fake.send({"Event": "FullyBooted"})
    assert sync.resyncing
    endpoint.connections[0][1].protocol.connectionLost(Failure(error.ConnectionLost("reset")))
    assert not sync.resyncing
    assert told == [model]
