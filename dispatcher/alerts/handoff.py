"""Handing alerts from intake processes to the writer's process, and its answers back.

With ``http.intake_processes`` set, several processes accept the API's connections on one
listening socket: each parses HTTP, reads the JSON, checks the device's credentials and the
fields (the CPU of an alert), then hands the alert to the one process that owns the call log
writer, AMI and the callbacks, over a private UNIX socket pair. That process commits it
(group commit, as in one process) and answers only then, so a 201 still means stored.

The channel carries frames: a 4-byte big-endian length, then one JSON object.

intake → writer
    ``{"op": "alert", "id": n, "request": {...}, "device": {...}, "digest": hex|null,
    "source": address|null}`` — an alert to store; ``id`` is the intake's own number.
    ``{"op": "failed", "source": address}`` — a refused attempt from that address.
writer → intake
    ``{"op": "hello", "settings": {...}}`` — first frame: the limits, the master key (the
    channel is a socket pair only the two processes hold) and where to forward the rest.
    ``{"op": "stored", "id": n, "incident_id": i, "state": s, "created": bool}`` —
    committed (``created`` False: a retry of an alert stored before).
    ``{"op": "refused", "id": n, "error": class, "code": c, "reason": r,
    "retry_after": s|null}`` — an :class:`~dispatcher.alerts.errors.AlertsError`.
    ``{"op": "blocked", "source": address, "seconds": s}`` — the address ran out of failed
    attempts: refuse it (429) for that long without a database read.
    ``{"op": "feed", "events": [...]}`` — events of the operators' incident feed, in order,
    as the writer published them (the hello's ``feed_last`` says where they start): the
    intake answers the feed's long-polls from its mirror, one hop nearer the operator.

State shared by every process lives in the writer's: the device rate limit, the failed
attempts of each address, the signatures seen (a replay through another process is caught
there). An intake keeps only caches (device rows, addresses blocked).

If the writer's end goes away, every alert handed off and not answered fails with
:class:`~dispatcher.alerts.errors.StorageUnavailable` (503: not stored, retry with the same
``alert_id``): an alert is never acknowledged unless the writer said it is stored.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.protocols.basic import Int32StringReceiver
from twisted.python.failure import Failure

from dispatcher.alerts import errors
from dispatcher.alerts.auth import DeviceCredentials
from dispatcher.alerts.intake import AlertRequest, Location
from dispatcher.alerts.outcomes import AlertAccepted

__all__ = [
    "FEED_FRAME",
    "MAX_FRAME",
    "BlockedSources",
    "HandOffClient",
    "HandOffServer",
    "ProtocolViolation",
    "decode_alert",
    "encode_alert",
]

log = Logger(namespace="dispatcher.alerts.handoff")

# An alert's body is at most 16 KiB; its frame, parsed and re-encoded, stays well below.
MAX_FRAME = 256 * 1024
# Incident feed events per frame: an event is well under 2 KiB (its detail is one line of at
# most 500 characters), so a frame of them stays under MAX_FRAME.
FEED_FRAME = 100

_ERRORS: dict[str, type[errors.AlertsError]] = {
    name: getattr(errors, name) for name in errors.__all__}


class ProtocolViolation(Exception):
    """A frame that is not what the other end may send (a bug, never a client's input)."""


# -- what a frame holds -----------------------------------------------------------------------


def encode_alert(request: AlertRequest, device: DeviceCredentials) -> dict[str, Any]:
    """The JSON-able form of an alert and its device's row."""
    location = None
    if request.location is not None:
        loc = request.location
        location = {"lat": loc.lat, "lon": loc.lon, "accuracy_m": loc.accuracy_m,
                    "fix_time": loc.fix_time.isoformat() if loc.fix_time else None}
    return {"request": {"alert_id": request.alert_id, "device_id": request.device_id,
                        "type": request.type, "location": location,
                        "callback_number": request.callback_number, "note": request.note},
            "device": {"pk": device.pk, "device_id": device.device_id, "kind": device.kind,
                       "enabled": device.enabled, "token_hash": device.token_hash,
                       "hmac_key": device.hmac_key,
                       "callback_number": device.callback_number,
                       "lat": device.lat, "lon": device.lon}}


def decode_alert(frame: dict[str, Any]) -> tuple[AlertRequest, DeviceCredentials]:
    """The alert and device of an ``alert`` frame; ProtocolViolation when malformed."""
    try:
        req, dev = frame["request"], frame["device"]
        location = None
        if req["location"] is not None:
            loc = req["location"]
            fix = loc["fix_time"]
            location = Location(float(loc["lat"]), float(loc["lon"]),
                                None if loc["accuracy_m"] is None else float(loc["accuracy_m"]),
                                None if fix is None else dt.datetime.fromisoformat(fix))
        request = AlertRequest(str(req["alert_id"]), str(req["device_id"]), str(req["type"]),
                               location, req["callback_number"], req["note"])
        device = DeviceCredentials(**dev)
    except (KeyError, TypeError, ValueError) as exc:
        raise ProtocolViolation(f"malformed alert frame: {exc!r}") from None
    if device.device_id != request.device_id:
        raise ProtocolViolation("the alert's device is not the device row sent with it")
    return request, device


def _encode(frame: dict[str, Any]) -> bytes:
    return json.dumps(frame, separators=(",", ":")).encode("utf-8")


def _decode(data: bytes) -> dict[str, Any]:
    try:
        frame = json.loads(data)
    except ValueError as exc:
        raise ProtocolViolation(f"a frame that is not JSON: {exc}") from None
    if not isinstance(frame, dict) or not isinstance(frame.get("op"), str):
        raise ProtocolViolation("a frame must be a JSON object with an op")
    return frame


class _Framed(Int32StringReceiver):
    """Length-prefixed JSON frames; a frame over ``MAX_FRAME`` or one that breaks the protocol
    closes the channel (the two ends are our own processes: it is a bug, not a client)."""

    MAX_LENGTH = MAX_FRAME

    def send(self, frame: dict[str, Any]) -> None:
        """Send one frame."""
        self.sendString(_encode(frame))

    def stringReceived(self, data: bytes) -> None:  # noqa: N802 -- Twisted's name
        """Decode and dispatch one frame."""
        try:
            self.frame_received(_decode(data))
        except ProtocolViolation as exc:
            log.error("hand-off channel: {error}; closing it", error=str(exc))
            self.transport.abortConnection()

    def lengthLimitExceeded(self, length: int) -> None:  # noqa: N802 -- Twisted's name
        """A frame over the limit: close the channel."""
        log.error("hand-off channel: a frame of {length} bytes; closing it", length=length)
        self.transport.abortConnection()

    def frame_received(self, frame: dict[str, Any]) -> None:
        raise NotImplementedError


# -- the intake's end ------------------------------------------------------------------------


class BlockedSources:
    """The failed-attempt budget of addresses as the intake sees it: the writer counts the
    attempts of every process and says when an address is out (``block``). Has the
    ``wait``/``take``/``retry_after`` of a :class:`~dispatcher.alerts.ratelimit.RateLimiter`
    so the intake's verbs use it in its place."""

    def __init__(self, report: Callable[[str], None], max_keys: int = 100_000) -> None:
        self.report = report
        self.max_keys = max_keys
        self._until: dict[str, float] = {}

    def block(self, source: str, until: float) -> None:
        """Refuse ``source`` until ``until``."""
        if len(self._until) >= self.max_keys:
            self._until.clear()  # forgetting blocks errs towards answering, never wrongly
        self._until[source] = until

    def wait(self, source: str, now: float) -> float:
        """Seconds ``source`` must still wait (0.0: it may try)."""
        until = self._until.get(source)
        if until is None:
            return 0.0
        if until <= now:
            del self._until[source]
            return 0.0
        return until - now

    def take(self, source: str, now: float) -> float:
        """A failed attempt: counted by the writer (which answers with a block if over)."""
        self.report(source)
        return 0.0

    def retry_after(self, wait: float) -> int:
        """Whole seconds to wait before trying again (at least 1)."""
        return max(1, int(wait + 0.999))


class HandOffClient(_Framed):
    """The intake's end: ``hand_off`` an alert, fire when the writer answers.

    ``on_hello(settings)`` is called with the writer's first frame; ``blocked`` receives the
    writer's blocks; ``on_lost()`` when the channel closes (after every pending alert has
    failed with StorageUnavailable)."""

    def __init__(self, clock_seconds: Callable[[], float],
                 on_hello: Callable[[dict[str, Any]], None] | None = None,
                 on_lost: Callable[[], None] | None = None,
                 on_feed: Callable[[list[dict[str, Any]]], None] | None = None) -> None:
        self.clock_seconds = clock_seconds
        self.on_hello = on_hello
        self.on_lost = on_lost
        #: Called with each frame of incident feed events the writer sends.
        self.on_feed = on_feed
        self.blocked = BlockedSources(self.failed_attempt)
        self.pending: dict[int, Deferred[AlertAccepted]] = {}
        self.connected_to_writer = False
        self._next_id = 0

    def connectionMade(self) -> None:  # noqa: N802 -- Twisted's name
        """The channel is up."""
        self.connected_to_writer = True

    def hand_off(self, request: AlertRequest, device: DeviceCredentials, digest: str | None,
                 source: str | None) -> Deferred[AlertAccepted]:
        """Send an alert to the writer; fires with its AlertAccepted once committed, or fails
        with the writer's refusal, or StorageUnavailable if the writer is gone."""
        d: Deferred[AlertAccepted] = Deferred()
        if not self.connected_to_writer:
            d.errback(_writer_gone())
            return d
        self._next_id += 1
        ident = self._next_id
        self.pending[ident] = d
        frame = {"op": "alert", "id": ident, "digest": digest, "source": source}
        frame.update(encode_alert(request, device))
        self.send(frame)
        return d

    def failed_attempt(self, source: str) -> None:
        """Tell the writer an attempt from ``source`` was refused here."""
        if self.connected_to_writer:
            self.send({"op": "failed", "source": source})

    def frame_received(self, frame: dict[str, Any]) -> None:
        """The writer's answers, blocks and hello."""
        op = frame["op"]
        if op == "hello":
            if self.on_hello is not None:
                self.on_hello(frame.get("settings") or {})
            return
        if op == "feed":
            events = frame.get("events")
            if not isinstance(events, list) or not all(
                    isinstance(e, dict) and isinstance(e.get("seq"), int)
                    and isinstance(e.get("at"), int | float) for e in events):
                raise ProtocolViolation("malformed feed frame")
            if self.on_feed is not None:
                self.on_feed(events)
            return
        if op == "blocked":
            try:
                source, seconds = str(frame["source"]), float(frame["seconds"])
            except (KeyError, TypeError, ValueError):
                raise ProtocolViolation("malformed blocked frame") from None
            self.blocked.block(source, self.clock_seconds() + seconds)
            return
        if op not in ("stored", "refused"):
            raise ProtocolViolation(f"unknown op {op!r}")
        d = self.pending.pop(frame.get("id"), None)  # type: ignore[arg-type]
        if d is None:
            raise ProtocolViolation(f"an answer to no alert handed off: {frame.get('id')!r}")
        if op == "stored":
            try:
                accepted = AlertAccepted(str(frame["alert_id"]), int(frame["incident_id"]),
                                         str(frame["state"]), bool(frame["created"]))
            except (KeyError, TypeError, ValueError):
                d.errback(_writer_gone())
                raise ProtocolViolation("malformed stored frame") from None
            d.callback(accepted)
        else:
            cls = _ERRORS.get(str(frame.get("error")), errors.StorageUnavailable)
            retry = frame.get("retry_after")
            d.errback(cls(str(frame.get("code", "storage_unavailable")),
                          str(frame.get("reason", "the alert could not be stored")),
                          retry if isinstance(retry, int) else None))

    def connectionLost(self, reason: Failure | None = None) -> None:  # noqa: N802
        """The writer is gone: nothing pending was acknowledged, each fails 503."""
        self.connected_to_writer = False
        pending, self.pending = self.pending, {}
        for d in pending.values():
            d.errback(_writer_gone())
        if self.on_lost is not None:
            self.on_lost()


def _writer_gone() -> errors.StorageUnavailable:
    return errors.StorageUnavailable("storage_unavailable", "the alert could not be stored "
                                     "(the writer is unavailable); retry with the same "
                                     "alert_id", retry_after=1)


# -- the writer's end ------------------------------------------------------------------------


class HandOffServer(_Framed):
    """The writer's end of one intake's channel: stores what it is handed and answers.

    ``alerts`` is the writer's :class:`~dispatcher.alerts.service.AlertService`
    (``take_handed_off``, ``failed_attempt_from``); ``hello`` is the first frame's settings.
    """

    def __init__(self, alerts: Any, hello: dict[str, Any],
                 on_lost: Callable[[HandOffServer], None] | None = None) -> None:
        self.alerts = alerts
        self.hello = hello
        self.on_lost = on_lost
        self.open = False

    def connectionMade(self) -> None:  # noqa: N802 -- Twisted's name
        """Greet the intake with its settings."""
        self.open = True
        self.send({"op": "hello", "settings": self.hello})

    def frame_received(self, frame: dict[str, Any]) -> None:
        """An alert to store, or a failed attempt to count."""
        op = frame["op"]
        if op == "failed":
            source = frame.get("source")
            if not isinstance(source, str):
                raise ProtocolViolation("malformed failed frame")
            self.alerts.failed_attempt_from(source)
            return
        if op != "alert":
            raise ProtocolViolation(f"unknown op {op!r}")
        ident = frame.get("id")
        if not isinstance(ident, int):
            raise ProtocolViolation("an alert frame without an id")
        request, device = decode_alert(frame)
        digest, source = frame.get("digest"), frame.get("source")
        d = self.alerts.take_handed_off(request, device, digest, source)
        d.addCallbacks(self._stored, self._refused, callbackArgs=(ident,), errbackArgs=(ident,))

    def _stored(self, accepted: AlertAccepted, ident: int) -> None:
        if self.open:  # an intake that died: the alert is stored, its retry will hear 200
            self.send({"op": "stored", "id": ident, "alert_id": accepted.alert_id,
                       "incident_id": accepted.incident_id, "state": accepted.state,
                       "created": accepted.created})

    def _refused(self, failure: Failure, ident: int) -> None:
        exc = failure.value
        if not isinstance(exc, errors.AlertsError):
            log.failure("a handed-off alert failed", failure)
            exc = _writer_gone()
        if self.open:
            self.send({"op": "refused", "id": ident, "error": type(exc).__name__,
                       "code": exc.code, "reason": exc.reason, "retry_after": exc.retry_after})

    def feed(self, events: list[dict[str, Any]]) -> None:
        """Send the intake these incident feed events (in order, at most ``FEED_FRAME``)."""
        if self.open:
            self.send({"op": "feed", "events": events})

    def block(self, source: str, seconds: float) -> None:
        """Tell the intake to refuse ``source`` for ``seconds``."""
        if self.open:
            self.send({"op": "blocked", "source": source, "seconds": seconds})

    def connectionLost(self, reason: Failure | None = None) -> None:  # noqa: N802
        """The intake is gone (its alerts in flight still commit: their retries hear 200)."""
        self.open = False
        if self.on_lost is not None:
            self.on_lost(self)
