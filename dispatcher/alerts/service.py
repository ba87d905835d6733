"""The alert service: from a request's body to a committed incident and an operator-first callback.

:class:`AlertService` is HTTP-agnostic (``dispatcher.api`` turns requests into calls to it and
its refusals, :mod:`dispatcher.alerts.errors`, into statuses) and IO-agnostic: it gets

* ``clock`` (``IReactorTime``): every time it uses;
* ``write(fn, *args)``: run ``fn(session, *args)`` in one transaction off the reactor thread and
  fire with its result once committed (``CallLogWriter.submit``);
* ``read(fn, *args)``: the same for reads (a thread pool: ``dispatcher.pools.ReadPool``);
* ``ami``: an ``AMIService`` (originate, subscribe), or None to take alerts without calling
  back (callbacks then wait in the database for a server with AMI).

Durable before acknowledged: ``post_alert`` fires only after the writer committed the alert,
its incident and the callback owed; at start-up every callback still owed is resumed.
"""

from __future__ import annotations

import datetime as dt
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from dialplans import contract
from dispatcher.alerts import storage
from dispatcher.alerts.auth import Authenticator, DeviceCredentials
from dispatcher.alerts.batcher import AlertBatcher, Runner
from dispatcher.alerts.buttons import ButtonWatcher
from dispatcher.alerts.callback import CallbackDialer
from dispatcher.alerts.devices import DeviceVerbs
from dispatcher.alerts.errors import NotFound, StorageUnavailable, TransitionRefused
from dispatcher.alerts.feed import IncidentFeed
from dispatcher.alerts.incident import FINAL_STATES, IncidentInput, InvalidTransition
from dispatcher.alerts.outcomes import AlertAccepted, AlertCounts
from dispatcher.alerts.ratelimit import RateLimiter
from dispatcher.alerts.settings import AlertSettings
from dispatcher.config.model import Center

# The service's verbs for devices (intake, enrolment, an alert's status) live in
# dispatcher.alerts.devices; its settings, outcomes and group commit in their own modules.
# Their names stay importable from here.
__all__ = ["AlertAccepted", "AlertBatcher", "AlertCounts", "AlertService", "AlertSettings"]

log = Logger(namespace="dispatcher.alerts")


