"""The one AMI the server's features speak to, over every node's own ``AMIService``.

Events: a subscription is made on every node, so a feature hears every node's events (their
uniqueids and linkedids start with the node's system name: they never collide). Actions go
where they mean something:

* one about an existing channel (``Channel``, ``Channel1``, ``ExtraChannel``...) to the node
  whose live model holds that channel (refused when two nodes hold a channel of that name:
  each node numbers its channels from 0, and acting on the wrong one could hang up another
  citizen);
* a queue membership change (pause, add, remove, penalty) or a global variable to every
  node that is up: an operator paused from the console is paused on every node (and on
  a node that was down, once it is back: :mod:`~dispatcher.cluster.desks`);
* anything else (an Originate: a callback, an alert's call) to the first node, in the
  topology's order, whose AMI is logged in now: a node that is down is never asked;
* an action that must run beside a call it does not name (a supervisor's ChanSpy) through
  :meth:`ClusterAMI.for_call`, the AMI of the node holding that call.

Each node's AMIService is given the same :class:`~pbx.ami.attribution.EventKey`, so the
dialplan of every node signs the server's user events with the one key the features check.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from twisted.internet import defer
from twisted.python.failure import Failure

from pbx.ami.actions import AMIActions, ListResult
from pbx.ami.attribution import EventKey
from pbx.ami.errors import AMIError, AMINotConnected
from pbx.ami.events import EventCallback
from pbx.ami.model import LiveModel
from pbx.ami.service import AMIService

__all__ = ["BROADCAST_ACTIONS", "CHANNEL_FIELDS", "LISTS", "AmbiguousChannel", "ClusterAMI",
           "NodeLink"]

CHANNEL_FIELDS = ("Channel", "Channel1", "Channel2", "ExtraChannel")
# Queue membership is the operator's, not one node's: changed on every node up.
BROADCAST_ACTIONS = frozenset({"queuepause", "queueadd", "queueremove", "queuepenalty"})
# Lists of what Asterisk holds: asked of every node up, their events put together (what a
# feature lists after a login is the whole center's).
LISTS = frozenset({"coreshowchannels", "bridgelist", "queuestatus", "queuesummary",
                   "devicestatelist", "pjsipshowendpoints"})
# Actions whose Channel field names what to dial, not a channel that exists.
DIALS = frozenset({"originate"})


class AmbiguousChannel(AMIError):
    """Two nodes have a channel of that name (each node counts its channels from 0): an
    action by name alone could reach the wrong citizen's call, so none is sent."""


@dataclass
class NodeLink:
    """One node as the brain holds it: its name, AMI connection and live model."""

    name: str
    ami: AMIService
    model: LiveModel

    @property
    def up(self) -> bool:
        """True while the node's AMI is logged in."""
        client = self.ami.client
        return client is not None and bool(client.logged_in)

    def holds(self, channel: str) -> bool:
        """True when this node's live model has a channel of that name."""
        return any(c.name == channel for c in self.model.channels.values())


class _LoginView(AMIActions):
    """A node's new connection as the features see it at a login (see ``on_connected``)."""

    def __init__(self, cluster: ClusterAMI, client: Any) -> None:  # noqa: ANN401
        self._cluster = cluster
        self._client = client

    def __getattr__(self, name: str) -> Any:  # noqa: ANN401 (the client's own attributes)
        return getattr(self._client, name)

    def send_action(self, name: str,
                    fields: Mapping[str, object] | Iterable[tuple[str, object]] = (),
                    timeout: float | None = None) -> defer.Deferred[Any]:
        """Through the cluster."""
        return self._cluster.send_action(name, fields, timeout)


