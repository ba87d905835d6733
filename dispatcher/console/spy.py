"""Supervisors listen to, whisper to or barge into an operator's call from their own phone.

The server originates a call to the supervisor's phone; once answered, the dialplan
(``contract.CONTEXT_SPY``, one extension per mode) runs ChanSpy on the operator's channel:

* ``listen``: the supervisor hears the citizen and the operator; nobody hears the supervisor.
* ``whisper``: the operator hears the supervisor too; the citizen does not.
* ``barge``: both hear the supervisor.

Only a supervisor may (the session's role, checked again here: the console endpoint is not
the only caller). The operator is named by the desk's extension, never by a channel: the
channel spied on is the one the live model shows on that desk's phone in a call, and it goes
to the dialplan as a checked variable (never as application data). Originate into a dialplan
context needs only the AMI ``originate`` class (an application would be run with whatever
data the action carries; some need the ``system`` class, and all of them trust that data).

Every use is written to the call log (``supervisions``) and to the server's log: who, whom,
in which mode, when, and whether the PBX took it.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger

from dialplans import contract
from dispatcher.console.calls import ConsoleError, desk_channels
from pbx.ami.model import LiveModel

__all__ = ["MODES", "NotASupervisor", "NothingToSpyOn", "PhoneAway", "SpyRefused",
           "SpyRequest", "SpyService", "UnknownDesk", "phone_away", "record_supervision",
           "spy_target"]

log = Logger(namespace="dispatcher.console.spy")

MODES = tuple(contract.SPY_MODES)
# An Asterisk PJSIP channel name: what the dialplan accepts too (it filters to the same set).
_CHANNEL_RE = re.compile(r"^PJSIP/[A-Za-z0-9._-]{1,80}$")
_EXTENSION_RE = re.compile(r"^[0-9]{2,8}$")
#: How long the supervisor's phone rings before Asterisk gives up (milliseconds).
RING_MS = 30_000


class SpyRefused(ConsoleError):
    """A spy request that cannot be carried out as asked (bad mode, bad extension)."""


class NotASupervisor(ConsoleError):
    """Only supervisors listen, whisper or barge."""


class UnknownDesk(ConsoleError):
    """The extension is no operator's desk."""


class NothingToSpyOn(ConsoleError):
    """The operator's phone is in no call right now."""


class PhoneAway(ConsoleError):
    """The supervisor's own phone is not registered: nothing would ring."""


# Device states that say a PJSIP endpoint has no phone to ring.
_AWAY = {"UNAVAILABLE", "INVALID"}


def phone_away(model: LiveModel, extension: str) -> bool:
    """True when the model knows ``extension``'s phone is not registered (no contact, and a
    device state saying so); unknown counts as there (the Originate then tells)."""
    endpoint = model.endpoints.get(extension)
    return bool(endpoint is not None and not endpoint.contacts
                and endpoint.device_state in _AWAY)


@dataclass(frozen=True)
class SpyRequest:
    """A checked request: the supervisor's and operator's extensions, and the mode."""

    supervisor: str
    operator: str
    mode: str

    @classmethod
    def parse(cls, supervisor: str, document: dict[str, Any]) -> SpyRequest:
        """Check a page's ``{"extension": ..., "mode": ...}`` (raises SpyRefused)."""
        unknown = sorted(set(document) - {"extension", "mode"})
        if unknown:
            raise SpyRefused(f"unknown fields: {', '.join(k[:20] for k in unknown[:5])}")
        extension, mode = document.get("extension"), document.get("mode")
        if not isinstance(extension, str) or not _EXTENSION_RE.match(extension):
            raise SpyRefused("extension must be an operator's extension (2 to 8 digits)")
        if not isinstance(mode, str) or mode not in MODES:
            raise SpyRefused(f"mode must be one of {', '.join(MODES)}")
        return cls(supervisor, extension, mode)


def spy_target(model: LiveModel, extension: str) -> tuple[str, str]:
    """The channel of ``extension``'s phone in a call, and the call's linkedid.

    A channel in a bridge first (talking); else the newest channel on the phone (ringing,
    dialling). Raises :class:`NothingToSpyOn` when the phone has no channel.
    """
    channels = desk_channels(model, extension)
    if not channels:
        raise NothingToSpyOn(f"desk {extension} is in no call")
    bridged = [c for c in channels if c.bridge]
    channel = (bridged or channels)[-1]
    if not _CHANNEL_RE.match(channel.name):
        raise NothingToSpyOn(f"desk {extension}'s channel is not a phone's channel")
    return channel.name, channel.linkedid


