"""The call log store on SQLite and PostgreSQL: schema, journeys, reconciliation, alerts."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, func, inspect, select, text
from sqlalchemy.orm import Session, sessionmaker

from dispatcher.calllog import (
    cel,
    db,
    journey,
    report_figures,
    report_period,
    store_callbacks,
    store_incidents,
    store_journeys,
)
from dispatcher.calllog.models import (
    Agency,
    Alert,
    Base,
    Call,
    CallEvent,
    Incident,
    Leg,
    Operator,
)
from tests.unit.calllog import calllog_scenarios as sc


def _write_cel(path: Path, rows: list[cel.CelRow], mode: str = "w") -> None:
    with open(path, mode, encoding="utf-8") as f:
        f.writelines(cel.iter_lines(rows))


# -- schema ------------------------------------------------------------------------------------


def test_given_a_fresh_database_when_upgraded_then_the_schema_matches_the_models(engine: Engine):
    """The packaged migrations build exactly what the models describe, at the head revision."""
    assert db.current_revision(engine) == db.head_revision()
    with engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert diff == []
    tables = set(inspect(engine).get_table_names())
    assert {"calls", "legs", "call_events", "alerts", "incidents", "devices"} <= tables


def test_given_an_upgraded_database_when_upgraded_again_then_nothing_changes(db_url: str):
    """Upgrading at every start is safe: the second run is a no-op at the same revision."""
    first = db.upgrade(db_url)
    second = db.upgrade(db_url)
    assert first == second == db.head_revision()


def test_given_sqlite_when_connected_then_wal_and_foreign_keys_are_on(tmp_path: Path):
    """The default backend runs in WAL mode with foreign keys enforced."""
    engine = db.make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    with engine.connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 1
    engine.dispose()


# -- journeys ----------------------------------------------------------------------------------


def test_given_a_finished_journey_when_saved_then_every_part_reads_back(
    sessions: sessionmaker[Session],
):
    """Call, legs with operator/agency rows, events, IVR choice, recording and the stored
    durations all come back; times come back as aware UTC."""
    record = journey.run(sc.failed_transfer_with_fallback().ami(), sc.DIRECTORY)[0]
    with db.transaction(sessions) as session:
        store_journeys.save_journey(session, record)
    with sessions() as session:
        call = store_journeys.get_call(session, "5000.1")
        assert call is not None
        assert call.outcome == "answered"
        assert call.started_at == dt.datetime.fromtimestamp(sc.T0, dt.UTC)
        assert call.started_at.tzinfo is not None
        assert (call.answer_seconds, call.queue_seconds, call.talk_seconds) == (10.0, 4.0, 97.0)
        assert call.answered_by is not None and call.answered_by.code == "op201"
        assert [leg.kind for leg in call.legs] == [leg.kind for leg in record.legs]
        attempts = [leg for leg in call.legs if leg.kind == "transfer_attempt"]
        assert [(a.agency.code, a.result, a.fallback) for a in attempts if a.agency] == [
            ("police", "no_answer", True),
            ("police", "answered", False),
        ]
        assert attempts[1].ring_seconds == 6.0
        assert len(call.events) == len(record.events)
        assert [e.seq for e in call.events] == sorted(e.seq for e in call.events)
        assert session.scalar(select(func.count()).select_from(Agency)) == 1
        assert session.scalar(select(func.count()).select_from(Operator)) == 1


def test_given_a_started_call_when_the_finished_record_arrives_then_it_replaces_it(
    sessions: sessionmaker[Session],
):
    """The start notice is replaced by the finished journey; a late start notice after that
    changes nothing."""
    builder = journey.JourneyBuilder(sc.DIRECTORY)
    events = sc.answered_call().ami()
    (started,) = builder.feed(events[0], 0.0)
    with db.transaction(sessions) as session:
        store_journeys.save_journey(session, started)
    with sessions() as session:
        assert store_journeys.get_call(session, "1000.1").outcome == "in_progress"  # type: ignore[union-attr]
        assert store_journeys.unfinished_calls(session) == ["1000.1"]
    finished = [r for e in events[1:] for r in builder.feed(e, 0.0)]
    with db.transaction(sessions) as session:
        store_journeys.save_journey(session, finished[-1])
        assert store_journeys.save_journey(session, started) is None
    with sessions() as session:
        call = store_journeys.get_call(session, "1000.1")
        assert call is not None and call.outcome == "answered"
        assert session.scalar(select(func.count()).select_from(Call)) == 1
        assert len(call.legs) == 3
        assert store_journeys.unfinished_calls(session) == []


# -- reconciliation ----------------------------------------------------------------------------


def test_given_calls_made_while_down_when_reconciled_twice_then_added_once(
    sessions: sessionmaker[Session], tmp_path: Path
):
    """Three journeys in the CEL file appear with their legs; a second pass adds nothing."""
    path = tmp_path / "Master.csv"
    rows = (
        sc.answered_call().cel()
        + sc.abandoned_in_queue().cel()
        + sc.failed_transfer_with_fallback().cel()
    )
    _write_cel(path, rows)
    with db.transaction(sessions) as session:
        first = cel.reconcile(session, str(path), sc.DIRECTORY)
    assert sorted(first.saved) == ["1000.1", "3000.1", "5000.1"]
    with db.transaction(sessions) as session:
        second = cel.reconcile(session, str(path), sc.DIRECTORY)
    assert second.saved == [] and second.rows_read == 0
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Call)) == 3
        call = store_journeys.get_call(session, "5000.1")
        assert call is not None and call.source == "cel"
        assert [leg.kind for leg in call.legs] == [
            "ivr",
            "queue_wait",
            "operator_talk",
            "transfer_attempt",
            "transfer_attempt",
            "agency_talk",
            "conference",
        ]
        legs_before = session.scalar(select(func.count()).select_from(Leg))
        events_before = session.scalar(select(func.count()).select_from(CallEvent))
    # Even with the cursor lost, the calls already in the log are not added again.
    with db.transaction(sessions) as session:
        store_journeys.set_cel_cursor(session, str(path), os.stat(path).st_ino, 0)
        third = cel.reconcile(session, str(path), sc.DIRECTORY)
    assert third.saved == [] and third.skipped == 3
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Leg)) == legs_before
        assert session.scalar(select(func.count()).select_from(CallEvent)) == events_before


def test_given_a_call_in_progress_at_the_end_of_the_file_when_reconciled_then_it_waits(
    sessions: sessionmaker[Session], tmp_path: Path
):
    """A journey without its end is left for the next pass, which completes it."""
    path = tmp_path / "Master.csv"
    done, ongoing = sc.abandoned_in_ivr().cel(), sc.answered_call().cel()
    _write_cel(path, ongoing[:8] + done)
    with db.transaction(sessions) as session:
        result = cel.reconcile(session, str(path), sc.DIRECTORY)
    assert result.saved == ["2000.1"] and result.unfinished == 1
    _write_cel(path, ongoing[8:], mode="a")
    with db.transaction(sessions) as session:
        result = cel.reconcile(session, str(path), sc.DIRECTORY)
    assert result.saved == ["1000.1"]
    with sessions() as session:
        call = store_journeys.get_call(session, "1000.1")
        assert call is not None and call.outcome == "answered" and call.talk_seconds == 60.0


def test_given_a_call_left_unfinished_by_a_crash_when_reconciled_then_it_is_completed(
    sessions: sessionmaker[Session], tmp_path: Path
):
    """The server saw the start, then died: the CEL file completes the call."""
    builder = journey.JourneyBuilder(sc.DIRECTORY)
    tl = sc.queued_twice()
    (started,) = builder.feed(tl.ami()[0], 0.0)
    with db.transaction(sessions) as session:
        store_journeys.save_journey(session, started)
    path = tmp_path / "Master.csv"
    _write_cel(path, tl.cel())
    with db.transaction(sessions) as session:
        result = cel.reconcile(session, str(path), sc.DIRECTORY)
    assert result.saved == ["4000.1"]
    with sessions() as session:
        call = store_journeys.get_call(session, "4000.1")
        assert call is not None and call.outcome == "answered" and call.queue_passes == 2


def test_given_a_call_logged_live_when_reconciled_then_the_live_record_stays(
    sessions: sessionmaker[Session], tmp_path: Path
):
    """A finished call saved from AMI is never overwritten by its CEL reconstruction."""
    tl = sc.answered_call()
    with db.transaction(sessions) as session:
        store_journeys.save_journey(session, journey.run(tl.ami(), sc.DIRECTORY)[0])
    path = tmp_path / "Master.csv"
    _write_cel(path, tl.cel())
    with db.transaction(sessions) as session:
        result = cel.reconcile(session, str(path), sc.DIRECTORY)
    assert result.saved == [] and result.skipped == 1
    with sessions() as session:
        call = store_journeys.get_call(session, "1000.1")
        assert call is not None and call.source == "ami"


def test_given_a_half_written_line_and_a_bad_line_when_read_then_neither_is_lost(
    tmp_path: Path,
):
    """A last line without newline is left for later; an unreadable line is reported."""
    path = tmp_path / "Master.csv"
    lines = list(cel.iter_lines(sc.abandoned_in_ivr().cel()))
    path.write_text(lines[0] + "garbage,line\n" + "".join(lines[1:]) + lines[0].rstrip("\n"))
    result = cel.read_rows(str(path))
    assert len(result.rows) == len(lines)
    assert len(result.bad_lines) == 1 and "fields" in result.bad_lines[0][1]
    assert result.end_offset == path.stat().st_size - len(lines[0].rstrip("\n"))


def test_given_a_rotated_cel_file_when_reconciled_then_it_is_read_from_the_start(
    sessions: sessionmaker[Session], tmp_path: Path
):
    """A new file (another inode) at the same path is read from its first line."""
    path = tmp_path / "Master.csv"
    _write_cel(path, sc.abandoned_in_ivr().cel())
    with db.transaction(sessions) as session:
        cel.reconcile(session, str(path), sc.DIRECTORY)
    os.rename(path, tmp_path / "Master.csv.1")
    _write_cel(path, sc.abandoned_in_queue().cel())
    with db.transaction(sessions) as session:
        result = cel.reconcile(session, str(path), sc.DIRECTORY)
    assert result.saved == ["3000.1"]


# -- alerts, devices, incidents, callbacks -----------------------------------------------------


def test_given_an_alert_when_retried_with_the_same_id_then_the_same_incident_comes_back(
    sessions: sessionmaker[Session],
):
    """Idempotency: the same (device, alert id) gives one alert and one incident; the same
    alert id from another device is another alert."""
    with db.transaction(sessions) as session:
        phone = store_incidents.add_device(session, "app-1", token="secret-token")
        other = store_incidents.add_device(session, "app-2", token="other-token")
        first = store_incidents.record_alert(
            session,
            phone,
            "a-1",
            "panic",
            lat=-6.2,
            lon=106.8,
            accuracy_m=12.0,
            callback_number="0811",
            note="tolong",
        )
    with db.transaction(sessions) as session:
        phone = store_incidents.get_device(session, "app-1")
        assert phone is not None
        again = store_incidents.record_alert(session, phone, "a-1", "panic", lat=-6.2, lon=106.8)
        elsewhere = store_incidents.record_alert(
            session,
            store_incidents.get_device(session, "app-2"),  # type: ignore[arg-type]
            "a-1",
            "fire",
        )
    assert first.created and not again.created and elsewhere.created
    assert again.incident.id == first.incident.id
    assert elsewhere.incident.id != first.incident.id
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Alert)) == 2
        assert session.scalar(select(func.count()).select_from(Incident)) == 2
        incident = store_incidents.get_incident(session, first.incident.id)
        assert incident is not None
        assert (incident.state, incident.lat, incident.note) == ("new", -6.2, "tolong")
        assert [t.to_state for t in incident.transitions] == ["new"]
    del other


def test_given_a_device_when_authenticating_then_only_its_token_works(
    sessions: sessionmaker[Session],
):
    """The token is stored hashed; a wrong token or a revoked device is refused."""
    token = store_incidents.new_token()
    with db.transaction(sessions) as session:
        device = store_incidents.add_device(session, "btn-1", kind="button", token=token)
        assert device.token_hash is not None and token not in device.token_hash
    with db.transaction(sessions) as session:
        assert store_incidents.authenticate_token(session, "btn-1", token) is not None
        assert store_incidents.authenticate_token(session, "btn-1", token + "x") is None
        assert store_incidents.authenticate_token(session, "nobody", token) is None
        assert store_incidents.revoke_device(session, "btn-1")
    with db.transaction(sessions) as session:
        assert store_incidents.authenticate_token(session, "btn-1", token) is None
        with pytest.raises(ValueError):
            store_incidents.add_device(session, "btn-1")


def test_given_an_incident_when_its_state_changes_then_each_step_is_recorded(
    sessions: sessionmaker[Session],
):
    """Transitions are kept in order; closing stamps closed_at; unknown states are refused."""
    now = dt.datetime(2026, 11, 27, 3, 0, tzinfo=dt.UTC)
    with db.transaction(sessions) as session:
        device = store_incidents.add_device(session, "app-9", token="t")
        outcome = store_incidents.record_alert(session, device, "x", "medical", now=now)
        incident_id = outcome.incident.id
    with db.transaction(sessions) as session:
        for state in ("operator_ringing", "talking", "handed_to_agency", "closed"):
            store_incidents.set_incident_state(
                session, incident_id, state, now=now, operator_code="op201", agency_code="health"
            )
        with pytest.raises(ValueError):
            store_incidents.set_incident_state(session, incident_id, "teleported")
    with sessions() as session:
        incident = store_incidents.get_incident(session, incident_id)
        assert incident is not None
        assert [(t.from_state, t.to_state) for t in incident.transitions] == [
            (None, "new"),
            ("new", "operator_ringing"),
            ("operator_ringing", "talking"),
            ("talking", "handed_to_agency"),
            ("handed_to_agency", "closed"),
        ]
        assert incident.closed_at == now
        assert store_incidents.open_incidents(session) == []


def test_given_callbacks_when_moved_through_states_then_pending_list_follows(
    sessions: sessionmaker[Session],
):
    """Pending and ringing callbacks are open; ringing counts attempts; done closes."""
    with db.transaction(sessions) as session:
        a = store_callbacks.create_callback(session, "0811").id
        b = store_callbacks.create_callback(session, "0822", reason="alert").id
    with db.transaction(sessions) as session:
        store_callbacks.set_callback_state(session, a, "ringing")
        store_callbacks.set_callback_state(session, a, "ringing")
        store_callbacks.set_callback_state(session, b, "done", result_linkedid="7000.1")
    with sessions() as session:
        open_ = store_callbacks.pending_callbacks(session)
        assert [(c.number, c.state, c.attempts) for c in open_] == [("0811", "ringing", 2)]


# -- reports on both backends ------------------------------------------------------------------


def test_given_the_same_calls_when_reported_on_this_backend_then_figures_match_sqlite(
    sessions: sessionmaker[Session], tmp_path: Path
):
    """The report's SQL gives the same figures here as on an in-memory SQLite database."""
    records = [
        journey.run(make().ami(), sc.DIRECTORY)[0]
        for make in (
            sc.answered_call,
            sc.abandoned_in_ivr,
            sc.abandoned_in_queue,
            sc.queued_twice,
            sc.failed_transfer_with_fallback,
            sc.ring_group,
            sc.callback_call,
        )
    ]
    reference = db.make_engine("sqlite://")
    db.upgrade(reference)
    options = report_period.ReportOptions(dt.date(2026, 11, 27), dt.date(2026, 11, 27))
    figures = []
    for factory in (sessions, db.make_sessionmaker(reference)):
        with db.transaction(factory) as session:
            for record in records:
                store_journeys.save_journey(session, record)
        with factory() as session:
            data = report_figures.build_report(
                session, options, now=dt.datetime(2026, 11, 28, tzinfo=dt.UTC)
            )
        figures.append(data)
    reference.dispose()
    assert figures[0] == figures[1]
    assert figures[0]["summary"]["offered"] == 6
    assert sum(h["offered"] for h in figures[0]["hourly"]) == 6
    assert figures[0]["hourly"][10]["offered"] == 6  # 03:00 UTC is 10:00 in Jakarta


