"""Group commit of alerts (``AlertBatcher``): several alerts in one transaction, each 201
sent only after its batch committed, a failed batch failing every alert in it.

The writer thread is played by :class:`HeldWriter`: it keeps each write until the test runs
it (in a real SQLite transaction) or fails it, so the tests choose what is in flight when.
Requests go through a real Twisted Site over ``StringTransport`` connections that stay open,
so several requests can wait for the same batch.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.orm import Session, sessionmaker
from twisted.internet import defer, task
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from twisted.web.server import Site

from dispatcher.alerts import storage
from dispatcher.alerts.batcher import AlertBatcher
from dispatcher.alerts.service import AlertService
from dispatcher.alerts.settings import AlertSettings
from dispatcher.api.base import ApiRequest, JsonResource
from dispatcher.api.resources import build_api
from dispatcher.calllog import db
from tests.unit.alerts.alerts_support import (
    NOW,
    TOKEN,
    counts,
    enrol,
    inline,
    make_db,
    parse_response,
)

EMPTY = {"alerts": 0, "incidents": 0, "incident_transitions": 0, "callbacks": 0}


class HeldWriter:
    """A stand-in for ``CallLogWriter.submit`` that holds every write until told."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions
        self.held: list[tuple[Any, tuple[Any, ...], defer.Deferred[Any]]] = []

    def __call__(self, fn: Any, *args: Any) -> defer.Deferred[Any]:
        d: defer.Deferred[Any] = defer.Deferred()
        self.held.append((fn, args, d))
        return d

    def batch_sizes(self) -> list[int]:
        """How many alerts each held ``commit_alerts`` write carries."""
        return [len(args[0]) for fn, args, _ in self.held if fn is storage.commit_alerts]

    def commit_next(self, *, reply: bool = True) -> Any:
        """Run the oldest write in a transaction and commit it; fire its Deferred unless
        ``reply`` is False (the process died between the commit and the callback)."""
        fn, args, d = self.held.pop(0)
        with db.transaction(self.sessions) as session:
            result = fn(session, *args)
        if reply:
            d.callback(result)
        return result

    def fail_next(self) -> None:
        """Run the oldest write as the writer does, with the database refusing the batch's
        last insert (its callbacks), as a full disk would: the writer's transaction fails.
        The refusal is SQLite's own (an authorizer denying inserts into ``callbacks``), so
        it reaches every path a write can take, the driver's cursor included."""
        fn, args, d = self.held.pop(0)
        engine = self.sessions.kw["bind"]

        def refuse_callbacks(action: int, table: str | None, *_: Any) -> int:
            if action == sqlite3.SQLITE_INSERT and table == "callbacks":
                return sqlite3.SQLITE_DENY
            return sqlite3.SQLITE_OK

        def on_begin(connection: Any) -> None:
            connection.connection.driver_connection.set_authorizer(refuse_callbacks)

        event.listen(engine, "begin", on_begin)
        try:
            with db.transaction(self.sessions) as session:
                fn(session, *args)
        except Exception as exc:  # handed to the caller as a failed Deferred, as the writer does
            assert "not authorized" in str(exc)
            d.errback(exc)
        else:
            raise AssertionError("the injected fault did not fire")
        finally:
            event.remove(engine, "begin", on_begin)
            with engine.connect() as connection:
                connection.connection.driver_connection.set_authorizer(None)


class Client:
    """Requests on connections that stay open until their answer is read."""

    def __init__(self, service: AlertService, clock: task.Clock) -> None:
        root = JsonResource()
        root.putChild(b"api", build_api(service))
        self.site = Site(root, requestFactory=ApiRequest, reactor=clock)

    def post(self, alert_id: str) -> StringTransport:
        """Send one alert of app1; the transport collects its answer."""
        body = json.dumps({"alert_id": alert_id, "device_id": "app1", "type": "panic",
                           "location": {"lat": 1.4756, "lon": 125.1736},
                           "callback_number": "081234567890"}).encode()
        head = ("POST /api/v1/alerts HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                "Content-Type: application/json\r\n"
                f"Authorization: Bearer {TOKEN}\r\nContent-Length: {len(body)}\r\n\r\n")
        address = IPv4Address("TCP", "127.0.0.1", 40000)
        proto = self.site.buildProtocol(address)
        transport = StringTransport(peerAddress=address)
        proto.makeConnection(transport)
        proto.dataReceived(head.encode() + body)
        return transport


def answer(transport: StringTransport) -> tuple[int, dict[str, Any]]:
    """The status and JSON document written on ``transport``."""
    status, _, body = parse_response(transport.value())
    return status, json.loads(body)


def make(tmp_path: Path, settings: AlertSettings | None = None
         ) -> tuple[AlertService, HeldWriter, sessionmaker[Session], task.Clock]:
    """A service whose writes are held, reads run at once, on a real SQLite call log."""
    clock = task.Clock()
    clock.advance(NOW)
    sessions = make_db(tmp_path)
    enrol(sessions, "app1", token=TOKEN)
    writer = HeldWriter(sessions)
    settings = settings or AlertSettings(rate_burst=100)
    return AlertService(clock, writer, inline(sessions), None, settings), writer, sessions, clock


