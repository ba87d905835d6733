"""Console logins: signed session cookies and a brake on password guessing.

Sans-IO: the clock is a function passed in, nothing here touches a socket.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass

__all__ = ["LoginThrottle", "SessionSigner", "Staff", "check_password"]


@dataclass(frozen=True)
class Staff:
    """Who is logged in to the console."""

    extension: str
    role: str  # "operator" or "supervisor"


def check_password(passwords: Mapping[str, str], extension: str, given: str) -> bool:
    """True when ``given`` is the console password of ``extension`` (constant time)."""
    expected = passwords.get(extension)
    # Compare against something even for an unknown user, so timing does not tell.
    return hmac.compare_digest((expected or "\0" * 16).encode(), given.encode()) and bool(
        expected)


class SessionSigner:
    """Issues and checks session tokens: ``extension.role.expiry.signature``.

    The signature is HMAC-SHA256 under the center's session key; a token is refused once its
    expiry has passed or when any part was changed.
    """

    def __init__(self, key: str, clock: Callable[[], float], lifetime: float = 12 * 3600):
        if not key:
            raise ValueError("a session key is required")
        self._key = key.encode()
        self.clock = clock
        self.lifetime = lifetime

    def _sign(self, payload: str) -> str:
        mac = hmac.new(self._key, payload.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).decode().rstrip("=")

    def issue(self, staff: Staff) -> str:
        """A token for ``staff`` valid for ``lifetime`` seconds from now."""
        payload = f"{staff.extension}.{staff.role}.{int(self.clock() + self.lifetime)}"
        return f"{payload}.{self._sign(payload)}"

    def verify(self, token: str | None) -> Staff | None:
        """The staff member a token stands for, or None if it is forged, altered or old."""
        if not token or len(token) > 256:
            return None
        parts = token.split(".")
        if len(parts) != 4:
            return None
        extension, role, expiry, signature = parts
        payload = f"{extension}.{role}.{expiry}"
        if not hmac.compare_digest(self._sign(payload), signature):
            return None
        if not expiry.isdigit() or int(expiry) < self.clock():
            return None
        return Staff(extension, role)


class LoginThrottle:
    """At most ``max_failures`` failed logins per key (user or address) in ``window`` s."""

    def __init__(self, clock: Callable[[], float], max_failures: int = 5,
                 window: float = 300.0) -> None:
        self.clock = clock
        self.max_failures = max_failures
        self.window = window
        self._failures: dict[str, list[float]] = {}

    def _recent(self, key: str) -> list[float]:
        cutoff = self.clock() - self.window
        recent = [t for t in self._failures.get(key, ()) if t > cutoff]
        if recent:
            self._failures[key] = recent
        else:
            self._failures.pop(key, None)
        return recent

    def blocked(self, *keys: str) -> bool:
        """True when any key has used up its failures."""
        return any(len(self._recent(k)) >= self.max_failures for k in keys)

    def failed(self, *keys: str) -> None:
        """Count a failed attempt against every key."""
        now = self.clock()
        for k in keys:
            self._failures.setdefault(k, []).append(now)
        if len(self._failures) > 10_000:  # a flood of made-up names must not eat memory
            for k in list(self._failures)[:5_000]:
                del self._failures[k]

    def succeeded(self, *keys: str) -> None:
        """Forget failures after a good login."""
        for k in keys:
            self._failures.pop(k, None)
