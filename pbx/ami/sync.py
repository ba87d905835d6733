"""Keeping a :class:`~pbx.ami.model.LiveModel` current from an :class:`~pbx.ami.client.AMIService`.

Every event goes to the model. After every login, and when Asterisk says ``FullyBooted``
(unless a resync is already running), the model is rebuilt from CoreShowChannels,
BridgeList (+BridgeInfo per bridge), QueueStatus, PJSIPShowEndpoints and DeviceStateList
(the last three optional: a list the AMI user may not read is logged and skipped). Events
that arrive while those lists are being fetched are held and applied after the rebuild, so
none is lost and none is applied to a model about to be replaced.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from pbx.ami.actions import ListResult
from pbx.ami.connection import AMIClient
from pbx.ami.errors import AMIActionError, AMIConnectionLost
from pbx.ami.model import LiveModel
from pbx.ami.protocol import Message
from pbx.ami.service import AMIService

__all__ = ["ModelSync"]

log = Logger(namespace="pbx.ami.sync")


class ModelSync:
    """Feeds ``model`` from ``service`` and resyncs it on (re)connect and FullyBooted."""

    #: Seconds each list action may take (a busy center lists hundreds of channels).
    LIST_TIMEOUT = 30.0

    def __init__(self, service: AMIService, model: LiveModel) -> None:
        self.service = service
        self.model = model
        self.resyncs = 0
        self._held: list[Message] | None = None
        self._running: defer.Deferred[None] | None = None
        self._listeners: list[Callable[[LiveModel], object]] = []
        self._refused: set[str] = set()  # lists this AMI user may not read
        service.subscribe_all(self._event)
        service.on_connected(self._connected)

    def on_resynced(self, listener: Callable[[LiveModel], object]) -> None:
        """Call ``listener(model)`` after each completed resync."""
        self._listeners.append(listener)

    @property
    def resyncing(self) -> bool:
        """True while the lists are being fetched."""
        return self._running is not None

    def _event(self, event: Message) -> None:
        if self._held is not None:
            self._held.append(event)
        else:
            self.model.handle(event)
        if event.name == "FullyBooted" and self._running is None:
            client = self.service.client
            if client is not None and self.resyncs > 0:
                # Asterisk finished booting after we logged in: what we listed may be partial.
                self.resync(client)

    def _connected(self, client: AMIClient) -> None:
        self.resync(client)

    def resync(self, client: AMIClient) -> defer.Deferred[None]:
        """Rebuild the model from Asterisk's lists; fires when done (never fails: a failed
        resync is logged and the model keeps following events)."""
        if self._running is not None:
            return self._chained(self._running)
        self._held = []
        timeout = self.LIST_TIMEOUT

        def optional(ask: Callable[..., defer.Deferred[ListResult]],
                     what: str) -> defer.Deferred[Any]:
            # A list the AMI user may not read (permission) must not stop the others; it is
            # not asked for again (the center's least-privilege user is refused
            # PJSIPShowEndpoints by design; device states and events stand in for it).
            if what in self._refused:
                return defer.succeed(None)

            def refused(failure: Failure) -> None:
                failure.trap(AMIActionError)
                self._refused.add(what)
                log.info("AMI resync: {what} refused ({error}); kept from events from now on",
                         what=what, error=failure.getErrorMessage())
                return None

            return ask(timeout=timeout).addErrback(refused)

        lists = defer.gatherResults(
            [
                client.coreshowchannels(timeout=timeout),
                client.bridgelist(timeout=timeout),
                optional(client.queuestatus, "QueueStatus"),
                optional(client.pjsipshowendpoints, "PJSIPShowEndpoints"),
                optional(client.devicestatelist, "DeviceStateList"),
            ],
            consumeErrors=True,
        )
        lists.addCallback(self._with_bridge_members, client, timeout)
        lists.addCallbacks(self._rebuild, self._failed)
        lists.addBoth(self._done)
        self._running = lists
        return self._chained(lists)

    @staticmethod
    def _chained(d: defer.Deferred[None]) -> defer.Deferred[None]:
        mine: defer.Deferred[None] = defer.Deferred()

        def relay(result: object) -> object:
            mine.callback(None)
            return result

        d.addBoth(relay)
        return mine

    def _with_bridge_members(self, results: list[Any], client: AMIClient, timeout: float
                             ) -> defer.Deferred[tuple[list[Any], dict[str, list[Message]]]]:
        bridges: ListResult = results[1]
        ids = [e.get("BridgeUniqueid") for e in bridges.events]

        def members(bridge_id: str) -> defer.Deferred[list[Message]]:
            d = client.bridgeinfo(bridge_id, timeout=timeout)

            def gone(failure: Failure) -> list[Message]:
                # The bridge ended between BridgeList and BridgeInfo.
                failure.trap(AMIActionError)
                return []

            return d.addCallbacks(lambda r: r.events, gone)

        gathered = defer.gatherResults([members(i) for i in ids], consumeErrors=True)
        return gathered.addCallback(lambda found: (results, dict(zip(ids, found, strict=True))))

    def _rebuild(self, fetched: tuple[list[Any], dict[str, list[Message]]]) -> bool:
        results, bridge_members = fetched
        channels, bridges, queues, endpoints, device_states = results
        if endpoints is None and device_states is None:
            kept = dict(self.model.endpoints)
        self.model.resync(
            channels.events,
            bridges.events,
            bridge_members,
            queues.events if queues is not None else (),
            endpoints.events if endpoints is not None else (),
            device_states.events if device_states is not None else (),
        )
        if endpoints is None and device_states is None:
            self.model.endpoints = kept
        if queues is None:
            log.warn("AMI resync without QueueStatus: queues start empty")
        self.resyncs += 1
        log.info("AMI model resynced: {channels} channels, {bridges} bridges",
                 channels=len(self.model.channels), bridges=len(self.model.bridges))
        return True

    def _failed(self, failure: Failure) -> bool:
        error = failure.value.subFailure if isinstance(failure.value, defer.FirstError) \
            else failure
        if error.check(AMIConnectionLost):
            log.warn("AMI resync interrupted: connection lost (next login resyncs)")
        else:
            log.failure("AMI resync failed; the model keeps following events", failure=error)
        return False

    def _done(self, succeeded: object) -> None:
        held, self._held = self._held or [], None
        self._running = None
        for event in held:
            try:
                self.model.handle(event)
            except Exception:
                log.failure("live model failed on held {name} event", name=event.name)
        if succeeded is not True:
            return
        for listener in tuple(self._listeners):
            try:
                listener(self.model)
            except Exception:
                log.failure("resync listener {listener!r} failed", listener=listener)
