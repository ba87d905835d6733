"""One view of several nodes' live models (pure functions over ``LiveModel``).

Each node's model follows its own AMI; what the wallboard, the metrics and the console read
is their union: every channel and bridge (their uniqueids start with the node's system
name, so they never collide), the callers waiting in every node's queue (numbered again by
how long they have waited), and each operator's desk as the busiest of its states on the
nodes (an operator on a call on node A is "on call" although node B sees them free). A node
whose AMI is down shows nothing: its model is stale until it resyncs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

from pbx.ami.entities import Bridge, Channel, Endpoint, Queue, QueueCaller, QueueMember
from pbx.ami.model import LiveModel

__all__ = ["STATE_RANK", "MergedModel", "merge_models"]

# Which device state wins when two nodes see one device differently: a call anywhere is
# the desk's call; a phone reachable from any node is reachable.
STATE_RANK = {
    "INUSE": 6, "BUSY": 6, "RINGINUSE": 6, "ONHOLD": 6,
    "RINGING": 5,
    "NOT_INUSE": 4,
    "UNAVAILABLE": 2, "INVALID": 1, "UNKNOWN": 0,
}


def _busiest(states: Iterable[str]) -> str:
    return max(states, key=lambda s: STATE_RANK.get(s, 0), default="UNKNOWN")


def _member(members: list[QueueMember]) -> QueueMember:
    paused = [m for m in members if m.paused]
    first = members[0]
    return replace(
        first,
        status=_busiest(m.status for m in members),
        paused=bool(paused),
        paused_reason=paused[0].paused_reason if paused else "",
        in_call=any(m.in_call for m in members),
        calls_taken=sum(m.calls_taken for m in members),
    )


def _queue(name: str, queues: list[Queue]) -> Queue:
    waiting = sorted((c for q in queues for c in q.callers.values()),
                     key=lambda c: (c.wait_start, c.position))
    callers = {c.uniqueid: QueueCaller(c.uniqueid, c.channel, i + 1, c.wait_start)
               for i, c in enumerate(waiting)}
    by_interface: dict[str, list[QueueMember]] = {}
    for q in queues:
        for iface, m in q.members.items():
            by_interface.setdefault(iface, []).append(m)
    members = {iface: _member(ms) for iface, ms in by_interface.items()}
    return Queue(name, queues[0].strategy, callers, members)


def _endpoint(name: str, endpoints: list[Endpoint]) -> Endpoint:
    reach = [e.reachable for e in endpoints if e.reachable is not None]
    return Endpoint(name, _busiest(e.device_state for e in endpoints),
                    set().union(*(e.contacts for e in endpoints)),
                    any(reach) if reach else None)


def merge_models(models: Iterable[LiveModel], clock: Callable[[], float]) -> LiveModel:
    """A new model holding the union of ``models`` (those of the nodes up now)."""
    models = list(models)
    merged = LiveModel(clock)
    queues: dict[str, list[Queue]] = {}
    endpoints: dict[str, list[Endpoint]] = {}
    for model in models:
        merged.channels.update(model.channels)
        merged.bridges.update(model.bridges)
        for name, q in model.queues.items():
            queues.setdefault(name, []).append(q)
        for name, e in model.endpoints.items():
            endpoints.setdefault(name, []).append(e)
        for device, state in model.device_states.items():
            merged.device_states[device] = _busiest((merged.device_states.get(device,
                                                                              "UNKNOWN"),
                                                     state))
    merged.queues = {name: _queue(name, qs) for name, qs in queues.items()}
    merged.endpoints = {name: _endpoint(name, es) for name, es in endpoints.items()}
    return merged


class MergedModel:
    """Reads like a ``LiveModel``: each attribute is the union of the models ``up()``
    returns now (the models of the nodes whose AMI is logged in)."""

    def __init__(self, up: Callable[[], Iterable[LiveModel]],
                 clock: Callable[[], float]) -> None:
        self._up = up
        self.clock = clock

    def current(self) -> LiveModel:
        """The merged model as the nodes stand now."""
        return merge_models(self._up(), self.clock)

    @property
    def channels(self) -> dict[str, Channel]:
        """Every up node's channels, by uniqueid."""
        return self.current().channels

    @property
    def bridges(self) -> dict[str, Bridge]:
        """Every up node's bridges, by uniqueid."""
        return self.current().bridges

    @property
    def queues(self) -> dict[str, Queue]:
        """Each queue with the callers of every node and each member's busiest state."""
        return self.current().queues

    @property
    def endpoints(self) -> dict[str, Endpoint]:
        """Each endpoint as the nodes see it together."""
        return self.current().endpoints

    @property
    def device_states(self) -> dict[str, str]:
        """Each device's busiest state on the nodes."""
        return self.current().device_states

    def snapshot(self) -> dict[str, Any]:
        """The merged model's snapshot (``LiveModel.snapshot``)."""
        return self.current().snapshot()

    def channels_of(self, linkedid: str) -> list[Channel]:
        """The channels of one call, oldest first (a call lives on one node)."""
        return self.current().channels_of(linkedid)
