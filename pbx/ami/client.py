"""The AMI client on Twisted: one connection's protocol and client, and a reconnecting service.

Layers, from the wire up:

* :class:`AMIProtocol` is a thin Twisted ``Protocol``: it feeds bytes to the sans-IO
  :class:`~pbx.ami.protocol.AMIParser` and hands each message to its :class:`AMIClient`.
* :class:`AMIClient` is one logged-in connection: one Deferred per ActionID with a timeout,
  EventList actions collected up to their ``...Complete`` event, MD5 challenge login,
  keepalive pings, and one thin method per AMI action (from :class:`AMIActions`). When the
  connection drops, every pending action fails with :class:`AMIConnectionLost`; nothing is
  ever resent on its own, so a reconnect cannot repeat an Originate.
* :class:`AMIService` owns a ``ClientService`` (reconnection with a capped backoff), tells
  listeners each time a connection is logged in (so the live model can resync) and routes
  events to subscribers by event name (:class:`EventDispatcher`), across reconnections.

Time comes from the ``IReactorTime`` passed in; nothing here imports the global reactor.
"""

from __future__ import annotations

import hashlib
import itertools
import random
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from twisted.application.internet import ClientService, backoffPolicy
from twisted.application.service import Service
from twisted.internet import defer, task
from twisted.internet.interfaces import IReactorTime, IStreamClientEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from pbx.ami.attribution import EventKey
from pbx.ami.protocol import (
    AMIInjectionError,
    AMIParser,
    Message,
    Oversized,
    serialize_action,
)

__all__ = [
    "AMIActionError",
    "AMIActions",
    "AMIAuthenticationError",
    "AMIClient",
    "AMIClientFactory",
    "AMIConnectionLost",
    "AMIError",
    "AMIInjectionError",
    "AMIMessageTooLarge",
    "AMINotConnected",
    "AMIProtocol",
    "AMIService",
    "AMITimeout",
    "Credentials",
    "EventDispatcher",
    "ListResult",
]

log = Logger(namespace="pbx.ami")

EventCallback = Callable[[Message], object]


class AMIError(Exception):
    """Base of every AMI client error."""


class AMIActionError(AMIError):
    """Asterisk answered ``Response: Error``; ``response`` is its message."""

    def __init__(self, action: str, response: Message) -> None:
        super().__init__(f"{action}: {response.get('Message') or response.name}")
        self.action = action
        self.response = response


class AMITimeout(AMIError):
    """No (complete) answer to an action within its timeout."""


class AMIConnectionLost(AMIError):
    """The connection dropped while the action was pending; it was not resent."""


class AMIAuthenticationError(AMIError):
    """Login was refused."""


class AMINotConnected(AMIError):
    """No logged-in AMI connection right now."""


class AMIMessageTooLarge(AMIError):
    """The answer broke the parser's line or message size limit and was dropped."""


@dataclass(frozen=True)
class Credentials:
    """An AMI user. Plaintext login is used only when ``allow_plaintext`` and the MD5
    challenge is refused."""

    username: str
    secret: str
    allow_plaintext: bool = False

    def __repr__(self) -> str:  # the secret never reaches a log line
        return f"Credentials(username={self.username!r}, allow_plaintext={self.allow_plaintext})"


@dataclass
class ListResult:
    """The outcome of an EventList action: its response, the listed events, and the
    ``...Complete`` event that closed the list."""

    response: Message
    events: list[Message] = field(default_factory=list)
    complete: Message | None = None


class _Pending:
    __slots__ = ("name", "deferred", "timer", "response", "events")

    def __init__(self, name: str, deferred: defer.Deferred[Any]) -> None:
        self.name = name
        self.deferred = deferred
        self.timer: Any = None
        self.response: Message | None = None
        self.events: list[Message] = []


