"""The console's lists, the same for every operator: callers waiting, callbacks owed, open
incidents.

Sans-I/O: callers from the AMI live model joined with their journeys (the category and
priority they chose); callbacks from the hotline's list; incidents from
:class:`OpenIncidents`, loaded once from the database (so the list is whole after a restart)
and kept current from the incident feed. Times are epoch seconds: the page counts on by itself.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy.orm import Session

from dialplans import contract
from dispatcher.alerts.incident import FINAL_STATES
from dispatcher.callbacks.owed import CallbackEntry
from dispatcher.console.desk import FactsSource
from pbx.ami.model import LiveModel

__all__ = ["OWED_SHOWN", "OpenIncidents", "callers_waiting", "callbacks_owed", "lists_document",
           "read_open_incidents"]

#: Callbacks the console lists (strongest first); the count of all is beside them.
OWED_SHOWN = 20
# Closed, cancelled, or given up on (an unreachable one comes back with its next call).
_FINAL = {str(state) for state in FINAL_STATES} | {"unreachable"}


def callers_waiting(model: LiveModel, journeys: FactsSource,
                    incidents: OpenIncidents | None = None) -> list[dict[str, Any]]:
    """The callers in the operators' queue, in queue order, with what they chose.

    A call the center placed waits there too before anyone is dialled: an alert's
    operator-first call (``incident``: its incident, ``caller``: the number it will ring,
    from the open incident) or a callback (``outbound``). Such a call has no caller ID of
    its own, and a blank row would read as a caller nobody knows."""
    queue = model.queues.get(contract.QUEUE_NAME)
    if queue is None:
        return []
    out = []
    for caller in sorted(queue.callers.values(), key=lambda c: c.position):
        channel = model.channels.get(caller.uniqueid)
        facts = journeys.facts(channel.linkedid) if channel is not None else None
        incident_id = facts.incident_ref if facts else None
        number = (facts.caller_number if facts else "") or ""
        if not number and incident_id is not None and incidents is not None:
            number = (incidents.get(incident_id) or {}).get("callback_number") or ""
        out.append({
            "position": caller.position,
            "caller": number,
            "since": caller.wait_start,
            "category": facts.category if facts else None,
            "priority": facts.queue_priority if facts else None,
            "incident": incident_id,
            "outbound": bool(facts and facts.direction == "outbound"),
        })
    return out


def callbacks_owed(entries: Iterable[CallbackEntry]) -> list[dict[str, Any]]:
    """The open callbacks as the console lists them (``id`` is what "call back now" sends)."""
    return [{"id": e.id, "number": e.number, "reason": e.reason, "state": e.state,
             "category": e.category, "since": e.created_at, "attempts": e.attempts}
            for e in entries if e.open]


class OpenIncidents:
    """The incidents not closed yet, by id: a snapshot read from the database, then each
    event of the incident feed (newer than the snapshot, so it wins over it)."""

    def __init__(self) -> None:
        self.items: dict[int, dict[str, Any]] = {}
        # Ids the feed told of before the snapshot arrived (the snapshot may be older);
        # None once it has: from then on the feed alone keeps the list.
        self._seen: set[int] | None = set()

    def load(self, rows: Iterable[dict[str, Any]]) -> None:
        """Take the database's open incidents (``read_open_incidents``), once; an incident
        the feed already told of keeps what the feed said. ``load([])`` when the snapshot
        cannot be read: the list fills as incidents change."""
        seen, self._seen = self._seen or set(), None
        for row in rows:
            if row["id"] not in seen and row["state"] not in _FINAL:
                self.items[row["id"]] = dict(row)

    def feed(self, item: dict[str, Any]) -> None:
        """One event of the incident feed (``IncidentFeed.publish``'s item)."""
        incident_id = item["incident_id"]
        if self._seen is not None:
            self._seen.add(incident_id)
        if item["state"] in _FINAL:
            self.items.pop(incident_id, None)
            return
        known = self.items.setdefault(incident_id, {
            "id": incident_id, "type": item.get("type"), "device": None, "agency": None,
            "callback_number": None, "opened_at": item.get("at"), "category": None})
        known["state"] = item["state"]
        if item.get("category"):
            known["category"] = item["category"]
        if item.get("callback_number"):  # an alert's: its card shows it before the citizen
            known["callback_number"] = item["callback_number"]
        if item.get("agency"):
            known["agency"] = item["agency"]
        if item.get("device_id"):
            known["device"] = item["device_id"]
        if item.get("type"):
            known["type"] = item["type"]

    def get(self, incident_id: int) -> dict[str, Any] | None:
        """The open incident ``incident_id`` (None: closed or unknown)."""
        return self.items.get(incident_id)

    def document(self) -> list[dict[str, Any]]:
        """The open incidents, oldest first: copies (the push channel keeps a rendering to
        compare the next one with; the items change in place as the feed tells)."""
        return [dict(i) for i in sorted(self.items.values(),
                                        key=lambda i: (i.get("opened_at") or 0, i["id"]))]


def read_open_incidents(session: Session) -> list[dict[str, Any]]:
    """The open incidents in the database (blocking: run it in a read pool)."""
    from dispatcher.calllog.models import Agency, Device
    from dispatcher.calllog.store_incidents import open_incidents

    rows = []
    for incident in open_incidents(session):
        device = session.get(Device, incident.device_id) if incident.device_id else None
        agency = session.get(Agency, incident.agency_id) if incident.agency_id else None
        rows.append({
            "id": incident.id, "state": incident.state, "type": incident.type,
            "device": device.device_id if device else None,
            "agency": agency.code if agency else None,
            "callback_number": incident.callback_number, "category": incident.category,
            "opened_at": incident.created_at.timestamp() if incident.created_at else None,
        })
    return rows


def lists_document(model: LiveModel, journeys: FactsSource, owed: list[CallbackEntry],
                   owed_total: int, incidents: OpenIncidents) -> dict[str, Any]:
    """The console's shared view: ``queue``, ``owed`` (with ``owed_total``), ``incidents``."""
    return {
        "queue": callers_waiting(model, journeys, incidents),
        "owed": callbacks_owed(owed),
        "owed_total": owed_total,
        "incidents": incidents.document(),
    }
