"""The server's side of the hotline, over AMI: the queue, transfers, priorities, callbacks.

Everything here is optional to the hotline (the dialplan carries calls on its own); it is
what the operator console and the server's logic call. Every method returns a Deferred from
the AMI client and validates what it is given first: a value that could smuggle a new AMI
header or dialplan argument (CR, LF, NUL, commas, ampersands...) is refused with
:class:`InvalidInput` and nothing is sent.

Queue membership: operators are static members (see queues.conf), so logging out is a pause
with the reason ``logged-out``; :meth:`HotlineService.add_member` adds extra, dynamic members
(a supervisor helping out), which :meth:`remove_member` takes away again.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from dialplans import contract
from dispatcher.callbacks.dialer import Dialer, Move
from dispatcher.callbacks.missed import MissedCallDetector
from dispatcher.callbacks.owed import CallbackEntry, CallbackList
from dispatcher.callbacks.policies import DeskPolicy, Job
from dispatcher.callbacks.states import CallbackInput, IllegalMove, next_state
from dispatcher.config.model import Center
from ivr.menu import queue_prio
from pbx.ami.actions import AMIActions
from pbx.ami.attribution import EventKey, key_of

log = Logger(namespace="dispatcher.hotline")

QUEUE_NAME = contract.QUEUE_NAME
CHANNEL_RE = re.compile(r"^(PJSIP|Local)/[A-Za-z0-9_.@*#+-]{1,100}(;[12])?$")
EXTENSION_RE = re.compile(r"^[0-9]{2,8}$")
REASON_RE = re.compile(r"^[A-Za-z0-9 _.-]{1,40}$")
NUMBER_RE = re.compile(r"^\+?[A-Za-z0-9_.-]{1,64}$")
SOURCE_RE = re.compile(r"^(\d{1,3}(\.\d{1,3}){3}|\[[0-9A-Fa-f:.]{2,45}\]):\d{1,5}$")


class TransferMode(enum.Enum):
    """How an operator's call is bridged to an agency."""

    BLIND = "blind"
    ATTENDED = "attended"
    CONFERENCE = "conference"


class HotlineError(Exception):
    """A hotline request that cannot be carried out."""


class InvalidInput(HotlineError, ValueError):
    """A caller-provided value was refused before anything reached Asterisk."""


class NoWayBack(HotlineError):
    """A callback that cannot be made safely: the way the citizen came in is not known, or
    not one the center may dial out on. Nothing is sent to Asterisk."""


def _no_controls(value: str, what: str) -> str:
    if not isinstance(value, str) or any(c in value for c in "\r\n\0"):
        raise InvalidInput(f"{what} holds CR, LF or NUL (or is not text): {value!r}")
    return value


def check_channel(channel: str) -> str:
    """An Asterisk channel name such as ``PJSIP/201-0000001a``; raises InvalidInput."""
    _no_controls(channel, "channel")
    if not CHANNEL_RE.match(channel):
        raise InvalidInput(f"not a channel name: {channel!r}")
    return channel


def check_reason(reason: str) -> str:
    """A pause reason: 1 to 40 letters, digits, spaces, ``_ . -``."""
    _no_controls(reason, "reason")
    if not REASON_RE.match(reason):
        raise InvalidInput(f"a pause reason is 1-40 letters, digits, spaces, _ . - : {reason!r}")
    return reason


def check_number(number: str) -> str:
    """A number (or SIP user part) to call back."""
    _no_controls(number, "number")
    if not NUMBER_RE.match(number):
        raise InvalidInput(f"not a number to call: {number!r}")
    return number


def callback_target(center: Center, number: str, endpoint: str, source: str | None) -> str:
    """The dial string that reaches a citizen again by the way they came in, or NoWayBack.

    A caller who came through the trunk is dialled back through it; a staff phone is dialled
    directly when the call came from that phone's own endpoint; a caller who came straight
    to our SIP port (an app) is dialled at the address it came from. Nothing else: the number
    is the caller's to choose, so dialling it anywhere else (the trunk above all: toll fraud)
    would let an anonymous caller make the center call where they like.
    """
    check_number(number)
    if endpoint == contract.ENDPOINT_TRUNK:
        if center.trunk is None:
            raise NoWayBack(f"{number} came in over a trunk that is no longer configured")
        if not re.match(r"^\+?[0-9]{3,20}$", number):
            raise NoWayBack(f"{number!r} came in over the trunk but is not a phone number")
        return f"PJSIP/{number}@{contract.ENDPOINT_TRUNK}"
    if endpoint == number and number in center.extensions():
        return f"PJSIP/{number}"
    if endpoint == contract.ENDPOINT_ANONYMOUS:
        if not source:
            raise NoWayBack(
                f"{number} called straight to the SIP port from an address no longer known "
                "(the list was restored after a restart): call back by hand")
        _no_controls(source, "source")
        if not SOURCE_RE.match(source):
            raise InvalidInput(f"not a SIP source address: {source!r}")
        return f"PJSIP/{contract.ENDPOINT_ANONYMOUS}/sip:{number}@{source}"
    came = f"endpoint {endpoint!r}" if endpoint else "an unknown endpoint"
    raise NoWayBack(f"no known way back to {number!r} (it came in on {came}); only the way "
                    "a citizen came in is dialled")


