"""What the alerts feature learns from the call log's journeys (``dispatcher.calllog``).

* An incident's citizen now talking with an agency (the operator's transfer or conference,
  seen in the call's journey) moves the incident to handed_to_agency.
* A button's call that finished while the server was away (found when Asterisk's CEL is
  reconciled) opens its incident as one seen live would.

The call log calls these through the server's builder; nothing here reads AMI or the database
itself: the alert service does.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from twisted.internet.defer import Deferred

from dispatcher.alerts.incident import IncidentInput
from dispatcher.alerts.service import AlertService

__all__ = ["button_calls_finished", "incident_handed_off"]


def incident_handed_off(alerts: AlertService, record: Any, agency: str) -> Deferred[Any] | None:
    """``record`` (a ``JourneyRecord``) shows its citizen talking with ``agency``: if the
    call belongs to an incident, report the hand-off to it. None when it belongs to none."""
    if record.incident_ref is None:
        return None
    return alerts.report(record.incident_ref, IncidentInput.HAND_TO_AGENCY,
                         detail=f"{agency} answered", agency=agency)


def button_calls_finished(alerts: AlertService, records: Iterable[Any]) -> None:
    """Calls found whole in CEL (``JourneyRecord``s): a button's call among them opens its
    incident and records how it ended (``ButtonWatcher.on_finished_call``); other calls,
    or a center without buttons, change nothing."""
    if alerts.watcher is None:
        return
    for record in records:
        alerts.watcher.on_finished_call(record)