class EventDispatcher:
    """Subscriptions by AMI event name plus catch-all ones.

    A subscriber that raises is logged with its traceback and the event goes on to the
    others: one faulty listener neither hides its error nor breaks the connection.
    """

    def __init__(self) -> None:
        # Tuples, replaced on (un)subscribe: dispatch iterates them without copying, and a
        # subscriber may unsubscribe while being called.
        self._by_name: dict[str, tuple[EventCallback, ...]] = {}
        self._all: tuple[EventCallback, ...] = ()

    def subscribe(self, name: str, callback: EventCallback) -> Callable[[], None]:
        """Call ``callback(event)`` for each event named ``name``; return an unsubscriber."""
        self._by_name[name] = (*self._by_name.get(name, ()), callback)

        def unsubscribe() -> None:
            callbacks = list(self._by_name.get(name, ()))
            if callback in callbacks:
                callbacks.remove(callback)
                if callbacks:
                    self._by_name[name] = tuple(callbacks)
                else:
                    del self._by_name[name]

        return unsubscribe

    def subscribe_all(self, callback: EventCallback) -> Callable[[], None]:
        """Call ``callback(event)`` for every event; return an unsubscriber."""
        self._all = (*self._all, callback)

        def unsubscribe() -> None:
            callbacks = list(self._all)
            if callback in callbacks:
                callbacks.remove(callback)
                self._all = tuple(callbacks)

        return unsubscribe

    def dispatch(self, event: Message) -> None:
        """Hand ``event`` to its subscribers, logging (never propagating) their errors."""
        callbacks = self._by_name.get(event.name)
        if callbacks:
            for callback in callbacks:
                try:
                    callback(event)
                except Exception:
                    log.failure("AMI subscriber {callback!r} failed on {name} event",
                                callback=callback, name=event.name)
        for callback in self._all:
            try:
                callback(event)
            except Exception:
                log.failure("AMI subscriber {callback!r} failed on {name} event",
                            callback=callback, name=event.name)