class ClusterAMI(AMIActions):
    """Duck-types ``AMIService`` for the features, over ``links`` (in topology order)."""

    def __init__(self, links: list[NodeLink], event_key: EventKey) -> None:
        self.links = links
        self.event_key = event_key

    # -- what the features read of an AMIService -----------------------------------------

    @property
    def client(self) -> Any:  # noqa: ANN401 (an AMIClient or None)
        """The client of the node actions go to by default (None: every node is down)."""
        link = self.healthy()
        return link.ami.client if link is not None else None

    @property
    def connections(self) -> int:
        """Logins on every node since the brain started."""
        return sum(link.ami.connections for link in self.links)

    def healthy(self) -> NodeLink | None:
        """The first node, in the topology's order, whose AMI is logged in now."""
        return next((link for link in self.links if link.up), None)

    def when_ready(self) -> defer.Deferred[Any]:
        """Fires with the first client logged in on any node."""
        link = self.healthy()
        if link is not None:
            return defer.succeed(link.ami.client)
        waits = [link.ami.when_ready() for link in self.links]
        first: defer.Deferred[Any] = defer.DeferredList(
            waits, fireOnOneCallback=True, fireOnOneErrback=False, consumeErrors=True)
        return first.addCallback(lambda result: result[0] if isinstance(result, tuple)
                                 else self.client)

    def on_connected(self, listener: Callable[[Any], object]) -> None:
        """``listener(client)`` after every login on any node. The client it gets is the
        node's connection for its lifetime, but its actions are the cluster's: a feature
        that lists the channels after a login sees every node's, not only the one that
        logged in (a callback up on node b is not ended by node a's return)."""
        for link in self.links:
            link.ami.on_connected(lambda client: listener(_LoginView(self, client)))

    def subscribe(self, name: str, callback: EventCallback) -> Callable[[], None]:
        """Events named ``name`` from every node."""
        undo = [link.ami.subscribe(name, callback) for link in self.links]
        return lambda: [u() for u in undo] and None

    def subscribe_all(self, callback: EventCallback) -> Callable[[], None]:
        """Every event of every node."""
        undo = [link.ami.subscribe_all(callback) for link in self.links]
        return lambda: [u() for u in undo] and None

    # -- actions ---------------------------------------------------------------------------

    def for_call(self, linkedid: str) -> AMIActions:
        """The AMI of the node (up now) that holds call ``linkedid``, for an action that
        names no channel of it but must run where it is (the supervisor's ChanSpy,
        originated beside the operator's channel: ChanSpy sees only its own node's
        channels); this cluster's routing when no node up holds it."""
        for link in self.links:
            if link.up and any(c.linkedid == linkedid for c in link.model.channels.values()):
                return link.ami
        return self

    def route(self, name: str, fields: Mapping[str, object]) -> list[NodeLink]:
        """The nodes an action goes to (empty: none can take it now)."""
        up = [link for link in self.links if link.up]
        action = name.lower()
        if (action in BROADCAST_ACTIONS or action in LISTS
                or (action == "setvar" and "Channel" not in fields)):
            return up
        if action not in DIALS:
            named = [str(fields[f]) for f in CHANNEL_FIELDS if f in fields]
            if named:
                holders = [link for link in up if link.holds(named[0])]
                if len(holders) > 1:
                    raise AmbiguousChannel(
                        f"{name}: channel {named[0]} is up on nodes "
                        f"{', '.join(link.name for link in holders)}: not acted on")
                return holders[:1] if holders else up[:1]
        return up[:1]

    def send_action(
        self,
        name: str,
        fields: Mapping[str, object] | Iterable[tuple[str, object]] = (),
        timeout: float | None = None,
    ) -> defer.Deferred[Any]:
        """Send to the node(s) :meth:`route` picks; a broadcast fires with the first node's
        answer once every node answered (it fails only when every node refused)."""
        # Kept as given: an Originate repeats its Variable field, once per variable.
        pairs = list(fields.items()) if isinstance(fields, Mapping) else list(fields)
        first: dict[str, object] = {}
        for key, value in pairs:
            first.setdefault(key, value)
        try:
            targets = self.route(name, first)
        except AmbiguousChannel as exc:
            return defer.fail(exc)
        if not targets:
            return defer.fail(AMINotConnected(f"cannot send {name}: no node's AMI is up"))
        if len(targets) == 1:
            return targets[0].ami.send_action(name, pairs, timeout)
        sent = [link.ami.send_action(name, pairs, timeout) for link in targets]
        every: defer.Deferred[Any] = defer.DeferredList(sent, consumeErrors=True)
        merge = name.lower() in LISTS

        def answered(results: list[tuple[bool, Any]]) -> Any:  # noqa: ANN401
            ok = [value for success, value in results if success]
            if not ok:
                failure: Failure = results[0][1]
                return failure
            if merge and all(isinstance(v, ListResult) for v in ok):
                return ListResult(ok[0].response, [e for v in ok for e in v.events],
                                  ok[0].complete)
            return ok[0]

        return every.addCallback(answered)
