"""The hotline's names for the callbacks feature, which lives in :mod:`dispatcher.callbacks`.

Missed calls are judged in :mod:`dispatcher.callbacks.missed`, owed in
:mod:`dispatcher.callbacks.owed`, stored and restored in :mod:`dispatcher.callbacks.store`.
"""

from __future__ import annotations

from typing import Any

from dispatcher.callbacks.missed import (
    ABANDONED,
    DEFAULT_DROPPED_SECONDS,
    DROPPED,
    LATE_MISSED_WINDOW,
    MAX_TRACKED,
    MissedCall,
    MissedCallDetector,
    evidence,
    missed_from_journey,
    source_host,
)
from dispatcher.callbacks.owed import (
    DEFAULT_MAX_OPEN,
    DEFAULT_MAX_PER_SOURCE,
    CallbackEntry,
    CallbackList,
    CallbackStore,
)
from dispatcher.callbacks.states import CALLBACK_STATES, OPEN_STATES, CallbackState
from dispatcher.callbacks.store import SqlCallbackStore, WriterCallbackStore, owed_callbacks
from pbx.channels import endpoint_of

EVICTED = CallbackState.EVICTED.value

__all__ = [
    "ABANDONED",
    "CALLBACK_STATES",
    "DEFAULT_DROPPED_SECONDS",
    "DEFAULT_MAX_OPEN",
    "DEFAULT_MAX_PER_SOURCE",
    "DROPPED",
    "EVICTED",
    "LATE_MISSED_WINDOW",
    "MAX_TRACKED",
    "OPEN_STATES",
    "CallbackEntry",
    "CallbackList",
    "CallbackStore",
    "MissedCall",
    "MissedCallDetector",
    "SqlCallbackStore",
    "WriterCallbackStore",
    "endpoint_of",
    "evidence",
    "missed_from_journey",
    "source_host",
    "stored_open_callbacks",
]


def stored_open_callbacks(session: Any) -> list[CallbackEntry]:
    """The hotline's part of the one restore (:func:`owed_callbacks`)."""
    return owed_callbacks(session).missed
