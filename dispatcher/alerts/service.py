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
import re
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from dialplans import contract
from dispatcher.alerts import enrolment, storage
from dispatcher.alerts.auth import REPLAY_WINDOW, Authenticator, DeviceCredentials
from dispatcher.alerts.buttons import ButtonWatcher
from dispatcher.alerts.callback import CallbackDialer, DialerSettings
from dispatcher.alerts.errors import (
    AlertsError,
    CredentialsRevoked,
    EnrolmentLinkSpent,
    InvalidField,
    NotAllowed,
    NotFound,
    RateLimited,
    StorageUnavailable,
    TransitionRefused,
)
from dispatcher.alerts.feed import IncidentFeed
from dispatcher.alerts.incident import FINAL_STATES, IncidentInput, InvalidTransition
from dispatcher.alerts.intake import (
    MAX_BODY_BYTES,
    parse_json_object,
    validate_alert,
    validate_identifier,
)
from dispatcher.alerts.ratelimit import RateLimiter
from dispatcher.config import Center

__all__ = ["AlertAccepted", "AlertBatcher", "AlertCounts", "AlertService", "AlertSettings"]

log = Logger(namespace="dispatcher.alerts")

Runner = Callable[..., "Deferred[Any]"]


@dataclass(frozen=True)
class AlertSettings:
    """Limits and timings of alert intake and callbacks (defaults suit a city center)."""

    rate_burst: float = 10.0  # alerts a device may send at once
    rate_per_second: float = 0.2  # then one every 5 s
    replay_window: float = REPLAY_WINDOW
    device_cache_seconds: float = 10.0  # a revoked device is refused at commit anyway
    # Failed or unauthenticated attempts one source address may make (then one per 2 s)
    # before it is answered 429 without its device being looked up.
    failure_burst: float = 20.0
    failure_per_second: float = 0.5
    max_body_bytes: int = MAX_BODY_BYTES
    dialer: DialerSettings = field(default_factory=DialerSettings)
    # Group commit of alerts (AlertBatcher): at most this many per transaction.
    commit_batch: int = 500
    # The center's master key, from which devices' HMAC keys are derived.
    master_key: bytes = field(default=b"", repr=False)

    @classmethod
    def for_center(cls, center: Center, master_key: bytes) -> AlertSettings:
        """The center's settings: a callback dials out through the trunk; without one (a
        test center) the number is dialled as a local endpoint."""
        dial = "PJSIP/{number}@trunk" if center.trunk else "PJSIP/{number}"
        return cls(dialer=DialerSettings(citizen_dial=dial), master_key=master_key)


@dataclass
class AlertCounts:
    """Alerts seen since start (metrics): received, stored, retries of a stored one, and
    refusals by error code."""

    received: int = 0
    committed: int = 0
    duplicates: int = 0
    refused: dict[str, int] = field(default_factory=dict)

    def count(self, result: Any) -> Any:
        """Count one alert's outcome (an AlertAccepted, or a Failure); pass it on unchanged."""
        if isinstance(result, Failure):
            code = result.value.code if isinstance(result.value, AlertsError) else "error"
            self.refused[code] = self.refused.get(code, 0) + 1
        elif result.created:
            self.committed += 1
        else:
            self.duplicates += 1
        return result


@dataclass(frozen=True)
class AlertAccepted:
    """An alert taken: its incident and the incident's state; ``created`` False when the
    alert was stored before (a retry of the same ``alert_id``)."""

    alert_id: str
    incident_id: int
    state: str
    created: bool


