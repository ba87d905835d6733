"""An operator's own pause, repeated on the other nodes (one desk across nodes).

A pause from the console goes to every node up (:mod:`~dispatcher.cluster.ami`). A feature
code does not: the operator's phone dials it on one node (``*46<n>`` a pause with a reason,
``*47`` back, ``*45`` log in or out), and only that node's queue changes. The others would
go on ringing an operator who has left for a meal, each for the queue's ``ring_seconds``,
while a free colleague waits. :class:`PauseMirror` hears every node's
``QueueMemberPause`` and repeats a change a node made by itself on every other node up.

Its own repeats come back as events too (each node answers a pause with one), and so does
every node's answer to a console pause. Those are not changes to repeat: each repeat is
remembered as an *expected echo* on its node, and the node's event that matches it is
consumed instead of being repeated. Comparing with the other nodes' state instead (repeat
only where it differs) is not enough: an operator who pauses and unpauses within the time
an echo takes would see the late echo of the pause repeated back to the node they dialled,
and be left paused there. A node whose state already matches is skipped only when nothing
is expected from it.

What is sent comes from the config and the contract alone: the operator must be one of the
config's (``PJSIP/<extension>``), and a reason is carried only if it is one of the
contract's (any other is sent as the default reason). Failure is open: with the brain away
a code changes its node only, as in a single center, and the edge's one call per desk still
holds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger

from dialplans import contract
from dispatcher.cluster.desks import CARRIED_REASONS, Node, QueueVerbs
from pbx.ami.entities import fields_of, flag

__all__ = ["ECHO_SECONDS", "PauseMirror"]

log = Logger(namespace="dispatcher.cluster.pauses")

#: How long a repeat's echo is waited for: one that never came (a node that died meanwhile)
#: stops being expected after this, so a later real change from that node is repeated.
ECHO_SECONDS = 10.0


class PauseMirror:
    """Repeats each node's own pause and unpause on the other nodes up.

    ``extensions()``: the config's operators; ``verbs(node)``: the queue verbs over that
    node's AMI alone; ``clock()``: seconds (the reactor's). Feed it every node's
    ``QueueMemberPause`` with :meth:`event`.
    """

    def __init__(self, nodes: Sequence[Node], extensions: Callable[[], Iterable[str]],
                 verbs: Callable[[Node], QueueVerbs], clock: Callable[[], float]) -> None:
        self.nodes = list(nodes)
        self.extensions = extensions
        self.verbs = verbs
        self.clock = clock
        self.repeated = 0  # repeats sent since the start
        # (node, extension) -> the (paused, reason, sent at) of repeats not echoed yet.
        self._expected: dict[tuple[str, str], list[tuple[bool, str, float]]] = {}

    def event(self, node: str, event: Any) -> list[defer.Deferred[Any]]:  # noqa: ANN401
        """``node``'s ``QueueMemberPause``: repeat it on the other nodes when it is the
        node's own change. Returns the repeats' Deferreds (each fires when its node
        answered; a refusal is logged)."""
        f = fields_of(event)
        if f.get("Queue") != contract.QUEUE_NAME:
            return []
        interface = f.get("Interface", "")
        extension = interface[len("PJSIP/"):] if interface.startswith("PJSIP/") else ""
        if not extension or extension not in set(self.extensions()):
            return []
        paused = flag(f.get("Paused", "0"))
        reason = f.get("PausedReason", "") if paused else ""
        if self._echo(node, extension, paused, reason):
            return []
        return [self._repeat(other, extension, paused, reason) for other in self.nodes
                if other.name != node and other.up
                and self._differs(other, extension, paused, reason)]

    def _echo(self, node: str, extension: str, paused: bool, reason: str) -> bool:
        """True (and forgotten) when this is the echo of a repeat sent to ``node``."""
        key = (node, extension)
        now = self.clock()
        waiting = [e for e in self._expected.get(key, ()) if now - e[2] < ECHO_SECONDS]
        for i, (p, r, _at) in enumerate(waiting):
            if p == paused and (not paused or r == reason):
                del waiting[i]
                self._set(key, waiting)
                return True
        self._set(key, waiting)
        return False

    def _set(self, key: tuple[str, str], waiting: list[tuple[bool, str, float]]) -> None:
        if waiting:
            self._expected[key] = waiting
        else:
            self._expected.pop(key, None)

    def _differs(self, node: Node, extension: str, paused: bool, reason: str) -> bool:
        """Whether ``node`` needs the change: always while a repeat to it is unanswered
        (its model is behind what was sent), else when its member's state differs."""
        if self._expected.get((node.name, extension)):
            return True
        queue = node.model.queues.get(contract.QUEUE_NAME)
        member = queue.members.get(f"PJSIP/{extension}") if queue is not None else None
        if member is None:
            return False  # not a member there: nothing to repeat
        if member.paused != paused:
            return True
        return paused and member.paused_reason != reason

    def _repeat(self, node: Node, extension: str, paused: bool, reason: str
                ) -> defer.Deferred[Any]:
        verbs = self.verbs(node)
        if not paused:
            sent = verbs.unpause(extension)
        elif reason == contract.LOGGED_OUT_REASON:
            sent = verbs.logout(extension)
        else:
            reason = reason if reason in CARRIED_REASONS else contract.DEFAULT_PAUSE_REASON
            sent = verbs.pause(extension, reason)
        key = (node.name, extension)
        self._expected.setdefault(key, []).append((paused, reason, self.clock()))
        self.repeated += 1
        what = "back" if not paused else f"paused ({reason})"
        log.info("operator {ext} {what} on another node: repeated on node {node}",
                 ext=extension, what=what, node=node.name)

        def refused(failure: Any) -> None:  # noqa: ANN401 (a Failure)
            self._forget(key, paused, reason)
            log.warn("node {node}: operator {ext} not {what} ({error})", node=node.name,
                     ext=extension, what=what, error=failure.getErrorMessage())

        return sent.addErrback(refused)

    def _forget(self, key: tuple[str, str], paused: bool, reason: str) -> None:
        """A repeat refused: no echo will come."""
        waiting = self._expected.get(key, [])
        for i, (p, r, _at) in enumerate(waiting):
            if (p, r) == (paused, reason):
                del waiting[i]
                break
        self._set(key, waiting)
