"""Faults of the PBX side under a running center (`siaga up`, real Asterisk, SIPp citizens,
pjsua2 operators): Asterisk killed with calls up, and the AMI connection cut under load.

One center serves the file (each test leaves it with no calls up).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text

from dispatcher.credentials import ensure_credentials
from tests.e2e.faults_helpers import Citizens, cel_started, metric
from tests.harness import SiagaProcess, running_center, wait_for

pytestmark = pytest.mark.asterisk

CALLS = 20
ANSWERED = 2  # operators who take a call each; the others wait in the queue


@pytest.fixture(scope="module")
def center(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SiagaProcess]:
    """`siaga up` for this file's tests."""
    with running_center(tmp_path_factory.mktemp("faults-pbx")) as server:
        yield server


def db_url(server: SiagaProcess) -> str:
    """The center's call log."""
    return server.center.database_url


def closed_calls(server: SiagaProcess, linkedids: set[str]
                 ) -> dict[str, tuple[str, str | None, int | None, str | None]]:
    """linkedid → (outcome, ended_at, hangup_cause, answered_at) of those calls (plain SQL)."""
    engine = create_engine(db_url(server))
    try:
        with engine.connect() as con:
            rows = con.execute(text(
                "SELECT linkedid, outcome, ended_at, hangup_cause, answered_at FROM calls"))
            return {r[0]: (r[1], r[2], r[3], r[4]) for r in rows if r[0] in linkedids}
    finally:
        engine.dispose()


def owed_callbacks(server: SiagaProcess) -> dict[str, str]:
    """Origin linkedid → reason of every callback owed for a missed call (plain SQL)."""
    engine = create_engine(db_url(server))
    try:
        with engine.connect() as con:
            rows = con.execute(text(
                "SELECT c.linkedid, b.reason FROM callbacks b JOIN calls c"
                " ON c.id = b.origin_call_id WHERE b.state IN ('pending', 'ringing')"))
            return {r[0]: r[1] for r in rows}
    finally:
        engine.dispose()


def queue_callers(server: SiagaProcess) -> int:
    """Callers waiting in the operators' queue, by Asterisk's own CLI."""
    import re

    found = re.search(r"has (\d+) calls?", server.cli("queue show operators"))
    return int(found.group(1)) if found else -1


def test_given_20_calls_up_when_asterisk_is_killed_then_every_journey_is_closed_and_owed(
        center: SiagaProcess, phones) -> None:  # noqa: ANN001
    """20 citizens call and press 0; two operators take one each, 18 wait in the queue.
    Asterisk is killed (SIGKILL): the server notices, starts a new one, and every one of
    the 20 journeys is closed in the call log (an outcome, an end time, a hangup cause as
    the reason); each of the 18 citizens cut off before an operator took them is owed a
    callback."""
    creds = ensure_credentials(center.center)
    sip = f"{center.center.sip.host}:{center.center.sip.port}"
    desks = [phones.extension(op.extension, creds.password(op.extension), sip)
             for op in center.center.operators[:ANSWERED]]
    citizens = Citizens(center)
    try:
        before = cel_started(center, center.center.hotline[0])
        citizens.call(CALLS, 10, hold_ms=120_000, to_queue=True, timeout_s=300)
        taken = []
        for desk in desks:
            call = desk.wait_incoming(60)
            call.answer()
            call.wait_confirmed()
            taken.append(call)
        wait_for(lambda: queue_callers(center) == CALLS - ANSWERED, 60,
                 f"{CALLS - ANSWERED} citizens waiting in the queue")
        started = cel_started(center, center.center.hotline[0]) - before
        assert len(started) == CALLS

        first = center.asterisk_pid()
        assert first is not None
        os.kill(first, signal.SIGKILL)
        killed_at = time.monotonic()
        wait_for(lambda: center.asterisk_pid() not in (None, first), 30, "a new Asterisk")
        center.wait_ready(60)
        assert "Asterisk died" in center.output()

        def all_closed() -> bool:
            rows = closed_calls(center, started)
            return len(rows) == CALLS and all(
                outcome != "in_progress" and ended and cause is not None
                for outcome, ended, cause, _ in rows.values())

        wait_for(all_closed, 30, "the 20 journeys to be closed in the call log")
        rows = closed_calls(center, started)
        unanswered = {lid for lid, row in rows.items() if row[3] is None}
        assert len(unanswered) == CALLS - ANSWERED, rows
        wait_for(lambda: unanswered <= set(owed_callbacks(center)), 30,
                 "a callback owed to each citizen cut off in the queue")
        closed_s = time.monotonic() - killed_at
        outcomes = sorted({row[0] for row in rows.values()})
        print(f"\nfault: Asterisk SIGKILLed with {CALLS} calls up; journeys closed "
              f"({outcomes}) and {len(unanswered)} callbacks owed {closed_s:.1f} s after the "
              f"kill; reactor lag max {metric(center, 'siaga_reactor_lag_max_seconds'):.3f} s",
              file=sys.stderr)
    finally:
        citizens.close()
