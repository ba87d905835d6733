"""The reconnecting AMI connection the server runs, as a Twisted ``Service``."""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from twisted.application.internet import ClientService, backoffPolicy
from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime, IStreamClientEndpoint
from twisted.logger import Logger
from twisted.python.failure import Failure

from pbx.ami.actions import AMIActions
from pbx.ami.attribution import EventKey
from pbx.ami.connection import AMIClient, AMIClientFactory, AMIProtocol, Credentials
from pbx.ami.errors import AMIAuthenticationError, AMINotConnected
from pbx.ami.events import EventCallback, EventDispatcher
from pbx.ami.protocol import Message

log = Logger(namespace="pbx.ami")


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
        # (action, ActionID) of the latest actions, for auditing: a fixed ring, so its
        # memory is reached within minutes and stays flat for the server's life.
        self.sent_actions: deque[tuple[str, str]] = deque(maxlen=2_000)
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
        self.sent_actions.append((name, action_id))

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
