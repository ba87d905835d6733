"""The floor as a supervisor sees it: every operator's desk, live (pure, from the model).

Each desk: its state (the wallboard's word: available, ringing, on call, paused, offline,
logged out), the pause reason, and its current call: the citizen's number (as Asterisk's
cleaned caller ID says; shown as text), the channel on the desk's phone and how long the
desk has been on it. The duration counts from when the desk's channel entered its bridge
(the talk), as :class:`TalkClock` saw it on AMI; a channel it did not see enter (the server
started mid-call) counts from the channel's creation, which its uniqueid tells.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dialplans.contract import QUEUE_NAME
from dispatcher.config.model import Center
from dispatcher.console.calls import desk_of
from dispatcher.hotline.desks import operator_state
from pbx.ami.entities import Channel, uniqueid_order
from pbx.ami.model import LiveModel

__all__ = ["TalkClock", "desks_document", "desks_source"]


class TalkClock:
    """When each channel entered a bridge, from AMI events (``BridgeEnter``, ``Hangup``).

    Bounded: a channel whose Hangup was missed is forgotten after :attr:`limit` entries.
    """

    limit = 5000

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.since: dict[str, float] = {}

    def on_event(self, event: Any) -> None:  # noqa: ANN401 (pbx.ami.protocol.Message)
        """Take one AMI event."""
        name = event.name
        if name == "BridgeEnter":
            uniqueid = event.get("Uniqueid") or ""
            if uniqueid and uniqueid not in self.since:
                if len(self.since) >= self.limit:
                    self.since.pop(next(iter(self.since)))
                self.since[uniqueid] = self.clock()
        elif name == "Hangup":
            self.since.pop(event.get("Uniqueid") or "", None)

    def started(self, channel: Channel) -> float | None:
        """When ``channel``'s talk began, else its creation (None: not known)."""
        if channel.uniqueid in self.since:
            return self.since[channel.uniqueid]
        created = uniqueid_order(channel.uniqueid)
        return float(created[0]) if created and created[0] > 0 else None


def _citizen(model: LiveModel, extension: str, channel: Channel) -> str:
    """The number of the other party of the desk's call."""
    bridge = model.bridges.get(channel.bridge) if channel.bridge else None
    if bridge is not None:
        for uniqueid in sorted(bridge.members, key=uniqueid_order):
            other = model.channels.get(uniqueid)
            if other is not None and other.uniqueid != channel.uniqueid:
                return other.caller_num
    others = [c for c in model.channels_of(channel.linkedid)
              if desk_of(c.name) != extension]
    if others:
        return min(others, key=lambda c: uniqueid_order(c.uniqueid)).caller_num
    return channel.connected_num


def desks_document(model: LiveModel, center: Center, now: float,
                   talk: TalkClock | None = None) -> dict[str, Any]:
    """Every operator desk with its state and current call (``call`` None when idle)."""
    queue = model.queues.get(QUEUE_NAME)
    members = queue.members if queue is not None else {}
    # One pass over the channels for every desk (renders follow bursts of AMI events).
    by_desk: dict[str, list[Channel]] = {}
    for channel in model.channels.values():
        desk = desk_of(channel.name)
        if desk is not None:
            by_desk.setdefault(desk, []).append(channel)
    desks = []
    for op in center.operators:
        member = members.get(f"PJSIP/{op.extension}")
        if member is None:
            state, reason = "logged out", ""
        else:
            state = operator_state(member.status, member.paused, member.in_call)
            reason = member.paused_reason if member.paused else ""
        channels = sorted(by_desk.get(op.extension, ()),
                          key=lambda c: uniqueid_order(c.uniqueid))
        call = None
        if channels:
            bridged = [c for c in channels if c.bridge]
            channel = (bridged or channels)[-1]
            started = talk.started(channel) if talk is not None else None
            call = {
                "caller": _citizen(model, op.extension, channel),
                "channel": channel.name,
                "linkedid": channel.linkedid,
                "talking": bool(channel.bridge),
                "seconds": None if started is None else max(0, round(now - started)),
            }
        desks.append({"extension": op.extension, "name": op.name, "state": state,
                      "reason": reason, "call": call})
    return {"desks": desks}


def desks_source(model: LiveModel, center: Center, clock: Callable[[], float],
                 talk: TalkClock | None = None) -> Callable[[], dict[str, Any]]:
    """The desks view, rendered from the live parts at each push."""
    return lambda: desks_document(model, center, clock(), talk)
