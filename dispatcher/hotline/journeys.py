"""What the hotline learns from the call log's journeys: missed calls nobody saw live.

Calls that ended while the server was away reach the log through Asterisk's CEL
(``dispatcher.calllog.cel``). Those missed (abandoned before an operator answered, or dropped
just after) are owed a callback like the ones the live detector catches, by the same rules
(:func:`~dispatcher.callbacks.missed.missed_from_journey`), on the hotline's list.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from dispatcher.callbacks.missed import missed_from_journey
from dispatcher.callbacks.owed import CallbackEntry, CallbackList

__all__ = ["owe_missed_callbacks"]


def owe_missed_callbacks(callbacks: CallbackList, records: Iterable[Any],
                         hotline: Iterable[str], now: float) -> list[CallbackEntry]:
    """Add a callback for each missed hotline call among ``records`` (``JourneyRecord``s of
    calls to one of the ``hotline`` numbers) that the list does not count already (a call
    seen live and again in CEL is owed once). Returns the entries added or strengthened."""
    numbers = tuple(hotline)
    owed = []
    for record in records:
        missed = missed_from_journey(record, numbers, now)
        if missed is None or callbacks.has_call(missed.linkedid):
            continue
        entry = callbacks.add(missed, now)
        if entry is not None:
            owed.append(entry)
    return owed
