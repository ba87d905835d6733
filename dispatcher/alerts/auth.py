"""Device authentication for alerts: a bearer token, an HMAC signature, or both.

Scheme (also in ``dispatcher/api/openapi.yaml``):

* **Token**: ``Authorization: Bearer <token>``. The server keeps only ``sha256(token)``
  (``store.hash_token``); the token is shown once, when the device is enrolled.
* **Signature**: ``X-Siaga-Timestamp: <unix seconds>`` and
  ``X-Siaga-Signature: sha256=<hex>`` where the hex is
  ``HMAC-SHA256(key, "<timestamp>." + body)`` over the exact body bytes. A timestamp more than
  :data:`REPLAY_WINDOW` seconds away from the server's clock is refused, and a signature already
  seen inside the window is refused as a replay (a retry must be signed again, with a new
  timestamp). HMAC is symmetric: the server must hold the key itself. ``devices.hmac_key``
  holds a label the key is derived with from the center's master key (``dispatcher.keys``),
  or, for a device enrolled without the center's config, the key.

A device enrolled with a token must send it; one enrolled with a key must sign; one enrolled
with both must do both. Unknown device, disabled device and wrong credential all answer the
same ``invalid_credentials`` so nobody can learn which device ids exist.

Sans-IO: the caller passes the device's credentials, the headers, the body and the time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

from dispatcher import keys
from dispatcher.alerts.errors import BadCredentials

__all__ = [
    "REPLAY_WINDOW",
    "Authenticator",
    "DeviceCredentials",
    "hash_token",
    "sign",
    "signature_digest",
]

REPLAY_WINDOW = 300.0
_SIGNATURE_RE = re.compile(r"^sha256=([0-9a-f]{64})$")
_TIMESTAMP_RE = re.compile(r"^[0-9]{1,12}$")
_BEARER_RE = re.compile(r"^Bearer ([A-Za-z0-9._~+/=-]{16,256})$")


def hash_token(token: str) -> str:
    """The stored form of a token (same as ``dispatcher.calllog.store_incidents.hash_token``)."""
    return "sha256$" + hashlib.sha256(token.encode("utf-8")).hexdigest()


def signature_digest(headers: Mapping[str, str | None]) -> str | None:
    """The hex digest of a well-formed ``X-Siaga-Signature`` (None without one)."""
    match = _SIGNATURE_RE.match(headers.get("x-siaga-signature") or "")
    return match.group(1) if match else None


def sign(key: str, timestamp: int | str, body: bytes) -> str:
    """The ``X-Siaga-Signature`` value of a body sent at ``timestamp`` (clients use this)."""
    mac = hmac.new(key.encode("utf-8"), str(timestamp).encode("ascii") + b"." + body,
                   hashlib.sha256)
    return "sha256=" + mac.hexdigest()


@dataclass(frozen=True)
class DeviceCredentials:
    """What the API needs to know about an enrolled device (a snapshot of its row)."""

    pk: int
    device_id: str
    kind: str
    enabled: bool
    token_hash: str | None
    hmac_key: str | None
    callback_number: str | None = None
    lat: float | None = None
    lon: float | None = None


class Authenticator:
    """Checks a request's credentials against a device; remembers signatures to stop replays.

    The memory of signatures is bounded: entries older than the window are dropped, and at most
    ``max_remembered`` are kept (the per-device rate limit keeps far fewer in practice, as only
    valid signatures are remembered).
    """

    def __init__(self, window: float = REPLAY_WINDOW, max_remembered: int = 200_000,
                 master_key: bytes = b"") -> None:
        self.window = window
        self.master_key = master_key
        self.max_remembered = max_remembered
        self._seen: OrderedDict[tuple[str, str], float] = OrderedDict()

    def precheck(self, headers: Mapping[str, str | None], now: float) -> None:
        """Everything that can be checked without the device's row: credentials present,
        well formed, timestamp inside the window. Raises the
        :class:`~dispatcher.alerts.errors.BadCredentials` ``check`` would.

        Run before looking the device up, so a request without usable credentials costs no
        database read.
        """
        self._presented(headers, now)

    def _presented(self, headers: Mapping[str, str | None], now: float
                   ) -> tuple[str | None, str | None, str | None]:
        authorization = headers.get("authorization")
        timestamp = headers.get("x-siaga-timestamp")
        signature = headers.get("x-siaga-signature")
        if authorization is None and signature is None:
            raise BadCredentials("missing_credentials", "send Authorization: Bearer <token>, "
                                 "or X-Siaga-Timestamp and X-Siaga-Signature")
        # Format checks first: they reveal nothing about the device.
        token = None
        if authorization is not None:
            match = _BEARER_RE.match(authorization)
            if match is None:
                raise BadCredentials("invalid_credentials", "Authorization must be "
                                     "'Bearer <token>'")
            token = match.group(1)
        digest = None
        if signature is not None or timestamp is not None:
            if signature is None or timestamp is None:
                raise BadCredentials("invalid_signature", "X-Siaga-Signature and "
                                     "X-Siaga-Timestamp go together")
            sig_match = _SIGNATURE_RE.match(signature)
            if sig_match is None:
                raise BadCredentials("invalid_signature", "X-Siaga-Signature must be "
                                     "'sha256=' and 64 lower-case hex digits")
            if not _TIMESTAMP_RE.match(timestamp):
                raise BadCredentials("bad_timestamp", "X-Siaga-Timestamp must be Unix seconds")
            if abs(int(timestamp) - now) > self.window:
                raise BadCredentials("bad_timestamp", f"X-Siaga-Timestamp is more than "
                                     f"{self.window:g} s away from the server's clock")
            digest = sig_match.group(1)
        return token, digest, timestamp

    def check(self, device: DeviceCredentials | None, headers: Mapping[str, str | None],
              body: bytes, now: float) -> DeviceCredentials:
        """Return the device if the request proves to be from it, else raise
        :class:`~dispatcher.alerts.errors.BadCredentials`.

        ``headers`` maps lower-case header names to values (None when absent).
        """
        token, digest, timestamp = self._presented(headers, now)
        if device is None or not device.enabled:
            raise BadCredentials("invalid_credentials", "unknown device or wrong credentials")
        if device.token_hash is None and device.hmac_key is None:
            raise BadCredentials("invalid_credentials", "unknown device or wrong credentials")
        if device.token_hash is not None:
            if token is None or not hmac.compare_digest(device.token_hash, hash_token(token)):
                raise BadCredentials("invalid_credentials", "unknown device or wrong credentials")
        if device.hmac_key is not None:
            if digest is None or timestamp is None:
                raise BadCredentials("invalid_signature", "this device must sign its requests")
            key = self._hmac_key(device)
            if key is None:
                raise BadCredentials("invalid_credentials",
                                     "unknown device or wrong credentials")
            expected = sign(key, timestamp, body)[len("sha256="):]
            if not hmac.compare_digest(expected, digest):
                raise BadCredentials("invalid_signature", "the signature does not match the body")
            self._remember(device.device_id, digest, now)
        return device

    def _hmac_key(self, device: DeviceCredentials) -> str | None:
        """The device's HMAC key: derived from its stored label, or stored as it is."""
        stored = device.hmac_key
        if not keys.is_derived(stored):
            return stored
        if not self.master_key:
            return None  # a derived key cannot be checked without the master key
        return keys.device_key(self.master_key, device.device_id, stored)  # type: ignore[arg-type]

    def remember_signature(self, device_id: str, digest: str, now: float) -> None:
        """Remember a valid signature; raises ``BadCredentials`` if it was seen inside the
        window (a replay). The writer's process calls this for alerts intake processes
        checked, so a replay sent through another process is caught too."""
        self._remember(device_id, digest, now)

    def _remember(self, device_id: str, digest: str, now: float) -> None:
        while self._seen:
            key, at = next(iter(self._seen.items()))
            if at >= now - 2 * self.window and len(self._seen) < self.max_remembered:
                break
            del self._seen[key]
        key = (device_id, digest)
        if key in self._seen:
            raise BadCredentials("replayed_request", "this signature was already used: sign "
                                 "each request (retries too) with a fresh timestamp")
        self._seen[key] = now