def test_given_the_center_config_when_synced_then_reference_rows_follow_it(
    sessions: sessionmaker[Session], tmp_path: Path
):
    """Operators and agencies of the config become rows; one dropped from the config is kept
    (old calls refer to it) but marked inactive."""
    from dispatcher.config.loader import load_center

    root = Path(__file__).resolve().parents[2]
    center = load_center(root / "config" / "siaga.example.yaml", state_dir=tmp_path)
    with db.transaction(sessions) as session:
        store_journeys.ensure_operator(session, "199", "Retired")
        store_journeys.sync_center(session, center)
    with sessions() as session:
        operators = {o.code: o for o in session.scalars(select(Operator))}
        agencies = {a.code for a in session.scalars(select(Agency)) if a.active}
    assert {op.extension for op in center.operators} <= {
        c for c, o in operators.items() if o.active
    }
    assert operators["199"].active is False
    assert agencies == {a.key for a in center.agencies}


def test_given_a_real_asterisk22_cel_file_when_reconciled_twice_then_its_calls_are_added_once(
    sessions: sessionmaker[Session], tmp_path: Path
):
    """The CEL file a real Asterisk 22 wrote for two hotline calls (tests/data/calllog): both
    calls appear with their menu and queue legs; the second pass adds nothing."""
    import shutil

    source = Path(__file__).resolve().parents[1] / "data" / "calllog" / "asterisk22-hotline.cel.csv"
    path = tmp_path / "Master.csv"
    shutil.copy(source, path)
    with db.transaction(sessions) as session:
        first = cel.reconcile(session, str(path))
    with db.transaction(sessions) as session:
        second = cel.reconcile(session, str(path))
    assert len(first.saved) == 2 and first.bad_lines == [] and first.unfinished == 0
    assert second.saved == []
    with sessions() as session:
        calls = {c.caller_number: c for c in session.scalars(select(Call))}
        assert set(calls) == {"08123456789", "08120000002"}
        assert calls["08123456789"].outcome == "abandoned_queue"
        assert [leg.kind for leg in calls["08123456789"].legs] == ["ivr", "queue_wait"]
        assert calls["08120000002"].outcome == "abandoned_ivr"


