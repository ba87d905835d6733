"""The console over several nodes: the card's journeys found on whichever node holds the
call, the supervisor's spy started on the node of the operator's call, and the nodes in the
console's shared view (the pages' banner)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from twisted.internet import defer

from dispatcher.cluster.journeys import ClusterJourneys
from dispatcher.console.spy import SpyRequest, SpyService
from dispatcher.console.views import ConsoleViews
from pbx.ami.actions import AMIActions
from pbx.ami.model import LiveModel
from tests.unit.cluster.test_cluster import Node, cluster, ev


class Tracker:
    """What the console reads of one node's JourneyTracker."""

    def __init__(self, facts: dict[str, Any]) -> None:
        self.journeys = dict(facts)
        self.aliases: dict[str, Any] = {}
        self.listeners: list[Any] = []

    def facts(self, linkedid: str) -> Any:  # noqa: ANN401
        return self.journeys.get(linkedid) or self.aliases.get(linkedid)


def test_given_a_call_on_node_b_when_its_facts_are_read_then_node_bs_tracker_answers() -> None:
    """The card's facts of a call on node b come from node b's tracker (node a's knows
    nothing of it); a listener hears both nodes; journeys and aliases read both."""
    a, b = Tracker({"a-1.1": "facts of a"}), Tracker({"b-1.1": "facts of b"})
    b.aliases["b-1.9"] = "facts of b"
    journeys = ClusterJourneys([a, b])  # type: ignore[list-item]
    assert journeys.facts("b-1.1") == "facts of b" and journeys.facts("a-1.1") == "facts of a"
    assert journeys.facts("b-1.9") == "facts of b" and journeys.facts("c-1.1") is None
    assert journeys.journeys.get("b-1.1") == "facts of b"
    assert journeys.aliases.get("b-1.9") == "facts of b"
    heard: list[Any] = []
    journeys.listeners.append(heard.append)
    assert a.listeners == [heard.append] and b.listeners == [heard.append]


class ActingNode(Node, AMIActions):
    """A node that also has the AMI's verbs (originate...), as an AMIService has."""


def _operator_call_on(model: LiveModel, node: str) -> None:
    uid = f"{node}-1700000000.5"
    model.handle(ev("Newchannel", Uniqueid=uid, Linkedid=uid, Channel="PJSIP/0812-00000001",
                    ChannelStateDesc="Up"))
    model.handle(ev("Newchannel", Uniqueid=f"{uid}1", Linkedid=uid,
                    Channel="PJSIP/201-00000002", ChannelStateDesc="Up"))


def test_given_an_operators_call_on_node_b_when_a_supervisor_listens_then_node_b_originates(
        ) -> None:
    """ChanSpy sees only its own node's channels: the supervisor's call is originated on
    the node of the operator's call (b), not on the first node up (a)."""
    ami, nodes, models = cluster(True, True)
    for link in ami.links:
        acting = ActingNode(link.name)
        link.ami = acting  # type: ignore[assignment]
    _operator_call_on(models[1], "b")
    assert ami.for_call("b-1700000000.5") is ami.links[1].ami
    assert ami.for_call("a-1700000000.404") is ami  # no node holds it: the cluster routes
    written: list[Any] = []
    spy = SpyService(ami, models[1], lambda: ("290",), lambda: ("201",),
                     lambda *args: written.append(args) or defer.succeed(None), lambda: 0.0)
    done: list[Any] = []
    spy.start(SpyRequest("290", "201", "listen")).addCallback(done.append)
    assert done and done[0]["linkedid"] == "b-1700000000.5"
    sent = {link.name: [name for name, _ in link.ami.sent] for link in ami.links}
    assert sent == {"a": [], "b": ["Originate"]}, sent


def test_given_nodes_when_the_console_lists_render_then_each_nodes_state_is_there() -> None:
    """Over several nodes the shared ``console`` view has ``nodes``; a single center's has
    none."""
    callbacks = SimpleNamespace(page=lambda start, count: [], open_count=0)
    model = LiveModel(lambda: 0.0)
    journeys = Tracker({})
    single = ConsoleViews(model, journeys, lambda: None, callbacks)  # type: ignore[arg-type]
    assert "nodes" not in single.lists()
    nodes = [{"name": "a", "up": False, "since_s": 3}, {"name": "b", "up": True, "since_s": 9}]
    over = ConsoleViews(model, journeys, lambda: None, callbacks,  # type: ignore[arg-type]
                        nodes=lambda: nodes)
    assert over.lists()["nodes"] == nodes


def test_given_one_citizen_channel_name_on_both_nodes_when_the_operator_hangs_up_then_only_bs(
        tmp_path) -> None:  # noqa: ANN001
    """Every citizen comes through the edge (one endpoint) and each node counts its channels
    from 0, so node a and node b may both have ``PJSIP/anonymous-edge-00000005`` up. The
    console's action on the operator's call on node b goes to node b (by the call's
    linkedid), instead of being refused as ambiguous or reaching node a's citizen."""
    from dispatcher.cluster.merged import MergedModel
    from dispatcher.config import load_center
    from dispatcher.console.actions import ConsoleActions
    from dispatcher.console.handoffs import HandoffBoard
    from pbx.ami.entities import Channel
    from tests.harness import EXAMPLE_CONFIG

    center = load_center(EXAMPLE_CONFIG, state_dir=tmp_path)
    ami, _nodes, models = cluster(True, True)
    for link in ami.links:
        link.ami = ActingNode(link.name)  # type: ignore[assignment]
    citizen = "PJSIP/anonymous-edge-00000005"
    for node, model, desk in (("a", models[0], "202"), ("b", models[1], "201")):
        call = f"{node}-1700000000.5"
        model.channels[call] = Channel(call, citizen, call, "Up", bridge=f"br-{node}")
        model.channels[f"{call}1"] = Channel(f"{call}1", f"PJSIP/{desk}-00000006", call, "Up",
                                             bridge=f"br-{node}")
    merged = MergedModel(lambda: models, lambda: 0.0)
    board = HandoffBoard((a.key for a in center.agencies), lambda: 0.0)
    actions = ConsoleActions(ami, merged, center, None, board)  # type: ignore[arg-type]
    done: list[Any] = []
    failed: list[Any] = []
    actions.act("201", "b-1700000000.5", "hangup").addCallbacks(done.append, failed.append)
    assert not failed, failed
    sent = {link.name: [(name, fields.get("Channel")) for name, fields in link.ami.sent]
            for link in ami.links}
    assert sent == {"a": [], "b": [("Hangup", citizen), ("Hangup", "PJSIP/201-00000006")]}