class AMIActions:
    """One thin method per AMI action the server uses; each returns a Deferred.

    A subclass provides :meth:`send_action`. Values are checked for CR/LF/NUL by the
    serializer; the Deferred fails with :class:`~pbx.ami.protocol.AMIInjectionError` and
    nothing is sent when one holds them.
    """

    def send_action(
        self,
        name: str,
        fields: Mapping[str, object] | Iterable[tuple[str, object]] = (),
        timeout: float | None = None,
    ) -> defer.Deferred[Any]:
        """Send an action; the Deferred fires with the response (or a :class:`ListResult`)."""
        raise NotImplementedError

    def ping(self) -> defer.Deferred[Message]:
        """``Ping``: the response proves the connection and Asterisk's manager are alive."""
        return self.send_action("Ping")

    def command(self, cli: str, timeout: float | None = None) -> defer.Deferred[list[str]]:
        """Run a CLI command; fires with its output lines.

        Needs the ``command`` write class, which the center's own AMI user does not have
        (the server runs CLI commands through the control socket: ``AsteriskService.cli``).
        """
        d = self.send_action("Command", {"Command": cli}, timeout)
        return d.addCallback(lambda response: list(response.output or ()))

    def originate(
        self,
        channel: str,
        *,
        context: str | None = None,
        exten: str | None = None,
        priority: int | str | None = None,
        application: str | None = None,
        data: str | None = None,
        caller_id: str | None = None,
        variables: Mapping[str, object] | None = None,
        account: str | None = None,
        channel_id: str | None = None,
        other_channel_id: str | None = None,
        originate_timeout_ms: int | None = None,
        timeout: float | None = None,
    ) -> defer.Deferred[Message]:
        """``Originate`` with ``Async: true``: fires when Asterisk has queued the call; the
        outcome comes as an ``OriginateResponse`` event carrying the same ActionID."""
        fields: list[tuple[str, object]] = [
            ("Channel", channel),
            ("Context", context),
            ("Exten", exten),
            ("Priority", priority),
            ("Application", application),
            ("Data", data),
            ("CallerID", caller_id),
            ("Account", account),
            ("ChannelId", channel_id),
            ("OtherChannelId", other_channel_id),
            ("Timeout", originate_timeout_ms),
            ("Async", "true"),
        ]
        for key, value in (variables or {}).items():
            if "=" in key:
                return defer.fail(AMIInjectionError(f"variable name {key!r} holds '='"))
            fields.append(("Variable", f"{key}={value}"))  # CR/LF/NUL: refused when sent
        return self.send_action("Originate", fields, timeout)

    def hangup(self, channel: str, cause: int | None = None) -> defer.Deferred[Message]:
        """``Hangup`` a channel (optionally with a Q.850 cause)."""
        return self.send_action("Hangup", {"Channel": channel, "Cause": cause})

    def redirect(
        self,
        channel: str,
        context: str,
        exten: str,
        priority: int | str = 1,
        extra_channel: str | None = None,
    ) -> defer.Deferred[Message]:
        """``Redirect`` a channel (and optionally its peer) to a dialplan location."""
        fields: dict[str, object] = {
            "Channel": channel, "Context": context, "Exten": exten, "Priority": priority,
        }
        if extra_channel is not None:
            fields.update(ExtraChannel=extra_channel, ExtraContext=context, ExtraExten=exten,
                          ExtraPriority=priority)
        return self.send_action("Redirect", fields)

    def bridge(self, channel1: str, channel2: str, tone: bool = False
               ) -> defer.Deferred[Message]:
        """``Bridge`` two answered channels together in a new basic bridge."""
        return self.send_action("Bridge", {"Channel1": channel1, "Channel2": channel2,
                                           "Tone": "yes" if tone else "no"})

    def atxfer(self, channel: str, exten: str, context: str | None = None
               ) -> defer.Deferred[Message]:
        """``Atxfer``: attended transfer of ``channel``'s peer to ``exten``."""
        return self.send_action("Atxfer", {"Channel": channel, "Exten": exten,
                                           "Context": context})

    def blindtransfer(self, channel: str, exten: str, context: str
                      ) -> defer.Deferred[Message]:
        """``BlindTransfer`` of ``channel`` to ``exten@context``."""
        return self.send_action("BlindTransfer", {"Channel": channel, "Exten": exten,
                                                  "Context": context})

    def getvar(self, variable: str, channel: str | None = None) -> defer.Deferred[str]:
        """``Getvar``: fires with the value ('' when unset)."""
        d = self.send_action("Getvar", {"Channel": channel, "Variable": variable})
        return d.addCallback(lambda response: response.get("Value"))

    def setvar(self, variable: str, value: object, channel: str | None = None
               ) -> defer.Deferred[Message]:
        """``Setvar`` on a channel, or a global variable when ``channel`` is None."""
        return self.send_action("Setvar", {"Channel": channel, "Variable": variable,
                                           "Value": value})

    def mixmonitor(self, channel: str, filename: str, options: str | None = None
                   ) -> defer.Deferred[Message]:
        """``MixMonitor``: record ``channel`` (both directions mixed) to ``filename``."""
        return self.send_action("MixMonitor", {"Channel": channel, "File": filename,
                                               "Options": options})

    def stop_mixmonitor(self, channel: str) -> defer.Deferred[Message]:
        """``StopMixMonitor`` on ``channel``."""
        return self.send_action("StopMixMonitor", {"Channel": channel})

    def corestatus(self) -> defer.Deferred[Message]:
        """``CoreStatus``: uptime, reload time, current calls."""
        return self.send_action("CoreStatus")

    def coreshowchannels(self, timeout: float | None = None) -> defer.Deferred[ListResult]:
        """``CoreShowChannels``: one ``CoreShowChannel`` event per channel."""
        return self.send_action("CoreShowChannels", (), timeout)

    def bridgelist(self, bridge_type: str | None = None, timeout: float | None = None
                   ) -> defer.Deferred[ListResult]:
        """``BridgeList``: one ``BridgeListItem`` event per bridge."""
        return self.send_action("BridgeList", {"BridgeType": bridge_type}, timeout)

    def bridgeinfo(self, bridge_uniqueid: str, timeout: float | None = None
                   ) -> defer.Deferred[ListResult]:
        """``BridgeInfo``: one ``BridgeInfoChannel`` event per channel in the bridge."""
        return self.send_action("BridgeInfo", {"BridgeUniqueid": bridge_uniqueid}, timeout)

    def queuestatus(self, queue: str | None = None, member: str | None = None,
                    timeout: float | None = None) -> defer.Deferred[ListResult]:
        """``QueueStatus``: ``QueueParams``, ``QueueMember`` and ``QueueEntry`` events."""
        return self.send_action("QueueStatus", {"Queue": queue, "Member": member}, timeout)

    def queuesummary(self, queue: str | None = None, timeout: float | None = None
                     ) -> defer.Deferred[ListResult]:
        """``QueueSummary``: one ``QueueSummary`` event per queue."""
        return self.send_action("QueueSummary", {"Queue": queue}, timeout)

    def queueadd(self, queue: str, interface: str, *, member_name: str | None = None,
                 state_interface: str | None = None, penalty: int | None = None,
                 paused: bool | None = None, reason: str | None = None
                 ) -> defer.Deferred[Message]:
        """``QueueAdd``: put an operator's interface into a queue."""
        return self.send_action("QueueAdd", {
            "Queue": queue, "Interface": interface, "MemberName": member_name,
            "StateInterface": state_interface, "Penalty": penalty, "Paused": paused,
            "Reason": reason,
        })

    def queueremove(self, queue: str, interface: str) -> defer.Deferred[Message]:
        """``QueueRemove``: take an interface out of a queue."""
        return self.send_action("QueueRemove", {"Queue": queue, "Interface": interface})

    def queuepause(self, interface: str, paused: bool, *, queue: str | None = None,
                   reason: str | None = None) -> defer.Deferred[Message]:
        """``QueuePause``: pause or unpause a member (in one queue or all)."""
        return self.send_action("QueuePause", {
            "Interface": interface, "Paused": paused, "Queue": queue, "Reason": reason,
        })

    def devicestatelist(self, timeout: float | None = None) -> defer.Deferred[ListResult]:
        """``DeviceStateList``: one ``DeviceStateChange`` event per known device."""
        return self.send_action("DeviceStateList", (), timeout)

    def pjsipshowendpoints(self, timeout: float | None = None) -> defer.Deferred[ListResult]:
        """``PJSIPShowEndpoints``: one ``EndpointList`` event per endpoint."""
        return self.send_action("PJSIPShowEndpoints", (), timeout)


