"""The one table of callbacks: a closed row never moves again; one restore gives both kinds."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from dispatcher.calllog import db, store_callbacks
from dispatcher.calllog.models import Callback, Incident

NOW = dt.datetime(2026, 12, 7, 8, 0, tzinfo=dt.UTC)


@pytest.fixture
def sessions(tmp_path: Path) -> Any:
    """A call log on SQLite, at the schema's head."""
    url = f"sqlite:///{tmp_path / 'log.db'}"
    db.upgrade(url)
    return db.make_sessionmaker(db.make_engine(url))


def test_given_a_done_row_when_set_back_to_pending_then_refused_and_the_row_unchanged(
        sessions: Any) -> None:
    """The call log refuses to reopen a closed callback (done → pending): a ValueError
    naming the state, and the row keeps its state, attempts and times."""
    with db.transaction(sessions) as session:
        row = store_callbacks.create_callback(session, "0811", now=NOW)
        store_callbacks.set_callback_state(session, row.id, "ringing", now=NOW)
        store_callbacks.set_callback_state(session, row.id, "done", now=NOW, result_linkedid="2.2")
        row_id = row.id
    with pytest.raises(ValueError, match="done"), db.transaction(sessions) as session:
        store_callbacks.set_callback_state(session, row_id, "pending",
                                           now=NOW + dt.timedelta(minutes=1))
    with db.transaction(sessions) as session:
        row = session.get(Callback, row_id)
        assert (row.state, row.attempts, row.result_linkedid, row.updated_at, row.done_at) == (
            "done", 1, "2.2", NOW, NOW)


def test_given_both_kinds_owed_when_restored_then_one_read_gives_each_its_own(
        sessions: Any) -> None:
    """``owed_callbacks`` reads the open rows once: the hotline's abandoned and dropped
    calls as list entries (a row left ringing is pending again), the alerts' as jobs whose
    incident still waits; closed rows and finished incidents are not owed."""
    from dispatcher.callbacks.store import owed_callbacks

    with db.transaction(sessions) as session:
        waiting = Incident(state="operator_ringing", created_at=NOW, updated_at=NOW)
        closed = Incident(state="closed", created_at=NOW, updated_at=NOW)
        session.add_all([waiting, closed])
        session.flush()
        a = store_callbacks.create_callback(session, "0811", reason="abandoned", now=NOW)
        store_callbacks.set_callback_state(session, a.id, "ringing", now=NOW)
        store_callbacks.create_callback(session, "0822", reason="dropped", now=NOW)
        gone = store_callbacks.create_callback(session, "0833", reason="abandoned", now=NOW)
        store_callbacks.set_callback_state(session, gone.id, "done", now=NOW)
        alert = store_callbacks.create_callback(session, "0844", reason="alert",
                                                incident_id=waiting.id, now=NOW)
        store_callbacks.create_callback(session, "0855", reason="alert", incident_id=closed.id,
                                        now=NOW)
        waiting_id, alert_id = waiting.id, alert.id
    with db.transaction(sessions) as session:
        owed = owed_callbacks(session)
    assert sorted((e.number, e.reason, e.state, e.attempts) for e in owed.missed) == [
        ("0811", "abandoned", "pending", 1), ("0822", "dropped", "pending", 0)]
    assert [(j.callback_id, j.incident_id, j.number, j.key) for j in owed.alerts] == [
        (alert_id, waiting_id, "0844", waiting_id)]
