"""The console's open incidents read from the database at start (SQLite and PostgreSQL):
after a restart the list is whole before any incident changes again."""

from __future__ import annotations

import datetime as dt

from dispatcher.calllog import db, store_incidents
from dispatcher.console.lists import OpenIncidents, read_open_incidents


def test_given_incidents_in_the_log_when_the_console_starts_then_open_ones_are_listed(
        sessions) -> None:  # noqa: ANN001
    """Open incidents come back with their device, agency and callback number; closed and
    unreachable ones do not."""
    now = dt.datetime(2026, 11, 27, 3, 0, tzinfo=dt.UTC)
    with db.transaction(sessions) as session:
        device = store_incidents.add_device(session, "app-7", token="t")
        open_one = store_incidents.record_alert(session, device, "a", "panic", now=now,
                                                callback_number="0811").incident.id
        handed = store_incidents.record_alert(session, device, "b", "panic", now=now).incident.id
        closed = store_incidents.record_alert(session, device, "c", "panic", now=now).incident.id
    with db.transaction(sessions) as session:
        for state in ("operator_ringing", "talking", "handed_to_agency"):
            store_incidents.set_incident_state(session, handed, state, now=now,
                                               agency_code="police")
        store_incidents.set_incident_state(session, closed, "cancelled", now=now)
    with db.transaction(sessions) as session:
        rows = read_open_incidents(session)
    incidents = OpenIncidents()
    incidents.load(rows)
    listed = {i["id"]: i for i in incidents.document()}
    assert set(listed) == {open_one, handed}
    assert listed[open_one]["device"] == "app-7"
    assert listed[open_one]["callback_number"] == "0811"
    assert listed[open_one]["opened_at"] == now.timestamp()
    assert (listed[handed]["state"], listed[handed]["agency"]) == ("handed_to_agency", "police")
