"""Data access for the call log, alerts and incidents: one function per operation.

The functions live by concern in :mod:`~dispatcher.calllog.store_journeys` (reference rows,
calls, CEL cursors), :mod:`~dispatcher.calllog.store_callbacks` (callbacks owed) and
:mod:`~dispatcher.calllog.store_incidents` (devices, alerts, incidents). This module re-exports
every public name so that ``from dispatcher.calllog import store`` keeps working.
"""

from __future__ import annotations

from dispatcher.calllog.store_callbacks import (
    count_citizen_no_answer,
    create_callback,
    pending_callbacks,
    set_callback_state,
)
from dispatcher.calllog.store_incidents import (
    AlertOutcome,
    add_device,
    authenticate_token,
    get_device,
    get_incident,
    hash_token,
    new_token,
    open_incidents,
    record_alert,
    revoke_device,
    set_incident_state,
)
from dispatcher.calllog.store_journeys import (
    calls_between,
    cel_cursor,
    ensure_agency,
    ensure_operator,
    get_call,
    has_finished_call,
    save_journey,
    set_cel_cursor,
    sync_center,
    sync_reference,
    unfinished_calls,
)

__all__ = [
    "AlertOutcome",
    "add_device",
    "authenticate_token",
    "calls_between",
    "cel_cursor",
    "count_citizen_no_answer",
    "create_callback",
    "ensure_agency",
    "ensure_operator",
    "get_call",
    "get_device",
    "get_incident",
    "has_finished_call",
    "hash_token",
    "new_token",
    "open_incidents",
    "pending_callbacks",
    "record_alert",
    "revoke_device",
    "save_journey",
    "set_callback_state",
    "set_cel_cursor",
    "set_incident_state",
    "sync_center",
    "sync_reference",
    "unfinished_calls",
]