class AlertService(DeviceVerbs, Service):
    """Alert intake, incidents' state changes, callbacks and buttons (see the module doc)."""

    name = "alerts"
    max_known_devices = 100_000

    def __init__(self, clock: IReactorTime, write: Runner, read: Runner, ami: Any = None,
                 settings: AlertSettings | None = None,
                 buttons: Iterable[tuple[str, str, float, float]] = (),
                 panic_number: str | None = None) -> None:
        self.clock = clock
        self.write = write
        self.read = read
        self.ami = ami
        self.settings = settings or AlertSettings()
        self.buttons = tuple(buttons)
        self.auth = Authenticator(self.settings.replay_window,
                                  master_key=self.settings.master_key)
        self.limiter = RateLimiter(self.settings.rate_burst, self.settings.rate_per_second)
        self.failures = RateLimiter(self.settings.failure_burst,
                                    self.settings.failure_per_second)
        self.feed = IncidentFeed(clock)
        self._devices: dict[str, tuple[float, DeviceCredentials | None]] = {}
        # Devices that authenticated since start (most recent last), for failing addresses.
        self._known: OrderedDict[str, DeviceCredentials] = OrderedDict()
        self.dialer: CallbackDialer | None = None
        self.watcher: ButtonWatcher | None = None
        self._unsubscribe: list[Callable[[], None]] = []
        self._logins_watched = False
        self.ready: Deferred[None] | None = None
        self._batcher = AlertBatcher(write, self._now, self.settings.commit_batch)
        self.counts = AlertCounts()
        if ami is not None:
            self.dialer = CallbackDialer(clock, ami, self.settings.dialer, self.report,
                                         self._callback_state, self._citizen_missed)
            if panic_number is not None:
                self.watcher = ButtonWatcher(panic_number, [b[0] for b in self.buttons],
                                             self._open_button_incident, self.report,
                                             self._tag_button_call)

    @classmethod
    def for_center(cls, clock: IReactorTime, center: Center, write: Runner, read: Runner,
                   ami: Any = None, settings: AlertSettings | None = None) -> AlertService:
        """The alert service of ``center``: its buttons and panic number from the config."""
        return cls(clock, write, read, ami, settings,
                   buttons=[(b.extension, b.name, b.lat, b.lon) for b in center.buttons],
                   panic_number=center.panic_number)

    def _now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.clock.seconds(), dt.UTC)

    # -- lifecycle -----------------------------------------------------------------------

    def startService(self) -> None:  # noqa: N802 -- Twisted's name
        """Subscribe to AMI, make the buttons' device rows, resume callbacks still owed; after
        every AMI login, look for button calls already in progress (``ButtonWatcher``)."""
        super().startService()
        if self.ami is not None:
            subs = []
            if self.dialer is not None:
                subs += [("OriginateResponse", self.dialer.on_originate_response),
                         ("UserEvent", self.dialer.on_user_event),
                         ("Hangup", self.dialer.on_hangup)]
            if self.watcher is not None:
                subs += [("Newchannel", self.watcher.on_newchannel),
                         ("Newexten", self.watcher.on_newchannel),
                         ("QueueCallerJoin", self.watcher.on_queue_join),
                         ("AgentConnect", self.watcher.on_agent_connect),
                         ("QueueCallerAbandon", self.watcher.on_queue_abandon),
                         ("Hangup", self.watcher.on_hangup)]
            self._unsubscribe = [self.ami.subscribe(name, cb) for name, cb in subs]
        d: Deferred[Any] = succeed(None)
        if self.buttons:
            d = self.write(storage.sync_buttons, list(self.buttons), self._now())
        on_connected = getattr(self.ami, "on_connected", None)
        if (self.watcher is not None or self.dialer is not None) and on_connected is not None:
            # After the buttons' rows are written (or failed to be: logged below), so that
            # a button call found at login can open its incident.
            def watch_logins(result: Any) -> Any:
                self._watch_logins(on_connected)
                return result

            d.addBoth(watch_logins)
        d.addCallback(lambda _: self._recover_until_done())
        d.addErrback(self._log_failure, "start-up (buttons, pending callbacks)")
        self.ready = d

    def _recover_until_done(self, delay: float = 5.0) -> Deferred[Any]:
        # Owed callbacks must not wait for the next restart because AMI or the database
        # hiccuped at start-up: try again until it works (or the service stops).
        d = self.recover()

        def again(failure: Failure) -> None:
            self._log_failure(failure, f"resuming owed callbacks (again in {delay:g} s)")
            if self.running:
                self.clock.callLater(delay, self._recover_until_done, delay)

        return d.addErrback(again)

    def stopService(self) -> None:  # noqa: N802 -- Twisted's name
        """Unsubscribe and stop the dialer's timers (owed callbacks stay in the database)."""
        super().stopService()
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe = []
        if self.dialer is not None:
            self.dialer.stop()

    def recover(self) -> Deferred[int]:
        """Resume every callback the database says is owed; fires with how many."""
        if self.dialer is None:
            return succeed(0)

        def live_channels(jobs: list[storage.CallbackJob]) -> Deferred[Any]:
            if not jobs:
                return succeed((jobs, []))
            # A callback the dead process had originated may still be ringing or talking:
            # look before ringing an operator again.
            when_ready = getattr(self.ami, "when_ready", None)
            d = when_ready() if when_ready is not None else succeed(None)
            d.addCallback(lambda _: self.ami.coreshowchannels())
            d.addCallback(lambda result: (jobs, [e.get("Uniqueid") for e in result.events]))
            return d

        def resume(found: tuple[list[storage.CallbackJob], list[str]]) -> int:
            jobs, channels = found
            for job in jobs:
                log.info("resuming the callback of incident {incident}",
                         incident=job.incident_id)
                assert self.dialer is not None
                self.dialer.resume(job, channels)
            return len(jobs)

        d = self.read(storage.pending_callbacks)
        d.addCallback(live_channels)
        return d.addCallback(resume)

    # -- incidents -----------------------------------------------------------------------

    def incident(self, incident_id: int) -> Deferred[dict[str, Any] | None]:
        """The incident's document for operators, or None."""
        return self.read(storage.incident_document, incident_id)

    def report(self, incident_id: int, what: IncidentInput, detail: str = "",
               operator: str | None = None, agency: str | None = None
               ) -> Deferred[storage.TransitionResult | None]:
        """Record an input to an incident; publish the change. Refused pairs are logged."""
        d = self.write(storage.transition, incident_id, what, self._now(), detail, operator,
                       agency)

        def done(result: storage.TransitionResult) -> storage.TransitionResult:
            self.feed.publish(incident_id, result.to_state, what.value, detail=detail,
                              operator=operator, agency=agency)
            if result.to_state in FINAL_STATES and self.dialer is not None:
                self.dialer.cancel(incident_id)
            return result

        def refused(failure: Failure) -> None:
            if failure.check(InvalidTransition, LookupError):
                log.error("incident {incident}: {what} refused: {error}",
                          incident=incident_id, what=what.value,
                          error=failure.getErrorMessage())
            else:
                log.failure("incident {incident}: {what} could not be recorded", failure,
                            incident=incident_id, what=what.value)
            return None

        return d.addCallbacks(done, refused)

    def operator_input(self, incident_id: int, what: IncidentInput, detail: str = "",
                       agency: str | None = None) -> Deferred[storage.TransitionResult]:
        """An operator's action on an incident; fails with an AlertsError when refused."""
        d = self.write(storage.transition, incident_id, what, self._now(), detail, None, agency)

        def done(result: storage.TransitionResult) -> storage.TransitionResult:
            self.feed.publish(incident_id, result.to_state, what.value, detail=detail,
                              agency=agency)
            if result.to_state in FINAL_STATES and self.dialer is not None:
                self.dialer.cancel(incident_id)
            return result

        def refused(failure: Failure) -> None:
            if failure.check(InvalidTransition):
                raise TransitionRefused("invalid_transition", failure.getErrorMessage())
            if failure.check(LookupError):
                raise NotFound("not_found", f"no incident {incident_id}")
            log.failure("incident {incident}: operator input failed", failure,
                        incident=incident_id)
            raise StorageUnavailable("storage_unavailable", "the change could not be stored")

        return d.addCallbacks(done, refused)

    def _callback_state(self, callback_id: int, state: str) -> None:
        d = self.write(storage.set_callback, callback_id, state, self._now())
        d.addErrback(self._log_failure, f"callback {callback_id} -> {state}")

    def _citizen_missed(self, callback_id: int) -> None:
        d = self.write(storage.citizen_no_answer, callback_id, self._now())
        d.addErrback(self._log_failure, f"callback {callback_id}: count a missed attempt")

    # -- buttons -------------------------------------------------------------------------

    def _open_button_incident(self, extension: str, linkedid: str
                              ) -> Deferred[tuple[int, str]]:
        d = self.write(storage.commit_button_call, extension, linkedid, self._now())

        def opened(receipt: storage.AlertReceipt) -> tuple[int, str]:
            if receipt.created:
                self.feed.publish(receipt.incident_id, receipt.state, "button_pressed",
                                  device_id=storage.button_device_id(extension))
            return receipt.incident_id, receipt.state

        return d.addCallback(opened)

    def _watch_logins(self, on_connected: Callable[[Callable[[Any], object]], object]) -> None:
        # What happened while AMI was away reached nobody: button calls that began before
        # this login sent their Newchannel to no one, and a callback's call may have ended
        # unseen. After each login the channel list tells both.
        if not self._logins_watched:  # once: AMIService has no way to remove a listener
            self._logins_watched = True
            on_connected(self._after_login)
        client = getattr(self.ami, "client", None)
        if client is not None and getattr(client, "logged_in", False):
            self._after_login(client)  # logged in before this service started

    def _after_login(self, client: Any) -> None:
        if not self.running:
            return  # AMIService keeps its listeners; this one outlives a stopped service
        watcher, dialer = self.watcher, self.dialer
        # Callbacks in Asterisk now: taken before asking, so one started after the login
        # is not judged by a list that predates it.
        in_flight = dialer.in_flight() if dialer is not None else []

        def listed(result: Any) -> None:
            if watcher is not None:
                watcher.on_channels(result.events)
            if dialer is not None and in_flight:
                dialer.check_live(in_flight, {e.get("Uniqueid") for e in result.events})

        d = client.coreshowchannels()
        d.addCallback(listed)
        d.addErrback(self._log_failure, "listing channels after AMI login")

    def _tag_button_call(self, incident_id: int, channel: str) -> None:
        # The call log links the call to its incident through this inherited variable.
        if self.ami is None:
            return
        d = self.ami.setvar(contract.INHERIT + contract.VAR_INCIDENT, incident_id, channel)
        d.addErrback(self._log_failure, f"tagging {channel} with incident {incident_id}")

    def _log_failure(self, failure: Failure, what: str) -> None:
        log.failure("alerts: {what} failed", failure, what=what)