@dataclass(frozen=True)
class _DeskJob:
    """A hotline callback as the dialer sees it: keyed by the list's entry id."""

    key: int
    number: str
    attempts: int
    citizen_no_answers: int = 0


class _ListMoves:
    """The dialer's moves applied to the hotline's callback list."""

    def __init__(self, service: HotlineService) -> None:
        self.service = service

    def dialling(self, job: Job, detail: str) -> None:
        """Nothing to record: the entry moves once Asterisk took the originate."""

    def refused(self, job: Job, why: str) -> None:
        """Never: the hotline checks before it asks the dialer."""

    def moved(self, move: Move) -> None:
        """Apply the step to the entry; one the table refuses (a late result for a closed
        entry) is logged and changes nothing."""
        try:
            self.service.callbacks.move(move.key, move.event, result_linkedid=move.linkedid)
        except (KeyError, IllegalMove) as exc:
            log.warn("Callback {id}: {event} not applied ({error})", id=move.key,
                     event=move.event.value, error=exc)


class HotlineService:
    """AMI operations on the hotline, for the server and the operator console.

    ``ami`` is anything with the :class:`pbx.ami.client.AMIActions` methods (the running
    ``AMIService``); ``callbacks`` is the list :meth:`call_back` updates, through the one
    callbacks dialer (``dispatcher.callbacks.dialer``) with the desk's policy.
    """

    def __init__(self, ami: AMIActions, center: Center, callbacks: CallbackList | None = None,
                 queue: str = QUEUE_NAME, clock: IReactorTime | None = None) -> None:
        self.ami = ami
        self.center = center
        self.queue = queue
        self.callbacks = callbacks if callbacks is not None else CallbackList()
        self.dialer = Dialer(clock, ami, _ListMoves(self))
        self._agencies = {a.key: a for a in center.agencies}
        self._operators = {op.extension for op in center.operators}

    # -- who is who --------------------------------------------------------------------------

    def _staff(self, extension: str) -> str:
        _no_controls(extension, "extension")
        if not EXTENSION_RE.match(extension) or extension not in self.center.extensions():
            raise InvalidInput(f"not a configured extension: {extension!r}")
        return f"PJSIP/{extension}"

    def _operator(self, extension: str) -> str:
        iface = self._staff(extension)
        if extension not in self._operators:
            raise InvalidInput(f"{extension} is not an operator desk")
        return iface

    def _agency(self, key: str):  # noqa: ANN202 (dispatcher.config.Agency)
        _no_controls(key, "agency")
        agency = self._agencies.get(key)
        if agency is None:
            raise InvalidInput(f"unknown agency {key!r}; known: {sorted(self._agencies)}")
        return agency

    # -- the operators' queue ----------------------------------------------------------------

    def login(self, extension: str) -> defer.Deferred[Any]:
        """The operator at ``extension`` takes calls again."""
        return self._guard(lambda: self.ami.queuepause(
            self._operator(extension), False, queue=self.queue, reason=contract.LOGGED_IN_REASON))

    def logout(self, extension: str) -> defer.Deferred[Any]:
        """The operator leaves the desk (a pause with the reason ``logged-out``)."""
        return self._guard(lambda: self.ami.queuepause(
            self._operator(extension), True, queue=self.queue,
            reason=contract.LOGGED_OUT_REASON))

    def pause(self, extension: str, reason: str = contract.DEFAULT_PAUSE_REASON
              ) -> defer.Deferred[Any]:
        """Pause the operator (no calls) with a reason."""
        return self._guard(lambda: self.ami.queuepause(
            self._operator(extension), True, queue=self.queue, reason=check_reason(reason)))

    def unpause(self, extension: str) -> defer.Deferred[Any]:
        """Unpause the operator."""
        return self._guard(lambda: self.ami.queuepause(
            self._operator(extension), False, queue=self.queue, reason=contract.AVAILABLE_REASON))

    def add_member(self, extension: str, name: str | None = None, paused: bool = False
                   ) -> defer.Deferred[Any]:
        """Add a staff phone (a supervisor) to the queue as an extra, dynamic member."""
        def send() -> defer.Deferred[Any]:
            iface = self._staff(extension)
            member = check_reason(name) if name else extension
            return self.ami.queueadd(self.queue, iface, member_name=member,
                                     state_interface=iface, paused=paused)
        return self._guard(send)

    def remove_member(self, extension: str) -> defer.Deferred[Any]:
        """Remove a dynamic member (static operator desks cannot be removed: Asterisk says
        so and the Deferred fails)."""
        return self._guard(lambda: self.ami.queueremove(self.queue, self._staff(extension)))

    def set_priority(self, caller_channel: str, priority: int) -> defer.Deferred[Any]:
        """Re-rank a waiting caller: ``priority`` 1 (life-threatening) .. 10, like the
        agencies'; or a QUEUE_PRIO above 10 (15: like a returning citizen, 20: like panic).

        The dialplan queues every caller at its category's priority at once; this is the
        server's correction (a linked panic alert, a repeat caller), applied whenever it
        comes: the dialplan never waits for the server.
        """
        def send() -> defer.Deferred[Any]:
            if not isinstance(priority, int) or not 1 <= priority <= 20:
                raise InvalidInput(f"priority must be 1..20, got {priority!r}")
            prio = queue_prio(priority) if priority <= 10 else priority
            return self.ami.send_action("QueueChangePriorityCaller", {
                "Queue": self.queue, "Caller": check_channel(caller_channel),
                "Priority": prio, "Immediate": "true",
            })
        return self._guard(send)

    # -- bridging to an agency ---------------------------------------------------------------

    def transfer(self, operator_channel: str, agency: str, mode: TransferMode | str,
                 citizen_channel: str | None = None) -> defer.Deferred[Any]:
        """Bridge the citizen on ``operator_channel`` (the operator's leg) to ``agency``.

        * blind: the citizen goes to the agency's ring group (then its fallback); the
          operator's leg ends.
        * attended: the operator's phone rings the agency while the citizen holds; the
          operator completes or cancels with the consultation keys (#1 / #0).
        * conference: citizen, operator and agency in one ConfBridge; the operator may leave.
          ``citizen_channel`` is the operator's peer (asked of Asterisk when not given).
        """
        def send() -> defer.Deferred[Any]:
            channel = check_channel(operator_channel)
            target = self._agency(agency)
            how = TransferMode(mode)
            if how is TransferMode.BLIND:
                return self.ami.blindtransfer(channel, "s", contract.agency_context(target.key))
            if how is TransferMode.ATTENDED:
                return self.ami.atxfer(channel, f"{contract.BLIND_PREFIX}{target.digit}",
                                       contract.CONTEXT_TRANSFER)
            peer = check_channel(citizen_channel) if citizen_channel else None
            return self._conference(channel, target.key, peer)
        return self._guard(send)

    @defer.inlineCallbacks
    def _conference(self, operator_channel: str, agency: str,  # noqa: ANN202
                    citizen: str | None):
        if citizen is None:
            citizen = yield self.ami.getvar("BRIDGEPEER", operator_channel)
        if not citizen:
            raise HotlineError(f"{operator_channel} is not bridged to anyone")
        check_channel(citizen)
        yield self.ami.setvar(contract.VAR_CONF_AGENCY, agency, operator_channel)
        # Both legs at once (one Redirect with ExtraChannel): moving one alone would end
        # the other's bridge under it.
        result = yield self.ami.send_action("Redirect", {
            "Channel": operator_channel, "Context": contract.CONTEXT_CONFERENCE,
            "Exten": contract.EXTEN_OPERATOR, "Priority": 1,
            "ExtraChannel": citizen, "ExtraContext": contract.CONTEXT_CONFERENCE,
            "ExtraExten": contract.EXTEN_CITIZEN, "ExtraPriority": 1,
        })
        return result

    # -- callbacks -----------------------------------------------------------------------------

    def call_back(self, entry_id: int, operator_extension: str, ring_seconds: int = 30
                  ) -> defer.Deferred[Any]:
        """Ring the operator's phone first; once answered, the dialplan dials the citizen.

        The entry goes to ``ringing`` once Asterisk accepted the originate; the outcome is
        in the ``SiagaCallbackResult`` user event (:meth:`callback_result`), or, when the
        operator never answers, in the ``OriginateResponse`` (:meth:`originate_result`).
        """
        def send() -> defer.Deferred[Any]:
            entry = self.callbacks.get(entry_id)
            iface = self._staff(operator_extension)
            target = callback_target(self.center, entry.number, entry.endpoint, entry.source)
            if not 5 <= ring_seconds <= 120:
                raise InvalidInput(f"ring_seconds must be 5..120, got {ring_seconds}")
            next_state(entry.phase, CallbackInput.RING_OPERATOR)  # a closed one: IllegalMove
            return self.dialer.ring(_DeskJob(entry.id, entry.number, entry.attempts),
                                    DeskPolicy(iface, target, ring_seconds))
        return self._guard(send)

    def originate_result(self, fields: Mapping[str, str]) -> CallbackEntry | None:
        """An ``OriginateResponse``: a callback whose operator never answered is pending
        again (an answered one is settled by its ``SiagaCallbackResult``)."""
        key = self.dialer.on_originate_response(fields)
        return self.callbacks.get(key) if key is not None else None

    def callback_result(self, fields: Mapping[str, str]) -> CallbackEntry | None:
        """Apply a ``SiagaCallbackResult`` user event to the list (done when answered)."""
        try:
            entry_id = int(fields.get("Callback", ""))
            self.callbacks.get(entry_id)
        except (ValueError, KeyError):
            log.warn("Callback result for an unknown callback: {fields!r}", fields=dict(fields))
            return None
        self.dialer.citizen_done(entry_id, None, fields.get("Status"), fields.get("Call"))
        return self.callbacks.get(entry_id)

    # -- plumbing ------------------------------------------------------------------------------

    @staticmethod
    def _guard(send) -> defer.Deferred[Any]:  # noqa: ANN001
        # Validation errors become failed Deferreds: one error path for callers.
        try:
            return defer.maybeDeferred(send)
        except Exception as exc:  # pragma: no cover - maybeDeferred catches already
            return defer.fail(exc)


