"""The feature codes operators use from any softphone: defined in :mod:`dialplans.contract`.

The dialplan and the server share them, so they live with the other shared names; this module
keeps the old import path working.
"""

from __future__ import annotations

from dialplans.contract import (
    BLIND_PREFIX,
    BUILTIN_ATTENDED,
    BUILTIN_BLIND,
    CONFERENCE_PREFIX,
    CONSULT_CANCEL,
    CONSULT_COMPLETE,
    CONSULT_PREFIX,
    CONSULT_SWAP,
    CONSULT_THREEWAY,
    DEFAULT_PAUSE_REASON,
    LOGGED_OUT_REASON,
    LOGIN_TOGGLE,
    PAUSE,
    PAUSE_REASONS,
    UNPAUSE,
    AgencyCodes,
    agency_codes,
)

__all__ = ["BLIND_PREFIX", "BUILTIN_ATTENDED", "BUILTIN_BLIND", "CONFERENCE_PREFIX",
           "CONSULT_CANCEL", "CONSULT_COMPLETE", "CONSULT_PREFIX", "CONSULT_SWAP",
           "CONSULT_THREEWAY", "DEFAULT_PAUSE_REASON", "LOGGED_OUT_REASON", "LOGIN_TOGGLE",
           "PAUSE", "PAUSE_REASONS", "UNPAUSE", "AgencyCodes", "agency_codes"]
