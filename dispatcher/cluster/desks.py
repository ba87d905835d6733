"""The operators' desks carried to a node that rejoins (pure rules, and their wiring).

A queue change from the console (pause with a reason, log out) goes to every node up
(:mod:`~dispatcher.cluster.ami`), and a feature code changes the node the phone dialled.
A node that was down meanwhile restarts with every desk open (each node's fail-open start,
as a single center's) and would ring an operator on a break or logged out. When the brain
gets such a node's AMI back and its model has resynced, it applies to it the desk state of
the other nodes up: each operator paused there is paused on the rejoining node with that
reason, each operator logged out there is logged out, through the console's own queue
verbs (:class:`~dispatcher.hotline.service.HotlineService`, the node's AMI alone).

The rules (:func:`desks_to_carry`):

* The most restrictive state wins when the other nodes disagree (logged out > paused >
  available): feature codes change one node only, so the nodes can disagree, and an
  emergency caller put through to a desk nobody sits at rings it for the queue's
  ``ring_seconds`` (the queue rings one desk at a time, round robin) while a free colleague
  waits. One free operator fewer on one node for a while costs less than that.
* A fail-open floor: the carry never takes the last available operator off the rejoining
  node's queue while another node up has an operator available. Its citizens would then
  wait the whole ``overflow_seconds`` and be handed to an agency while an operator is free.
  In that case an operator some other node sees available stays available here too (only
  the operators every other node agrees are away are closed). When every other node has
  every operator away, the rejoining node follows them: that is the center's state, and
  each node's dialplan still queues every caller and overflows as it does on the others.
* Only ever closes a desk, never opens one: a desk the rejoining node has paused itself
  (an operator who dialled a code there while the brain could not see it) is left alone.
* Nothing when no other node is up, or none has resynced since its own login: nothing to
  copy, the node's own start state stands.
* Only the config's operators are considered (``PJSIP/<extension>``, never an interface
  read from an event), and a reason is carried only if it is one of the contract's pause
  reasons (any other pauses with the default reason): every field of every action sent is
  the config's or the contract's, never text a node reported.

Only a rejoin the brain saw is carried: a node whose AMI this brain had and lost. A node
that restarted while the brain itself was down, or that was down when the brain started,
keeps its own start state (the brain cannot know what it missed); the edge's one call per
desk still holds, and the next change from the console reaches it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from twisted.internet import defer
from twisted.logger import Logger

from dialplans import contract
from pbx.ami.model import LiveModel

__all__ = ["AVAILABLE", "LOGGED_OUT", "PAUSED", "RANK", "DeskCarrier", "DeskHold",
           "desk_on", "desks_to_carry"]

log = Logger(namespace="dispatcher.cluster.desks")

AVAILABLE, PAUSED, LOGGED_OUT = "available", "paused", "logged out"
#: How far from the queue each state keeps the operator: the highest wins a disagreement.
RANK = {AVAILABLE: 0, PAUSED: 1, LOGGED_OUT: 2}
#: The reasons carried as they are (the console's and the feature codes' four).
CARRIED_REASONS = frozenset(contract.PAUSE_REASONS.values())


@dataclass(frozen=True)
class DeskHold:
    """A desk's queue state on one node: ``state`` (available, paused, logged out) and,
    when paused, the reason."""

    state: str
    reason: str = ""


def desk_on(model: LiveModel, extension: str) -> DeskHold | None:
    """``extension``'s queue state in ``model`` (None: the node has no such member, so it
    has no say). The pause reason is kept only when it is one of the contract's."""
    queue = model.queues.get(contract.QUEUE_NAME)
    member = queue.members.get(f"PJSIP/{extension}") if queue is not None else None
    if member is None:
        return None
    if not member.paused:
        return DeskHold(AVAILABLE)
    if member.paused_reason == contract.LOGGED_OUT_REASON:
        return DeskHold(LOGGED_OUT)
    reason = member.paused_reason if member.paused_reason in CARRIED_REASONS \
        else contract.DEFAULT_PAUSE_REASON
    return DeskHold(PAUSED, reason)


def _available_members(model: LiveModel) -> set[str]:
    queue = model.queues.get(contract.QUEUE_NAME)
    if queue is None:
        return set()
    return {iface for iface, member in queue.members.items() if not member.paused}