def test_given_alerts_arriving_during_a_commit_then_they_share_the_next_transaction(
        tmp_path: Path) -> None:
    """The first alert is written at once, alone; three arriving while it is written wait and
    then go in one transaction together; nobody hears anything before their batch commits,
    and each then hears 201 with its own incident."""
    service, writer, sessions, clock = make(tmp_path)
    client = Client(service, clock)
    first = client.post(str(uuid.uuid4()))
    assert writer.batch_sizes() == [1]
    later = [client.post(str(uuid.uuid4())) for _ in range(3)]
    assert writer.batch_sizes() == [1]  # queued behind the batch in flight
    assert first.value() == b"" and all(t.value() == b"" for t in later)

    writer.commit_next()
    assert answer(first)[0] == 201
    assert writer.batch_sizes() == [3]
    assert all(t.value() == b"" for t in later)  # not committed yet: no answer yet

    writer.commit_next()
    replies = [answer(t) for t in later]
    assert [status for status, _ in replies] == [201, 201, 201]
    assert len({doc["incident_id"] for _, doc in replies}) == 3
    assert counts(sessions) == {"alerts": 4, "incidents": 4, "incident_transitions": 4,
                                "callbacks": 4}


def test_given_batch_fails_to_commit_then_every_alert_in_it_gets_503_json_and_none_201(
        tmp_path: Path) -> None:
    """A batch of three whose transaction fails (the disk fills up at its last insert): all
    three hear 503 with a JSON reason telling them to retry with the same alert_id; none
    hears 201; the database holds only the alert of the batch before, which committed, and
    nothing of the failed batch (its incidents and alerts inserted before the fault too)."""
    service, writer, sessions, clock = make(tmp_path)
    client = Client(service, clock)
    first = client.post(str(uuid.uuid4()))
    doomed = [client.post(str(uuid.uuid4())) for _ in range(3)]
    writer.commit_next()
    assert writer.batch_sizes() == [3]

    writer.fail_next()
    for transport in doomed:
        status, doc = answer(transport)
        assert status == 503
        assert doc["error"] == "storage_unavailable"
        assert "same alert_id" in doc["reason"]
    assert answer(first)[0] == 201
    assert counts(sessions) == {"alerts": 1, "incidents": 1, "incident_transitions": 1,
                                "callbacks": 1}
    assert service.counts.committed == 1
    assert service.counts.refused == {"storage_unavailable": 3}


def test_given_crash_between_commit_and_reply_when_app_retries_then_nothing_lost_or_doubled(
        tmp_path: Path) -> None:
    """The process dies after the batch committed but before any 201 went out: the apps
    heard nothing and retry against the restarted server with the same alert ids. Each
    retry answers 200 with the incident the lost batch created; there is one incident and
    one owed callback per alert, and the restarted server's recovery finds every callback."""
    service, writer, sessions, clock = make(tmp_path)
    client = Client(service, clock)
    ids = [str(uuid.uuid4()) for _ in range(4)]
    first = client.post(ids[0])
    in_batch = [client.post(alert_id) for alert_id in ids[1:]]
    writer.commit_next()
    receipts = writer.commit_next(reply=False)  # committed, then the process died
    assert all(t.value() == b"" for t in in_batch)

    clock2 = task.Clock()
    clock2.advance(NOW + 5)
    restarted = AlertService(clock2, inline(sessions), inline(sessions), None,
                             AlertSettings(rate_burst=100))
    retry = Client(restarted, clock2)
    replies = [answer(retry.post(alert_id)) for alert_id in ids[1:]]
    assert [status for status, _ in replies] == [200, 200, 200]
    assert [doc["incident_id"] for _, doc in replies] == [r.incident_id for r in receipts]
    assert answer(first)[0] == 201
    assert counts(sessions) == {"alerts": 4, "incidents": 4, "incident_transitions": 4,
                                "callbacks": 4}
    with db.transaction(sessions) as session:
        owed = storage.pending_callbacks(session)
    assert sorted(job.incident_id for job in owed) == sorted(
        [answer(first)[1]["incident_id"], *(r.incident_id for r in receipts)])


def test_given_batch_size_one_then_each_alert_has_its_own_transaction(tmp_path: Path) -> None:
    """``commit_batch`` 1 (the benchmark's baseline): alerts queued behind a commit are
    written one per transaction, in order, each answered 201 once its own commit is done."""
    service, writer, sessions, clock = make(tmp_path, AlertSettings(rate_burst=100,
                                                                    commit_batch=1))
    client = Client(service, clock)
    sent = [client.post(str(uuid.uuid4())) for _ in range(3)]
    for done in range(3):
        assert writer.batch_sizes() == [1]
        writer.commit_next()
        assert [t.value() != b"" for t in sent] == [i <= done for i in range(3)]
    assert [answer(t)[0] for t in sent] == [201, 201, 201]


def test_given_batch_size_under_one_then_refused() -> None:
    """A batch size under 1 is refused at once."""
    with pytest.raises(ValueError):
        AlertBatcher(lambda *a: defer.succeed([]), lambda: None, 0)