class AMIClient(AMIActions):
    """One AMI connection: actions and their answers, login, keepalive, event routing.

    Built by :class:`AMIClientFactory` for each connection. ``ready`` fires with the client
    once logged in (or fails, and the connection is closed).
    """

    #: Seconds before an action without a complete answer fails with :class:`AMITimeout`.
    ACTION_TIMEOUT = 10.0
    #: Seconds between keepalive pings (0 disables them).
    KEEPALIVE_INTERVAL = 20.0
    #: Seconds a keepalive ping may take before the connection is deemed dead and closed.
    KEEPALIVE_TIMEOUT = 5.0

    _serial = itertools.count(1)

    def __init__(
        self,
        clock: IReactorTime,
        credentials: Credentials | None,
        dispatcher: EventDispatcher | None = None,
        *,
        action_timeout: float | None = None,
        keepalive_interval: float | None = None,
        keepalive_timeout: float | None = None,
        on_sent: Callable[[str, str], object] | None = None,
    ) -> None:
        self.clock = clock
        self.credentials = credentials
        self.dispatcher = dispatcher if dispatcher is not None else EventDispatcher()
        if action_timeout is not None:
            self.ACTION_TIMEOUT = action_timeout
        if keepalive_interval is not None:
            self.KEEPALIVE_INTERVAL = keepalive_interval
        if keepalive_timeout is not None:
            self.KEEPALIVE_TIMEOUT = keepalive_timeout
        self._on_sent = on_sent
        self.transport: Any = None
        self.connected = False
        self.logged_in = False
        self.version: str | None = None
        self.ambiguous_events = 0  # events dropped for repeated identity headers
        self.ready: defer.Deferred[AMIClient] = defer.Deferred()
        self._pending: dict[str, _Pending] = {}
        # ActionIDs are unique per connection and across connections of this process, so an
        # answer meant for an older connection can never be taken for a newer one's.
        self._prefix = f"siaga-{next(self._serial)}-"
        self._ids = itertools.count(1)
        self._keepalive: task.LoopingCall | None = None
        self._lost_callbacks: list[Callable[[AMIClient], object]] = []

    # -- connection life ------------------------------------------------------------------

    def connection_made(self, transport: Any) -> None:
        """The transport is up: log in (when credentials were given)."""
        self.transport = transport
        self.connected = True
        if self.credentials is None:
            self._logged_in()
            return
        self.login(self.credentials).addCallbacks(
            lambda _: self._logged_in(), self._login_failed
        )

    def _logged_in(self) -> None:
        self.logged_in = True
        if self.KEEPALIVE_INTERVAL > 0:
            self._keepalive = task.LoopingCall(self._send_keepalive)
            self._keepalive.clock = self.clock
            self._keepalive.start(self.KEEPALIVE_INTERVAL, now=False).addErrback(
                lambda f: log.failure("AMI keepalive loop stopped", failure=f)
            )
        self.ready.callback(self)

    def _login_failed(self, failure: Failure) -> None:
        log.error("AMI login failed: {error}", error=failure.getErrorMessage())
        if not self.ready.called:
            self.ready.errback(failure)
        if self.connected:
            self.transport.loseConnection()

    def connection_lost(self, reason: Failure) -> None:
        """Fail every pending action with :class:`AMIConnectionLost`; never resend them."""
        self.connected = False
        self.logged_in = False
        if self._keepalive is not None and self._keepalive.running:
            self._keepalive.stop()
        self._keepalive = None
        pending, self._pending = self._pending, {}
        error = AMIConnectionLost(f"AMI connection lost: {reason.getErrorMessage()}")
        for action_id, p in pending.items():
            if p.timer is not None and p.timer.active():
                p.timer.cancel()
            log.info("AMI action {name} ({action_id}) failed: connection lost",
                     name=p.name, action_id=action_id)
            p.deferred.errback(AMIConnectionLost(str(error)))
        if not self.ready.called:
            self.ready.errback(AMIConnectionLost(str(error)))
        for callback in self._lost_callbacks:
            try:
                callback(self)
            except Exception:
                log.failure("AMI connection-lost listener {callback!r} failed",
                            callback=callback)

    def on_connection_lost(self, callback: Callable[[AMIClient], object]) -> None:
        """Call ``callback(client)`` when this connection drops."""
        self._lost_callbacks.append(callback)

    def _send_keepalive(self) -> None:
        def dead(failure: Failure) -> None:
            if failure.check(AMIConnectionLost):
                return  # the connection is already gone; its loss is reported elsewhere
            log.warn("AMI keepalive ping failed ({error}); closing the connection",
                     error=failure.getErrorMessage())
            if self.connected:
                abort = getattr(self.transport, "abortConnection", None)
                (abort or self.transport.loseConnection)()

        self.send_action("Ping", (), self.KEEPALIVE_TIMEOUT).addErrback(dead)

    # -- login --------------------------------------------------------------------------

    def login(self, credentials: Credentials) -> defer.Deferred[Message]:
        """Log in with the MD5 challenge; plaintext only if the credentials allow it and the
        challenge is refused. Fails with :class:`AMIAuthenticationError`."""

        def with_challenge(response: Message) -> defer.Deferred[Message]:
            challenge = response.get("Challenge")
            key = hashlib.md5((challenge + credentials.secret).encode()).hexdigest()
            return self.send_action("Login", {
                "AuthType": "md5", "Username": credentials.username, "Key": key,
            })

        def no_challenge(failure: Failure) -> defer.Deferred[Message] | Failure:
            if not failure.check(AMIActionError) or not credentials.allow_plaintext:
                return failure
            log.warn("AMI MD5 challenge refused; logging in with a plaintext secret")
            return self.send_action("Login", {
                "Username": credentials.username, "Secret": credentials.secret,
            })

        def refused(failure: Failure) -> Failure:
            if failure.check(AMIActionError):
                raise AMIAuthenticationError(
                    f"AMI login as {credentials.username!r} refused: "
                    f"{failure.value.response.get('Message')}"
                )
            return failure

        d = self.send_action("Challenge", {"AuthType": "md5"})
        d.addCallbacks(with_challenge, no_challenge)
        d.addErrback(refused)
        return d

    # -- actions ------------------------------------------------------------------------

    def send_action(
        self,
        name: str,
        fields: Mapping[str, object] | Iterable[tuple[str, object]] = (),
        timeout: float | None = None,
    ) -> defer.Deferred[Any]:
        """Send ``name`` with ``fields``; fires with the response :class:`Message`, or with a
        :class:`ListResult` when Asterisk answers with an EventList.

        Fails with :class:`AMIActionError` (``Response: Error``), :class:`AMITimeout`,
        :class:`AMIConnectionLost`, :class:`AMINotConnected`, or
        :class:`~pbx.ami.protocol.AMIInjectionError` (then nothing is written).
        """
        if not self.connected:
            return defer.fail(AMINotConnected(f"cannot send {name}: not connected"))
        action_id = f"{self._prefix}{next(self._ids)}"
        try:
            data = serialize_action(name, fields, action_id)
        except AMIInjectionError as exc:
            log.warn("AMI action {name} refused: {error}", name=name, error=str(exc))
            return defer.fail(exc)

        def cancel(d: defer.Deferred[Any]) -> None:
            p = self._pending.pop(action_id, None)
            if p is not None and p.timer is not None and p.timer.active():
                p.timer.cancel()

        d: defer.Deferred[Any] = defer.Deferred(cancel)
        pending = _Pending(name, d)
        self._pending[action_id] = pending
        delay = self.ACTION_TIMEOUT if timeout is None else timeout
        pending.timer = self.clock.callLater(delay, self._timed_out, action_id, delay)
        self.transport.write(data)
        if self._on_sent is not None:
            self._on_sent(name, action_id)
        return d

    def _timed_out(self, action_id: str, delay: float) -> None:
        p = self._pending.pop(action_id, None)
        if p is None:
            return
        log.warn("AMI action {name} ({action_id}) timed out after {delay} s",
                 name=p.name, action_id=action_id, delay=delay)
        p.deferred.errback(AMITimeout(f"{p.name} ({action_id}): no answer in {delay} s"))

    def _finish(self, action_id: str, p: _Pending, result: Any = None,
                error: Exception | None = None) -> None:
        del self._pending[action_id]
        if p.timer is not None and p.timer.active():
            p.timer.cancel()
        if error is not None:
            p.deferred.errback(error)
        else:
            p.deferred.callback(result)

    # -- incoming -------------------------------------------------------------------------

    def message_received(self, item: Message | Oversized) -> None:
        """Route one parsed item: answers to their action, other events to subscribers."""
        if isinstance(item, Oversized):
            self._oversized(item)
            return
        if item.unparsed:
            log.warn("AMI lines without 'Key: Value' in {name}: {lines!r}",
                     name=item.name, lines=item.unparsed)
        kind = item.kind
        if kind == "event" and item.ambiguous:
            # A header that says what the event is about came twice: text injected through
            # an unescaped value (a caller ID). Believing either value could forge a channel,
            # a call or a whole event, so the event goes to nobody; the call log still gets
            # the call from CEL, the live model at its next resync.
            self.ambiguous_events += 1
            log.warn("AMI event {name} with repeated {keys}: dropped (injected through a "
                     "caller ID?) {fields!r}", name=item.name[:40], keys=item.ambiguous,
                     fields={k: v[:80] for k, v in list(item.fields.items())[:30]})
            return
        if kind == "event":
            # Events answering a pending list action belong to it, not to subscribers.
            if self._pending:
                action_id = item.fields.get("ActionID")
                if action_id is not None and self._list_item(action_id, item):
                    return
            self.dispatcher.dispatch(item)
        elif kind == "response":
            self._response(item)
        elif kind == "banner":
            self.version = item.name
        else:
            log.warn("AMI message that is neither response nor event: {fields!r}",
                     fields=item.fields)

    def _list_item(self, action_id: str, event: Message) -> bool:
        p = self._pending.get(action_id)
        if p is None or p.response is None:
            return False
        if event.fields.get("EventList") == "Complete" or event.name.endswith("Complete"):
            self._finish(action_id, p, ListResult(p.response, p.events, event))
        else:
            p.events.append(event)
        return True

    def _response(self, response: Message) -> None:
        action_id = response.fields.get("ActionID")
        p = self._pending.get(action_id) if action_id is not None else None
        if p is None:
            # Typically the answer to an action that already timed out.
            log.info("AMI response for no pending action ({action_id}): {message}",
                     action_id=action_id, message=response.get("Message"))
            return
        if response.name == "Error":
            self._finish(action_id, p, error=AMIActionError(p.name, response))
        elif response.fields.get("EventList") == "start":
            p.response = response  # the list follows as events, up to ...Complete
        else:
            self._finish(action_id, p, response)

    def _oversized(self, item: Oversized) -> None:
        log.error("AMI message dropped ({limit}): {head!r}", limit=item.limit, head=item.head)
        p = self._pending.get(item.action_id) if item.action_id else None
        if p is not None and item.action_id is not None:
            self._finish(item.action_id, p,
                         error=AMIMessageTooLarge(f"{p.name}: answer dropped, {item.limit}"))

    @property
    def action_id_prefix(self) -> str:
        """What every ActionID of this connection starts with."""
        return self._prefix

    @property
    def pending_count(self) -> int:
        """How many actions await an answer."""
        return len(self._pending)


