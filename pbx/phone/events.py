"""What phones and calls report: the state of a call's INVITE session, and a phone's events.

Plain data, no pjsua2: a process that only drives phones living elsewhere (a
:class:`~pbx.phone.host.PhoneHost`) can compare states without loading the SIP stack.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class CallState(enum.IntEnum):
    """INVITE session states, as pjsip numbers them."""

    NULL = 0
    CALLING = 1
    INCOMING = 2
    EARLY = 3
    CONNECTING = 4
    CONFIRMED = 5
    DISCONNECTED = 6


@dataclass(frozen=True)
class PhoneEvent:
    """Something that happened to a phone: ``kind`` is a short word, ``detail`` free text."""

    at: float
    phone: str
    kind: str
    detail: str = ""
    call: int | None = None

    def __str__(self) -> str:
        where = f" call#{self.call}" if self.call is not None else ""
        return f"{self.phone}{where} {self.kind} {self.detail}".rstrip()
