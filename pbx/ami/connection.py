"""One AMI connection: the Twisted protocol, and the client that logs in and correlates.

* :class:`AMIProtocol` is a thin Twisted ``Protocol``: it feeds bytes to the sans-IO
  :class:`~pbx.ami.protocol.AMIParser` and hands each message to its :class:`AMIClient`.
* :class:`AMIClient` is one logged-in connection: one Deferred per ActionID with a timeout,
  EventList actions collected up to their ``...Complete`` event, MD5 challenge login,
  keepalive pings, and other events handed to an
  :class:`~pbx.ami.events.EventDispatcher`. When the connection drops, every pending action
  fails with :class:`~pbx.ami.errors.AMIConnectionLost`; nothing is ever resent on its own,
  so a reconnect cannot repeat an Originate.

Time comes from the ``IReactorTime`` passed in; nothing here imports the global reactor.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from twisted.internet import defer, task
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from pbx.ami.actions import AMIActions, ListResult
from pbx.ami.errors import (
    AMIActionError,
    AMIAuthenticationError,
    AMIConnectionLost,
    AMIMessageTooLarge,
    AMINotConnected,
    AMITimeout,
)
from pbx.ami.events import EventDispatcher
from pbx.ami.protocol import AMIInjectionError, AMIParser, Message, Oversized, serialize_action

log = Logger(namespace="pbx.ami")


@dataclass(frozen=True)
class Credentials:
    """An AMI user. Plaintext login is used only when ``allow_plaintext`` and the MD5
    challenge is refused."""

    username: str
    secret: str
    allow_plaintext: bool = False

    def __repr__(self) -> str:  # the secret never reaches a log line
        return f"Credentials(username={self.username!r}, allow_plaintext={self.allow_plaintext})"


class _Pending:
    __slots__ = ("name", "deferred", "timer", "response", "events")

    def __init__(self, name: str, deferred: defer.Deferred[Any]) -> None:
        self.name = name
        self.deferred = deferred
        self.timer: Any = None
        self.response: Message | None = None
        self.events: list[Message] = []


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