class AMIProtocol(Protocol):
    """The Twisted side of one AMI connection: bytes to the parser, messages to the client.

    Set ``MAX_LINE_LENGTH`` / ``MAX_MESSAGE_SIZE`` on a subclass (or instance) to change the
    parser's limits.
    """

    MAX_LINE_LENGTH = AMIParser.MAX_LINE_LENGTH
    MAX_MESSAGE_SIZE = AMIParser.MAX_MESSAGE_SIZE

    def __init__(self, client: AMIClient) -> None:
        self.client = client
        self.parser = AMIParser()
        self.parser.MAX_LINE_LENGTH = self.MAX_LINE_LENGTH
        self.parser.MAX_MESSAGE_SIZE = self.MAX_MESSAGE_SIZE

    def connectionMade(self) -> None:  # noqa: N802 -- Twisted's name
        """Hand the transport to the client, which logs in."""
        self.client.connection_made(self.transport)

    def dataReceived(self, data: bytes) -> None:  # noqa: N802 -- Twisted's name
        """Parse and route; an error in routing is logged and the stream goes on."""
        received = self.client.message_received
        for item in self.parser.feed(data):
            try:
                received(item)
            except Exception:
                log.failure("AMI message handling failed for {item!r}", item=item)

    def connectionLost(self, reason: Failure = Failure(ConnectionError())) -> None:  # noqa: B008,N802
        """Fail what was pending."""
        self.client.connection_lost(reason)