class MissedCallWatcher(Service):
    """Wires the detector and the callback list to an AMI service's events.

    ``clock`` gives the time (``IReactorTime.seconds``); ``ami`` has ``subscribe_all``
    (``pbx.ami.client.AMIService``). A Service: started, it subscribes (:meth:`start`);
    stopped, it unsubscribes (:meth:`stop`).
    ``SiagaCallbackResult`` is believed only when signed with ``event_key`` (by default the
    AMI service's, ``ami.event_key``): a caller ID can forge the event, not its Mac.
    """

    def __init__(self, ami: Any, clock: Any, callbacks: CallbackList,
                 detector: MissedCallDetector | None = None,
                 service: HotlineService | None = None,
                 event_key: EventKey | None = None) -> None:
        self.ami = ami
        self.clock = clock
        self.callbacks = callbacks
        self.detector = detector or MissedCallDetector()
        self.service = service
        # No key at all: nothing can be attributed, so no result event is believed.
        self.event_key = event_key or key_of(ami) or EventKey()
        self._unsubscribe: Any = None

    def start(self) -> None:
        """Subscribe to every AMI event."""
        self._unsubscribe = self.ami.subscribe_all(self.on_event)

    def stop(self) -> None:
        """Unsubscribe."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def startService(self) -> None:  # noqa: N802 -- Twisted's name
        """Subscribe to every AMI event."""
        super().startService()
        self.start()

    def stopService(self) -> None:  # noqa: N802 -- Twisted's name
        """Unsubscribe."""
        super().stopService()
        self.stop()

    def on_event(self, event: Any) -> None:
        """One AMI event (a ``pbx.ami.protocol.Message``)."""
        now = self.clock.seconds()
        if (event.name == "UserEvent" and event.get("UserEvent") == contract.EVENT_CALLBACK_RESULT
                and self.service is not None):
            if self.event_key.verify(event, ("Call", "Callback", "Status")):
                self.service.callback_result(event.fields)
        elif event.name == "OriginateResponse" and self.service is not None:
            self.service.originate_result(event.fields)
        for missed in self.detector.feed(event.name, event.fields, now):
            entry = self.callbacks.add(missed, now)
            log.info("Missed hotline call {linkedid} from {number} ({reason}): callback {id}",
                     linkedid=missed.linkedid, number=missed.number or "withheld",
                     reason=missed.reason, id=entry.id if entry else None)