def record_supervision(session: Any, at: float, request: SpyRequest, channel: str,  # noqa: ANN401
                       linkedid: str, result: str, detail: dict[str, str]) -> None:
    """Write one use to the call log (in the writer's thread)."""
    from dispatcher.calllog.models import Supervision

    session.add(Supervision(
        at=dt.datetime.fromtimestamp(at, dt.UTC), supervisor=request.supervisor,
        operator=request.operator, mode=request.mode, linkedid=linkedid[:64],
        channel=channel[:200], result=result, detail=json.dumps(detail)))


class SpyService:
    """Starts listen/whisper/barge calls: checks, originates, logs.

    ``ami`` has ``originate`` (``pbx.ami.actions.AMIActions``); ``model`` is the live model;
    ``supervisors`` and ``operators`` say who is which (called at each request: a reloaded
    config counts); ``write`` runs ``fn(session, *args)`` in the call log's writer
    (``CallLogWriter.submit_retrying``); ``clock`` gives the time.
    """

    def __init__(self, ami: Any, model: LiveModel,  # noqa: ANN401
                 supervisors: Callable[[], tuple[str, ...]],
                 operators: Callable[[], tuple[str, ...]],
                 write: Callable[..., defer.Deferred[Any]],
                 clock: Callable[[], float]) -> None:
        self.ami = ami
        self.model = model
        self.supervisors = supervisors
        self.operators = operators
        self.write = write
        self.clock = clock

    def start(self, request: SpyRequest) -> defer.Deferred[dict[str, Any]]:
        """Ring the supervisor's phone into ``request.mode`` on the operator's call.

        Fires with ``{"mode", "extension", "channel", "linkedid"}`` once Asterisk has queued
        the call; fails with a :class:`ConsoleError` (nothing sent) or the AMI's error.
        """
        return defer.maybeDeferred(self._start, request)

    @defer.inlineCallbacks
    def _start(self, request: SpyRequest):  # noqa: ANN202 (Deferred[dict])
        if request.supervisor not in self.supervisors():
            log.warn("spy refused: {who} is not a supervisor", who=request.supervisor)
            raise NotASupervisor(f"{request.supervisor} is not a supervisor")
        if request.operator not in self.operators():
            raise UnknownDesk(f"{request.operator} is not an operator's desk")
        if request.mode not in MODES:
            raise SpyRefused(f"mode must be one of {', '.join(MODES)}")
        channel, linkedid = spy_target(self.model, request.operator)
        if phone_away(self.model, request.supervisor):
            raise PhoneAway(f"your phone ({request.supervisor}) is not registered: "
                            "register it, then try again")
        at = self.clock()
        # Over several nodes the spy's call must start on the node of the operator's call
        # (ChanSpy sees only its own node's channels): an AMI that can say which
        # (dispatcher.cluster.ami.ClusterAMI.for_call) is asked; a single one is the node.
        for_call = getattr(self.ami, "for_call", None)
        ami = for_call(linkedid) if for_call is not None else self.ami
        try:
            yield ami.originate(
                f"PJSIP/{request.supervisor}", context=contract.CONTEXT_SPY,
                exten=request.mode, priority=1,
                caller_id=f'"{request.mode} {request.operator}" <{request.operator}>',
                # The mark makes the call log keep this call as the center's own from its
                # first event, answered or not (the dialplan sets it again, for CEL).
                variables={contract.VAR_SPY_TARGET: channel,
                           contract.VAR_SUPERVISION: request.mode},
                originate_timeout_ms=RING_MS)
        except Exception as exc:
            log.warn("supervisor {sup} {mode} on desk {op} ({channel}): the PBX refused: "
                     "{error}", sup=request.supervisor, mode=request.mode,
                     op=request.operator, channel=channel, error=exc)
            self._record(at, request, channel, linkedid, "failed", {"error": str(exc)[:200]})
            raise
        log.info("supervisor {sup} {mode} on desk {op}: {channel}, call {linkedid}",
                 sup=request.supervisor, mode=request.mode, op=request.operator,
                 channel=channel, linkedid=linkedid)
        self._record(at, request, channel, linkedid, "originated", {})
        return {"mode": request.mode, "extension": request.operator, "channel": channel,
                "linkedid": linkedid}

    def _record(self, at: float, request: SpyRequest, channel: str, linkedid: str,
                result: str, detail: dict[str, str]) -> None:
        d = self.write(record_supervision, at, request, channel, linkedid, result, detail)
        d.addErrback(lambda failure: log.failure(
            "the call log did not keep supervisor {sup}'s {mode} on desk {op}", failure,
            sup=request.supervisor, mode=request.mode, op=request.operator))