def desks_to_carry(rejoining: LiveModel, others: Sequence[LiveModel],
                   extensions: Iterable[str]) -> dict[str, DeskHold]:
    """What the rejoining node's desks must become, by extension: each a pause with a
    reason or a log-out (see the module's rules). ``others``: the models of the other
    nodes up, resynced, in the topology's order; ``extensions``: the config's operators."""
    if not others:
        return {}
    carry: dict[str, DeskHold] = {}
    open_elsewhere: set[str] = set()  # operators some other node has available
    for extension in extensions:
        votes = [hold for model in others if (hold := desk_on(model, extension)) is not None]
        if not votes:
            continue
        if any(v.state == AVAILABLE for v in votes):
            open_elsewhere.add(extension)
        verdict = max(votes, key=lambda v: RANK[v.state])  # the first of the highest rank
        own = desk_on(rejoining, extension) or DeskHold(AVAILABLE)
        if RANK[verdict.state] > RANK[own.state]:
            carry[extension] = verdict
    # The floor: never the last available desk off this node's queue while another node
    # has one available.
    closing = {f"PJSIP/{ext}" for ext in carry}
    left_open = _available_members(rejoining) - closing
    someone_free = any(_available_members(model) for model in others)
    if not left_open and someone_free:
        carry = {ext: hold for ext, hold in carry.items() if ext not in open_elsewhere}
    return carry


class QueueVerbs(Protocol):
    """The console's queue verbs on one node (a ``HotlineService`` over its AMI)."""

    def pause(self, extension: str, reason: str = ...) -> defer.Deferred[Any]: ...

    def unpause(self, extension: str) -> defer.Deferred[Any]: ...

    def logout(self, extension: str) -> defer.Deferred[Any]: ...


class Node(Protocol):
    """What the carrier reads of a node (a :class:`~dispatcher.cluster.ami.NodeLink`)."""

    name: str
    model: LiveModel

    @property
    def up(self) -> bool: ...


class DeskCarrier:
    """Applies :func:`desks_to_carry` to a node whose AMI the brain lost and got back, once
    its model has resynced.

    Told of each node's login (:meth:`logged_in`), loss (:meth:`lost`) and completed resync
    (:meth:`resynced`). ``extensions()`` the config's operators; ``verbs(node)`` the queue
    verbs over that node's AMI alone. A carry that was refused in part (an Asterisk still
    loading its queue) is tried again at the node's next resync (the one its FullyBooted
    brings); a carry only sends what the node does not have already, so a repeat is
    harmless.
    """

    def __init__(self, nodes: Sequence[Node], extensions: Callable[[], Iterable[str]],
                 verbs: Callable[[Node], QueueVerbs]) -> None:
        self.nodes = list(nodes)
        self.extensions = extensions
        self.verbs = verbs
        self.carried = 0  # desks changed on rejoining nodes since the start
        self._seen: set[str] = set()  # nodes logged in at least once in this run
        self._current: set[str] = set()  # nodes resynced since their latest login
        self._pending: set[str] = set()  # nodes back from a loss, not yet carried to

    def logged_in(self, name: str) -> None:
        """``name``'s AMI logged in: a rejoin when it had logged in before."""
        if name in self._seen:
            self._pending.add(name)
        self._seen.add(name)
        self._current.discard(name)

    def lost(self, name: str) -> None:
        """``name``'s AMI is gone: its model no longer counts."""
        self._current.discard(name)

    def resynced(self, name: str) -> defer.Deferred[dict[str, DeskHold]] | None:
        """``name``'s model was rebuilt: carry the desks to it if it is back from a loss.
        Fires with what was applied (None: nothing to do)."""
        self._current.add(name)
        if name not in self._pending:
            return None
        node = next(n for n in self.nodes if n.name == name)
        others = [n.model for n in self.nodes
                  if n.name != name and n.up and n.name in self._current]
        if not others:
            self._pending.discard(name)
            log.info("node {node} is back; no other node up to copy the desks from: its own "
                     "start state stands", node=name)
            return None
        if contract.QUEUE_NAME not in node.model.queues:
            # Its queue not listed yet (an Asterisk that took the login before loading
            # app_queue): its own desks are unknown, so the floor cannot be judged. Its
            # FullyBooted brings the next resync.
            return None
        carry = desks_to_carry(node.model, others, self.extensions())
        if not carry:
            self._pending.discard(name)
            return defer.succeed({})
        verbs = self.verbs(node)
        sent = [(ext, hold, verbs.logout(ext) if hold.state == LOGGED_OUT
                 else verbs.pause(ext, hold.reason)) for ext, hold in sorted(carry.items())]
        every = defer.DeferredList([d for _e, _h, d in sent], consumeErrors=True)

        def applied(results: list[tuple[bool, Any]]) -> dict[str, DeskHold]:
            done: dict[str, DeskHold] = {}
            for (ext, hold, _d), (ok, value) in zip(sent, results, strict=True):
                if ok:
                    done[ext] = hold
                else:
                    log.warn("node {node}: desk {ext} not {state} ({error}); tried again at "
                             "its next resync", node=name, ext=ext, state=hold.state,
                             error=value.getErrorMessage())
            if len(done) == len(sent):
                self._pending.discard(name)
            self.carried += len(done)
            if done:
                log.info("node {node} is back: the other nodes' desks applied: {desks}",
                         node=name, desks=", ".join(
                             f"{ext} {hold.state}" + (f" ({hold.reason})" if hold.reason else "")
                             for ext, hold in sorted(done.items())))
            return done

        return every.addCallback(applied)