class AMIClientFactory(Factory):
    """Builds an :class:`AMIProtocol` with a fresh :class:`AMIClient` per connection."""

    protocol = AMIProtocol
    noisy = False  # the service logs connections and logins itself

    def __init__(self, make_client: Callable[[], AMIClient]) -> None:
        self.make_client = make_client

    def buildProtocol(self, addr: object) -> AMIProtocol:  # noqa: N802 -- Twisted's name
        """A protocol bound to a new client."""
        proto = self.protocol(self.make_client())
        proto.factory = self
        return proto


def default_retry_policy() -> Callable[[int], float]:
    """Backoff for reconnecting: 0.5 s, doubling, capped at 4 s, plus up to 0.5 s jitter."""
    # backoffPolicy's first delay is initialDelay * factor.
    return backoffPolicy(initialDelay=0.25, maxDelay=4.0, factor=2.0,
                         jitter=lambda: random.uniform(0, 0.5))


class AMIService(Service, AMIActions):
    """A reconnecting, logged-in AMI connection as a ``Service`` for a ``MultiService``.

    Subscriptions (:meth:`subscribe`) survive reconnections. Listeners added with
    :meth:`on_connected` are called with the client after every successful login (the live
    model resyncs there). Actions sent while no connection is logged in fail at once with
    :class:`AMINotConnected`; nothing is queued or resent.
    """

    name = "ami"

    def __init__(
        self,
        clock: IReactorTime,
        endpoint: IStreamClientEndpoint,
        credentials: Credentials,
        *,
        retry_policy: Callable[[int], float] | None = None,
        action_timeout: float | None = None,
        keepalive_interval: float | None = None,
        keepalive_timeout: float | None = None,
        protocol: type[AMIProtocol] = AMIProtocol,
        event_key: EventKey | None = None,
    ) -> None:
        self.clock = clock
        self.endpoint = endpoint
        self.credentials = credentials
        self.dispatcher = EventDispatcher()
        #: The per-boot key the dialplan signs the server's own user events with; set as an
        #: Asterisk global after every login and every reload (reloads clear globals).
        self.event_key = event_key or EventKey()
        for reinstall in ("Reload", "FullyBooted"):
            self.dispatcher.subscribe(reinstall, self._install_event_key)
        self.retry_policy = retry_policy or default_retry_policy()
        self._client_options = {
            "action_timeout": action_timeout,
            "keepalive_interval": keepalive_interval,
            "keepalive_timeout": keepalive_timeout,
        }
        self.factory = AMIClientFactory(self._make_client)
        self.factory.protocol = protocol
        self.client: AMIClient | None = None
        self.connections = 0
        self.sent_actions: list[tuple[str, str]] = []  # (action, ActionID), for auditing
        self._listeners: list[Callable[[AMIClient], object]] = []
        self._waiters: list[defer.Deferred[AMIClient]] = []
        self._login_failures = 0
        self._client_service: ClientService | None = None

    def _make_client(self) -> AMIClient:
        client = AMIClient(self.clock, self.credentials, self.dispatcher,
                           on_sent=self._record_sent, **self._client_options)
        client.ready.addCallbacks(self._logged_in, self._not_logged_in)
        return client

    def _record_sent(self, name: str, action_id: str) -> None:
        # Bounded: enough for tests and debugging to see what went out, never a leak.
        self.sent_actions.append((name, action_id))
        if len(self.sent_actions) > 10_000:
            del self.sent_actions[:5_000]

    def _logged_in(self, client: AMIClient) -> AMIClient:
        self.client = client
        self.connections += 1
        self._login_failures = 0
        client.on_connection_lost(self._lost)
        log.info("AMI logged in as {user} (connection {n}, manager {version})",
                 user=self.credentials.username, n=self.connections, version=client.version)
        self._install_event_key()
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.callback(client)
        for listener in tuple(self._listeners):
            try:
                listener(client)
            except Exception:
                log.failure("AMI on-connected listener {listener!r} failed", listener=listener)
        return client

    def _install_event_key(self, _event: Message | None = None) -> None:
        def failed(failure: Failure) -> None:
            log.warn("Could not hand the dialplan its event key ({error}): the server's "
                     "user events are refused until the next login or reload",
                     error=failure.getErrorMessage())

        self.event_key.install(self).addErrback(failed)

    def _not_logged_in(self, failure: Failure) -> None:
        # The client has logged the reason and closed the connection; ClientService retries.
        # Counting refusals keeps the backoff growing although each TCP connect succeeds.
        if failure.check(AMIAuthenticationError):
            self._login_failures += 1
        else:
            log.info("AMI connection ended before login: {error}",
                     error=failure.getErrorMessage())

    def _retry_delay(self, attempt: int) -> float:
        # ClientService counts failed TCP connects only (and resets on connect); a refused
        # login must also back off, or a wrong secret would hammer Asterisk every half second.
        return self.retry_policy(attempt + self._login_failures)

    def _lost(self, client: AMIClient) -> None:
        if self.client is client:
            self.client = None
            if self.running:
                log.warn("AMI connection lost; reconnecting")

    def startService(self) -> None:  # noqa: N802 -- Twisted's name
        """Start connecting (and reconnecting, with backoff)."""
        super().startService()
        # Login is not done in ClientService's prepareConnection: a connection dropped while
        # that runs trips its state machine (no transition for a disconnect while
        # connecting), so ClientService sees TCP connections and this class tracks logins.
        self._client_service = ClientService(
            self.endpoint, self.factory, retryPolicy=self._retry_delay, clock=self.clock,
        )
        self._client_service.startService()

    def stopService(self) -> defer.Deferred[None]:  # noqa: N802 -- Twisted's name
        """Stop reconnecting and close the connection; fires once it is closed."""
        super().stopService()
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.errback(AMINotConnected("the AMI service stopped"))
        if self._client_service is None:
            return defer.succeed(None)
        return self._client_service.stopService()

    def when_ready(self) -> defer.Deferred[AMIClient]:
        """Fires with the logged-in client: now if there is one, else at the next login."""
        if self.client is not None and self.client.logged_in:
            return defer.succeed(self.client)
        if not self.running:
            return defer.fail(AMINotConnected("the AMI service is not running"))
        d: defer.Deferred[AMIClient] = defer.Deferred()
        self._waiters.append(d)
        return d

    whenConnected = when_ready  # noqa: N815 -- Twisted-style alias

    def on_connected(self, listener: Callable[[AMIClient], object]) -> None:
        """Call ``listener(client)`` after every successful login (first and reconnects)."""
        self._listeners.append(listener)

    def subscribe(self, name: str, callback: EventCallback) -> Callable[[], None]:
        """Subscribe to events named ``name`` (across reconnections)."""
        return self.dispatcher.subscribe(name, callback)

    def subscribe_all(self, callback: EventCallback) -> Callable[[], None]:
        """Subscribe to every event (across reconnections)."""
        return self.dispatcher.subscribe_all(callback)

    def send_action(
        self,
        name: str,
        fields: Mapping[str, object] | Iterable[tuple[str, object]] = (),
        timeout: float | None = None,
    ) -> defer.Deferred[Any]:
        """Send on the current connection; fails with :class:`AMINotConnected` if none."""
        client = self.client
        if client is None or not client.connected:
            return defer.fail(AMINotConnected(f"cannot send {name}: AMI is not connected"))
        return client.send_action(name, fields, timeout)
