"""The brain across nodes: the merged view of the nodes' live models, and where the one AMI
sends each action (dispatcher.cluster)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from twisted.internet import defer

from dialplans.contract import QUEUE_NAME
from dispatcher.cluster.ami import AmbiguousChannel, ClusterAMI, NodeLink
from dispatcher.cluster.merged import MergedModel, merge_models
from pbx.ami.actions import ListResult
from pbx.ami.attribution import EventKey
from pbx.ami.errors import AMINotConnected
from pbx.ami.model import LiveModel


def ev(name: str, **fields: str) -> dict[str, str]:
    return {"Event": name, **fields}


def node_model(prefix: str, now: float, member_status: str, caller_waited: float,
               in_call: bool = False) -> LiveModel:
    """A node's model: one citizen waiting in the queue since ``now - caller_waited``, and
    operator 201 in the state the node sees."""
    model = LiveModel(lambda: now - caller_waited)
    uid = f"{prefix}-1700000000.1"
    model.handle(ev("Newchannel", Uniqueid=uid, Linkedid=uid, Channel="PJSIP/anonymous-01",
                    CallerIDNum=f"08{prefix}"))
    model.handle(ev("QueueCallerJoin", Uniqueid=uid, Channel="PJSIP/anonymous-01",
                    Queue=QUEUE_NAME, Position="1"))
    model.handle(ev("QueueMemberStatus", Queue=QUEUE_NAME, Interface="PJSIP/201",
                    MemberName="Ani", StateInterface="PJSIP/201", Status=member_status,
                    Paused="0", InCall="1" if in_call else "0", CallsTaken="2"))
    return model


def test_given_two_nodes_when_merged_then_every_call_and_the_busiest_desk_show() -> None:
    """Node a has the operator on a call; node b sees them free (it carries none of their
    calls): the merged desk is on a call. Both nodes' waiting citizens are listed, numbered
    by how long they have waited, and calls taken add up."""
    a = node_model("a", 1000.0, "2", caller_waited=5, in_call=True)   # INUSE
    b = node_model("b", 1000.0, "1", caller_waited=30)                 # NOT_INUSE
    merged = merge_models([b, a], lambda: 1000.0)  # the free view first
    assert set(merged.channels) == {"a-1700000000.1", "b-1700000000.1"}
    queue = merged.queues[QUEUE_NAME]
    assert [(c.uniqueid, c.position) for c in sorted(queue.callers.values(),
                                                     key=lambda c: c.position)] == [
        ("b-1700000000.1", 1), ("a-1700000000.1", 2)]
    member = queue.members["PJSIP/201"]
    assert (member.status, member.in_call, member.calls_taken) == ("INUSE", True, 4)
    # The nodes' own models are untouched.
    assert b.queues[QUEUE_NAME].members["PJSIP/201"].status == "NOT_INUSE"
    assert b.queues[QUEUE_NAME].callers["b-1700000000.1"].position == 1


def test_given_a_node_down_when_the_view_is_read_then_its_stale_calls_are_left_out() -> None:
    """The merged view reads the models of the nodes up at each read."""
    a = node_model("a", 1000.0, "1", caller_waited=5)
    b = node_model("b", 1000.0, "1", caller_waited=5)
    up = {"a": True, "b": True}
    view = MergedModel(lambda: [m for n, m in (("a", a), ("b", b)) if up[n]], lambda: 1000.0)
    assert len(view.channels) == 2
    up["a"] = False
    assert set(view.channels) == {"b-1700000000.1"}
    assert [c.uniqueid for c in view.channels_of("b-1700000000.1")] == ["b-1700000000.1"]


class Node:
    """What ClusterAMI needs of a node's AMIService: a client when logged in, and the
    actions sent (a recording stand-in, no protocol)."""

    def __init__(self, name: str, up: bool = True) -> None:
        self.name = name
        self.client: Any = type("Client", (), {"logged_in": True})() if up else None
        self.connections = 1 if up else 0
        self.sent: list[tuple[str, dict[str, object]]] = []

        self.pairs: list[list[tuple[str, object]]] = []
        self.listeners: list[Any] = []

    def send_action(self, name: str, fields: Any,  # noqa: ANN401
                    timeout: float | None = None) -> defer.Deferred[Any]:
        pairs = list(fields.items()) if isinstance(fields, dict) else list(fields)
        self.pairs.append(pairs)
        self.sent.append((name, dict(pairs)))
        if name == "CoreShowChannels":
            return defer.succeed(ListResult(f"{self.name}:{name}", [
                {"Uniqueid": f"{self.name}-1.1"}]))
        return defer.succeed(f"{self.name}:{name}")

    def on_connected(self, listener: Any) -> None:  # noqa: ANN401
        self.listeners.append(listener)


def cluster(*ups: bool) -> tuple[ClusterAMI, list[Node], list[LiveModel]]:
    nodes = [Node(n, up) for n, up in zip("abc", ups, strict=False)]
    models = [LiveModel(lambda: 0.0) for _ in nodes]
    links = [NodeLink(n.name, n, m) for n, m in zip(nodes, models, strict=True)]  # type: ignore[arg-type]
    return ClusterAMI(links, EventKey()), nodes, models


def test_given_a_channel_on_node_b_when_acted_on_then_node_b_gets_the_action() -> None:
    """Channel names repeat across nodes' counters: the action goes to the node whose model
    holds the channel now."""
    ami, nodes, models = cluster(True, True)
    models[1].handle(ev("Newchannel", Uniqueid="b-1.1", Linkedid="b-1.1",
                        Channel="PJSIP/anonymous-00000007"))
    results: list[Any] = []
    ami.hangup("PJSIP/anonymous-00000007").addCallback(results.append)
    assert results == ["b:Hangup"]
    assert nodes[0].sent == []


def test_given_a_node_down_when_a_callback_is_originated_then_a_healthy_node_places_it() -> None:
    """An Originate (a callback, an alert's call) goes to the first node up, never to one
    whose AMI is down; with none up it fails at once."""
    ami, nodes, _ = cluster(False, True)
    results: list[Any] = []
    ami.originate("PJSIP/201", context="siaga-callback", exten="s", priority=1
                  ).addCallback(results.append)
    assert results == ["b:Originate"] and nodes[0].sent == []
    nobody, _, _ = cluster(False, False)
    failed: list[Any] = []
    nobody.ping().addErrback(failed.append)
    assert failed and failed[0].check(AMINotConnected)


def test_given_an_operator_paused_when_sent_then_every_node_up_pauses_them() -> None:
    """Queue membership is the operator's: a pause goes to every node up."""
    ami, nodes, _ = cluster(True, False, True)
    results: list[Any] = []
    ami.queuepause("PJSIP/201", True, queue=QUEUE_NAME, reason="break"
                   ).addCallback(results.append)
    assert [n.name for n in nodes if n.sent] == ["a", "c"]
    assert results == ["a:QueuePause"]


@pytest.mark.parametrize("ups", [(True, True), (False, True)])
def test_given_nodes_when_the_metrics_read_them_then_each_has_its_gauge(
        ups: tuple[bool, bool], tmp_path: Path) -> None:
    """siaga_node_up per node, from the brain's node list."""
    from dispatcher.config.loader import load_center
    from dispatcher.metrics.collector import CenterCollector, Sources
    from tests.harness import EXAMPLE_CONFIG

    center = load_center(EXAMPLE_CONFIG, state_dir=tmp_path)
    nodes = [{"name": n, "up": up} for n, up in zip("ab", ups, strict=True)]
    collector = CenterCollector(Sources(LiveModel(lambda: 0.0), center, lambda: 0.0,
                                        nodes=lambda: nodes), None)
    family = next(f for f in collector.collect() if f.name == "siaga_node_up")
    assert {s.labels["node"]: s.value for s in family.samples} == {
        "a": float(ups[0]), "b": float(ups[1])}


def test_given_an_originate_with_variables_when_routed_then_every_variable_goes() -> None:
    """An Originate repeats its Variable field: all of them reach the node (an alert's
    callback carries its incident and attempt in them)."""
    ami, nodes, _ = cluster(True, True)
    ami.originate("PJSIP/201", context="c", exten="s", priority=1,
                  variables={"SIAGA_INCIDENT": 7, "SIAGA_ATTEMPT": 1})
    assert [v for k, v in nodes[0].pairs[0] if k == "Variable"] == [
        "SIAGA_INCIDENT=7", "SIAGA_ATTEMPT=1"]


def test_given_a_node_logging_in_when_a_feature_lists_channels_then_every_node_answers() -> None:
    """After node a's login a feature lists the channels to find what ended unseen: it
    gets every node's (a callback up on node b is not taken for ended)."""
    ami, nodes, _ = cluster(True, True)
    seen: list[Any] = []
    ami.on_connected(lambda client: client.coreshowchannels().addCallback(seen.append))
    nodes[0].listeners[0](nodes[0].client)
    assert [e["Uniqueid"] for e in seen[0].events] == ["a-1.1", "b-1.1"]
    assert nodes[0].listeners[0] is not None and seen[0].response == "a:CoreShowChannels"


def test_given_one_channel_name_on_two_nodes_when_acted_on_then_refused() -> None:
    """Each node numbers its channels from 0: a name both hold is refused, not guessed (a
    hang-up on the wrong node would cut another citizen)."""
    ami, nodes, models = cluster(True, True)
    for prefix, model in zip("ab", models, strict=True):
        model.handle(ev("Newchannel", Uniqueid=f"{prefix}-1.1", Linkedid=f"{prefix}-1.1",
                        Channel="PJSIP/201-00000001"))
    failed: list[Any] = []
    ami.hangup("PJSIP/201-00000001").addErrback(failed.append)
    assert failed and failed[0].check(AmbiguousChannel)
    assert "a, b" in failed[0].getErrorMessage()
    assert nodes[0].sent == [] and nodes[1].sent == []


def test_given_the_database_down_at_start_when_it_answers_later_then_the_brain_starts(
        ) -> None:
    """A machine that boots the center before PostgreSQL: the brain is tried again with
    back-off (1 s, 2 s, ...) and built and started once the database answers; stopped,
    it tries no more."""
    from twisted.application.service import Service
    from twisted.internet.task import Clock

    from dispatcher.brain import BrainStarter

    clock, answers, built = Clock(), [False, False, True], []

    def probe(url: str) -> None:
        if not answers.pop(0):
            raise ConnectionRefusedError(f"{url} refused")

    def build(_reactor: Any, prepared: Any, _asterisks: Any) -> Service:  # noqa: ANN401
        built.append(prepared)
        return Service()

    starter = BrainStarter(clock, SimpleNamespace(center=SimpleNamespace(  # type: ignore[arg-type]
        database_url="postgresql://db/siaga")), probe=probe,
        blocking=lambda f, *a: defer.maybeDeferred(f, *a), build=build)
    starter.startService()
    assert built == [] and starter.attempts == 1
    clock.advance(1)
    assert built == [] and starter.attempts == 2
    clock.advance(1.9)
    assert built == []
    clock.advance(0.1)
    assert len(built) == 1 and starter.brain is not None and starter.brain.running
    clock.advance(100)
    assert starter.attempts == 3
    starter.stopService()
    assert not starter.brain.running


def test_given_the_database_never_answers_when_stopped_then_no_attempt_is_left() -> None:
    """Stopping the starter cancels its next attempt."""
    from twisted.internet.task import Clock

    from dispatcher.brain import BrainStarter

    clock = Clock()

    def refuse(url: str) -> None:
        raise ConnectionRefusedError(url)

    starter = BrainStarter(clock, SimpleNamespace(center=SimpleNamespace(  # type: ignore[arg-type]
        database_url="postgresql://db/siaga")), probe=refuse,
        blocking=lambda f, *a: defer.maybeDeferred(f, *a), build=lambda *a: None)
    starter.startService()
    clock.advance(1)
    assert starter.attempts == 2 and clock.getDelayedCalls()
    starter.stopService()
    assert clock.getDelayedCalls() == []
