"""The alert service's verbs for panic apps and buttons' devices: taking an alert
(``post_alert``), enrolment by a one-time link (``enrol``) and a device's own alert's status
(``alert_status``).

A mixin of :class:`dispatcher.alerts.service.AlertService`, which holds the state it uses.
Nothing before a device's row reads the database; a source that keeps failing is answered
429 before that read too.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from dispatcher.alerts import enrolment, storage
from dispatcher.alerts.auth import Authenticator, DeviceCredentials, signature_digest
from dispatcher.alerts.batcher import AlertBatcher, Runner, failed
from dispatcher.alerts.callback import CallbackDialer
from dispatcher.alerts.errors import (
    AlertsError,
    CredentialsRevoked,
    EnrolmentLinkSpent,
    InvalidField,
    NotAllowed,
    NotFound,
    RateLimited,
    StorageUnavailable,
)
from dispatcher.alerts.feed import IncidentFeed
from dispatcher.alerts.intake import (
    AlertRequest,
    parse_json_object,
    validate_alert,
    validate_identifier,
)
from dispatcher.alerts.outcomes import AlertAccepted, AlertCounts
from dispatcher.alerts.ratelimit import RateLimiter
from dispatcher.alerts.settings import AlertSettings

__all__ = ["DeviceVerbs"]

log = Logger(namespace="dispatcher.alerts")


class DeviceVerbs:
    """``post_alert``, ``enrol``, ``alert_status`` and the device lookups behind them."""

    max_known_devices: int
    clock: IReactorTime
    read: Runner
    settings: AlertSettings
    auth: Authenticator
    limiter: RateLimiter
    failures: RateLimiter
    feed: IncidentFeed
    counts: AlertCounts
    dialer: CallbackDialer | None
    _devices: dict[str, tuple[float, DeviceCredentials | None]]
    _known: OrderedDict[str, DeviceCredentials]
    _batcher: AlertBatcher
    _now: Callable[[], dt.datetime]
    # Told (address, seconds) when an address runs out of failed attempts, so intake
    # processes refuse it too (dispatcher.alerts.handoff); None in a single process.
    source_blocked: Callable[[str, float], object] | None = None

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
        d.addCallback(self._authenticated, document, headers, source)
        return d

    def _refused_before_lookup(self, exc: AlertsError, wait: float,
                               source: str | None) -> Deferred[Any]:
        """A request refused before any database read: an address already over its
        budget hears 429, anyone else the reason, which counts against the address."""
        if wait > 0:
            return failed(self._too_many_failures(wait))
        self._failed_attempt(source)
        return failed(exc)

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
                return failed(self._too_many_failures(wait))
            return succeed(known)
        return self.lookup_device(device_id)

    def _too_many_failures(self, wait: float) -> RateLimited:
        return RateLimited("rate_limited", f"too many failed attempts from this address; "
                           f"retry in {wait:.0f} s", self.failures.retry_after(wait))

    def _failed_attempt(self, source: str | None) -> None:
        if source is not None:
            now = self.clock.seconds()
            self.failures.take(source, now)
            if self.source_blocked is not None:
                wait = self.failures.wait(source, now)
                if wait > 0:
                    self.source_blocked(source, wait)

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

    def _authenticated(self, device: DeviceCredentials, document: dict[str, Any],
                       headers: Mapping[str, str | None], source: str | None
                       ) -> Deferred[AlertAccepted]:
        self._admit(device)
        if device.kind != "app":
            raise NotAllowed("forbidden", "this device may not post alerts")
        request = validate_alert(document, self._now())
        if request.callback_number is None and device.callback_number is None:
            raise InvalidField("missing_field", "callback_number is required (the device "
                               "has no default number)")
        return self._store(request, device, signature_digest(headers), source)

    def _admit(self, device: DeviceCredentials) -> None:
        """The device's rate limit: one token of its bucket, or RateLimited."""
        wait = self.limiter.take(device.device_id, self.clock.seconds())
        if wait > 0:
            raise RateLimited("rate_limited", f"too many alerts from this device; retry in "
                              f"{wait:.0f} s", self.limiter.retry_after(wait))

    def _store(self, request: AlertRequest, device: DeviceCredentials, digest: str | None,
               source: str | None) -> Deferred[AlertAccepted]:
        """Commit the alert (group commit); fires once it is durable. An intake process
        overrides this to hand the alert to the writer (``dispatcher.alerts.handoff``)."""
        d = self._batcher.add(request, device)
        d.addCallbacks(self._committed, self._not_committed, callbackArgs=(request,))
        return d

    def take_handed_off(self, request: AlertRequest, device: DeviceCredentials,
                        digest: str | None, source: str | None) -> Deferred[AlertAccepted]:
        """An alert an intake process parsed, authenticated and validated: the checks whose
        state must be shared by every process happen here, in the writer's process (the
        signature not replayed through another process, the device's rate limit), then
        the commit. Fires as ``post_alert`` does."""
        self.counts.received += 1
        try:
            if digest is not None:
                self.auth.remember_signature(device.device_id, digest, self.clock.seconds())
            self._admit(device)
        except AlertsError as exc:
            return failed(exc).addBoth(self.counts.count)
        return self._store(request, device, digest, source).addBoth(self.counts.count)

    def failed_attempt_from(self, source: str) -> None:
        """An intake process refused a request from ``source``: count it here, where every
        process's failures of that address add up."""
        self._failed_attempt(source)

    def _committed(self, receipt: storage.AlertReceipt, request: Any) -> AlertAccepted:
        accepted = AlertAccepted(request.alert_id, receipt.incident_id, receipt.state,
                                 receipt.created)
        if not receipt.created:
            return accepted
        extra: dict[str, Any] = {"type": request.type, "device_id": request.device_id}
        if request.location is not None:
            extra.update(lat=request.location.lat, lon=request.location.lon)
        if receipt.callback is not None:  # the number the operator's call card shows
            extra["callback_number"] = receipt.callback.number
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
            return failed(self._too_many_failures(wait))
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
            return failed(exc)
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
