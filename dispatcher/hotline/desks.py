"""An operator desk's state in one word, from its queue member's device state (pure)."""

from __future__ import annotations

__all__ = ["MEMBER_STATE", "operator_state"]

# Queue member device states as the people at the desks say them.
MEMBER_STATE = {
    "NOT_INUSE": "available",
    "INUSE": "on call",
    "BUSY": "on call",
    "RINGING": "ringing",
    "RINGINUSE": "on call",
    "ONHOLD": "on call",
    "UNAVAILABLE": "offline",
    "INVALID": "offline",
    "UNKNOWN": "offline",
}


def operator_state(status: str, paused: bool, in_call: bool) -> str:
    """One word for an operator desk: available, ringing, on call, paused or offline."""
    state = MEMBER_STATE.get(status, "offline")
    if state == "offline":
        return state
    if in_call or state == "on call":
        return "on call"
    if paused:
        return "paused"
    return state