class AlertService(Service):
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

    # -- alert intake --------------------------------------------------------------------

    def lookup_device(self, device_id: str) -> Deferred[DeviceCredentials | None]:
        """The device's credentials, from a short-lived cache or the database."""
        now = self.clock.seconds()
        cached = self._devices.get(device_id)
        if cached is not None and cached[0] > now:
            return succeed(cached[1])

        def keep(device: DeviceCredentials | None) -> DeviceCredentials | None:
            if len(self._devices) > 100_000:
                self._devices.clear()
            self._devices[device_id] = (self.clock.seconds()
                                        + self.settings.device_cache_seconds, device)
            return device

        return self.read(storage.device_credentials, device_id).addCallback(keep)

    def post_alert(self, headers: Mapping[str, str | None], body: bytes,
                   source: str | None = None) -> Deferred[AlertAccepted]:
        """Take one alert; fires with an :class:`AlertAccepted` (or fails with an
        :class:`~dispatcher.alerts.errors.AlertsError`).

        Order: the source's failed attempts → credentials' form → body → device id →
        the device's row → credentials → the device's rate limit → fields → commit.
        Nothing before the device's row reads the database, and a source (an IP address)
        that keeps failing is answered 429 before that read too (unless the device proved
        itself before: then its known credentials are checked, still without a read):
        guessing devices or tokens costs the center no database work. The device's rate
        limit comes after authentication so nobody can use up a device's allowance in its
        name.
        """
        self.counts.received += 1
        return self._post_alert(headers, body, source).addBoth(self.counts.count)

    def _post_alert(self, headers: Mapping[str, str | None], body: bytes,
                    source: str | None) -> Deferred[AlertAccepted]:
        now = self.clock.seconds()
        wait = self.failures.wait(source, now) if source is not None else 0.0
        try:
            self.auth.precheck(headers, now)
            document = parse_json_object(body, self.settings.max_body_bytes)
            if "device_id" not in document:
                raise InvalidField("missing_field", "device_id is required")
            device_id = validate_identifier(document["device_id"], "device_id")
        except AlertsError as exc:
            return self._refused_before_lookup(exc, wait, source)
        d = self._credentials_of(device_id, wait)
        d.addCallback(self._checked, headers, body, source)
        d.addCallback(self._authenticated, document)
        return d

    def _refused_before_lookup(self, exc: AlertsError, wait: float,
                               source: str | None) -> Deferred[Any]:
        """A request refused before any database read: an address already over its
        budget hears 429, anyone else the reason, which counts against the address."""
        if wait > 0:
            return _failed(self._too_many_failures(wait))
        self._failed_attempt(source)
        return _failed(exc)

    def _credentials_of(self, device_id: str, wait: float
                        ) -> Deferred[DeviceCredentials | None]:
        """The credentials to check a request against. From an address that keeps failing
        there is no read: it may be a carrier's NAT that real panic apps share with the
        attacker, so a device that proved itself before is still checked, against the
        credentials it proved itself with (the commit refuses a device revoked since);
        anyone else waits (429)."""
        if wait > 0:
            known = self._known.get(device_id)
            if known is None:
                return _failed(self._too_many_failures(wait))
            return succeed(known)
        return self.lookup_device(device_id)

    def _too_many_failures(self, wait: float) -> RateLimited:
        return RateLimited("rate_limited", f"too many failed attempts from this address; "
                           f"retry in {wait:.0f} s", self.failures.retry_after(wait))

    def _failed_attempt(self, source: str | None) -> None:
        if source is not None:
            self.failures.take(source, self.clock.seconds())

    def _checked(self, device: DeviceCredentials | None, headers: Mapping[str, str | None],
                 body: bytes, source: str | None) -> DeviceCredentials:
        try:
            device = self.auth.check(device, headers, body, self.clock.seconds())
        except AlertsError:
            self._failed_attempt(source)
            raise
        self._known[device.device_id] = device
        self._known.move_to_end(device.device_id)
        while len(self._known) > self.max_known_devices:
            self._known.popitem(last=False)
        return device

    def _authenticated(self, device: DeviceCredentials, document: dict[str, Any]
                       ) -> Deferred[AlertAccepted]:
        now = self.clock.seconds()
        wait = self.limiter.take(device.device_id, now)
        if wait > 0:
            raise RateLimited("rate_limited", f"too many alerts from this device; retry in "
                              f"{wait:.0f} s", self.limiter.retry_after(wait))
        if device.kind != "app":
            raise NotAllowed("forbidden", "this device may not post alerts")
        request = validate_alert(document, self._now())
        if request.callback_number is None and device.callback_number is None:
            raise InvalidField("missing_field", "callback_number is required (the device "
                               "has no default number)")
        d = self._batcher.add(request, device)
        d.addCallbacks(self._committed, self._not_committed, callbackArgs=(request,))
        return d

    def _committed(self, receipt: storage.AlertReceipt, request: Any) -> AlertAccepted:
        accepted = AlertAccepted(request.alert_id, receipt.incident_id, receipt.state,
                                 receipt.created)
        if not receipt.created:
            return accepted
        extra: dict[str, Any] = {"type": request.type, "device_id": request.device_id}
        if request.location is not None:
            extra.update(lat=request.location.lat, lon=request.location.lon)
        self.feed.publish(receipt.incident_id, receipt.state, "alert_received", **extra)
        if receipt.callback is not None and self.dialer is not None:
            self.dialer.submit(receipt.callback)
        return accepted

    def _not_committed(self, failure: Failure) -> Failure:
        if failure.check(storage.DeviceChanged):
            self._devices.pop(str(failure.value), None)
            self._known.pop(str(failure.value), None)
            raise CredentialsRevoked("invalid_credentials", "unknown device or wrong credentials")
        if failure.check(storage.NoCallbackNumber):
            raise InvalidField("missing_field", "callback_number is required (the device has "
                               "no default number)")
        log.failure("an alert could not be stored", failure)
        raise StorageUnavailable("storage_unavailable", "the alert could not be stored; retry "
                                 "with the same alert_id", retry_after=1)

    # -- panic apps: enrolment and their own alert's status --------------------------------

    def enrol(self, body: bytes, source: str | None = None) -> Deferred[dict[str, Any]]:
        """``POST /api/v1/enrol``: spend a one-time code, fire with the device's credential.

        A refused code counts as a failed attempt of the source, like a wrong token: an
        address that keeps guessing is answered 429 before any database work.
        """
        now = self.clock.seconds()
        wait = self.failures.wait(source, now) if source is not None else 0.0
        if wait > 0:
            return _failed(self._too_many_failures(wait))
        try:
            document = parse_json_object(body, 1024)
            unknown = sorted(set(document) - {"code"})
            if unknown:
                raise InvalidField("unknown_field", f"unknown field(s): {', '.join(unknown)}")
            code = document.get("code")
            if not isinstance(code, str) or not re.match(enrolment.CODE_RE_TEXT, code):
                raise InvalidField("invalid_field", "code must be the enrolment code of the "
                                   "link (16 to 64 letters, digits, '-' or '_')")
        except AlertsError as exc:
            self._failed_attempt(source)
            return _failed(exc)
        d = self.write(enrolment.exchange_code, code, self._now())

        def enrolled(result: enrolment.Enrolled) -> dict[str, Any]:
            # The device's cached row (no credential yet) must not outlive its new token.
            self._devices.pop(result.device_id, None)
            self._known.pop(result.device_id, None)
            log.info("device {device} enrolled by its one-time link", device=result.device_id)
            return {"device_id": result.device_id, "token": result.token,
                    "callback_number": result.callback_number, "label": result.label}

        def refused(failure: Failure) -> None:
            if not failure.check(enrolment.EnrolmentRefused):
                log.failure("an enrolment could not be stored", failure)
                raise StorageUnavailable("storage_unavailable", "the enrolment could not be "
                                         "stored; try the link again", retry_after=1)
            self._failed_attempt(source)
            reason = failure.value.reason
            if reason == "used":
                raise EnrolmentLinkSpent("code_used", "this enrolment link was already used: "
                                         "ask the center for a new one")
            if reason == "expired":
                raise EnrolmentLinkSpent("code_expired", "this enrolment link has expired: "
                                         "ask the center for a new one")
            raise NotAllowed("invalid_code", "this enrolment code is not valid")

        return d.addCallbacks(enrolled, refused)

    def alert_status(self, headers: Mapping[str, str | None], alert_id: str,
                     source: str | None = None) -> Deferred[dict[str, Any]]:
        """``GET /api/v1/alerts/{alert_id}``: the state of the device's own alert.

        The device names itself in ``X-Siaga-Device`` and proves it as for ``POST``
        (token, or a signature over the empty body); another device's alert id answers
        404 as an unknown one does, so nothing tells it that alert exists.
        """
        now = self.clock.seconds()
        wait = self.failures.wait(source, now) if source is not None else 0.0
        try:
            self.auth.precheck(headers, now)
            device_id = validate_identifier(headers.get("x-siaga-device"), "X-Siaga-Device")
            validate_identifier(alert_id, "alert_id")
        except AlertsError as exc:
            return self._refused_before_lookup(exc, wait, source)
        d = self._credentials_of(device_id, wait)
        d.addCallback(self._checked, headers, b"", source)

        def read(device: DeviceCredentials) -> Deferred[dict[str, Any]]:
            return self.read(enrolment.alert_status, device.pk, alert_id)

        def found(document: dict[str, Any] | None) -> dict[str, Any]:
            if document is None:
                raise NotFound("not_found", "this device sent no alert with this id")
            return document

        return d.addCallback(read).addCallback(found)

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