def test_given_real_transfers_in_cel_when_reconciled_then_three_calls_and_no_stray_leg(
    sessions: sessionmaker[Session], tmp_path: Path
):
    """Blind, consulted-with-fallback and conference transfers from a real Asterisk 22: three
    calls with their agency legs; the conference's agency leg (a linkedid of its own) is not
    logged as a call; a second pass adds nothing."""
    import shutil

    from dispatcher.calllog.journey import Directory
    from dispatcher.config.loader import load_center

    root = Path(__file__).resolve().parents[2]
    center = load_center(root / "config" / "siaga.example.yaml", state_dir=tmp_path)
    path = tmp_path / "Master.csv"
    shutil.copy(root / "tests" / "data" / "calllog" / "asterisk22-transfers.cel.csv", path)
    directory = Directory.from_center(center)
    with db.transaction(sessions) as session:
        first = cel.reconcile(session, str(path), directory)
    with db.transaction(sessions) as session:
        second = cel.reconcile(session, str(path), directory)
    assert len(first.saved) == 3 and second.saved == []
    with sessions() as session:
        calls = list(session.scalars(select(Call).order_by(Call.started_at)))
        assert [c.outcome for c in calls] == ["answered"] * 3
        agency_legs = [
            [(leg.kind, leg.result) for leg in c.legs if leg.agency_id is not None] for c in calls
        ]
    assert agency_legs == [
        [("transfer_attempt", "answered"), ("agency_talk", None)],
        [
            ("transfer_attempt", "no_answer"),
            ("transfer_attempt", "answered"),
            ("agency_talk", None),
            ("agency_talk", None),
        ],
        [("transfer_attempt", "answered"), ("agency_talk", None)],
    ]


