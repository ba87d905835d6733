"""The alerts' limits and timings (defaults suit a city center)."""

from __future__ import annotations

from dataclasses import dataclass, field

from dispatcher.alerts.auth import REPLAY_WINDOW
from dispatcher.alerts.callback import DialerSettings
from dispatcher.alerts.intake import MAX_BODY_BYTES
from dispatcher.config.model import Center

__all__ = ["AlertSettings"]


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