class AlertBatcher:
    """Commits alerts in batches (group commit): whatever arrived while the previous batch
    was being written goes in the next one (``storage.commit_alerts``), and each alert's
    Deferred fires only once its batch is committed, so a 201 is never sent for an alert
    that is not durable. A batch that fails fails every alert in it. A lone alert is written
    at once; under load, batches grow by themselves and the cost per alert falls.
    ``max_batch`` 1 writes one alert per transaction (the benchmark's baseline)."""

    def __init__(self, write: Runner, now: Callable[[], dt.datetime], max_batch: int = 500
                 ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.write = write
        self.now = now
        self.max_batch = max_batch
        self.queue: list[tuple[Any, DeviceCredentials, Deferred[Any]]] = []
        self.in_flight = False
        self.batches = 0

    def add(self, request: Any, device: DeviceCredentials) -> Deferred[storage.AlertReceipt]:
        """Queue an alert; fires with its receipt once committed (or fails)."""
        d: Deferred[storage.AlertReceipt] = Deferred()
        self.queue.append((request, device, d))
        if not self.in_flight:
            self._flush()
        return d

    def _flush(self) -> None:
        batch, self.queue = self.queue[: self.max_batch], self.queue[self.max_batch:]
        self.in_flight = True
        self.batches += 1
        d = self.write(storage.commit_alerts, [(r, dev) for r, dev, _ in batch], self.now())

        def done(results: list[Any]) -> None:
            for (_, _, waiter), result in zip(batch, results, strict=True):
                if isinstance(result, Exception):
                    waiter.errback(result)
                else:
                    waiter.callback(result)

        def failed(failure: Failure) -> None:
            for _, _, waiter in batch:
                waiter.errback(failure)

        def next_batch(_: object) -> None:
            self.in_flight = False
            if self.queue:
                self._flush()

        d.addCallbacks(done, failed)
        d.addBoth(next_batch)


def _failed(exc: Exception) -> Deferred[Any]:
    d: Deferred[Any] = Deferred()
    d.errback(exc)
    return d