def test_given_two_retries_racing_when_recorded_then_one_alert_and_the_same_incident(
    sessions: sessionmaker[Session], engine: Engine, monkeypatch: pytest.MonkeyPatch
):
    """Two requests with the same alert id committing at the same moment (PostgreSQL, several
    connections): the unique constraint decides, the loser returns the winner's incident.
    (SQLite is written by one thread, the call log writer, so it never races.)"""
    import threading

    if engine.dialect.name == "sqlite":
        pytest.skip("SQLite is written by the single writer thread only")
    with db.transaction(sessions) as session:
        store_incidents.add_device(session, "racer", token="t")
    barrier = threading.Barrier(2)
    outcomes: list[tuple[int, bool]] = []
    errors: list[BaseException] = []
    looked = threading.local()
    find = store_incidents._find_alert

    def find_then_wait(session: Session, device_pk: int, alert_id: str) -> Alert | None:
        # Both requests look before either inserts: the race the constraint must settle.
        found = find(session, device_pk, alert_id)
        if not getattr(looked, "done", False):
            looked.done = True
            assert found is None
            barrier.wait(10)
        return found

    monkeypatch.setattr(store_incidents, "_find_alert", find_then_wait)

    def attempt() -> None:
        try:
            with sessions() as session, session.begin():
                device = store_incidents.get_device(session, "racer")
                assert device is not None
                result = store_incidents.record_alert(session, device, "same-id", "panic")
                outcomes.append((result.incident.id, result.created))
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=attempt) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    assert len({incident for incident, _ in outcomes}) == 1
    assert sorted(created for _, created in outcomes) == [False, True]
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Alert)) == 1
        assert session.scalar(select(func.count()).select_from(Incident)) == 1
