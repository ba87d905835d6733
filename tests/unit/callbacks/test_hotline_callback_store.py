"""Callbacks persisted through the call log's writer: never on the reactor, always in order."""

from __future__ import annotations

from typing import Any

from twisted.internet import defer

from dispatcher.hotline.callbacks import CallbackList, MissedCall, WriterCallbackStore


class FakeWriter:
    """Records submitted work; the test decides when each write 'commits'."""

    def __init__(self) -> None:
        self.jobs: list[tuple[Any, tuple, defer.Deferred]] = []

    def submit(self, fn: Any, *args: Any) -> defer.Deferred:
        d: defer.Deferred = defer.Deferred()
        self.jobs.append((fn, args, d))
        return d


def missed(number: str = "081299") -> MissedCall:
    return MissedCall(reason="abandoned", number=number, linkedid="1.1",
                      channel="PJSIP/anonymous-0001", endpoint="anonymous", source=None,
                      category="police", waited=12.0, talked=None)


def test_given_a_missed_call_when_listed_then_insert_is_queued_not_run() -> None:
    """Adding a callback submits one insert to the writer and returns at once."""
    writer = FakeWriter()
    callbacks = CallbackList(WriterCallbackStore(writer.submit))
    entry = callbacks.add(missed(), 10.0)
    assert entry is not None and entry.store_id is None
    assert len(writer.jobs) == 1 and writer.jobs[0][1][:2] == ("081299", "abandoned")


def test_given_a_state_change_before_commit_when_insert_commits_then_update_follows() -> None:
    """A state change made while the insert is queued is written after it, with its id."""
    writer = FakeWriter()
    callbacks = CallbackList(WriterCallbackStore(writer.submit))
    entry = callbacks.add(missed(), 10.0)
    assert entry is not None
    callbacks.set_state(entry.id, "ringing")
    assert len(writer.jobs) == 1  # nothing to update before the row exists
    writer.jobs[0][2].callback(7)
    assert entry.store_id == 7
    assert len(writer.jobs) == 2 and writer.jobs[1][1] == (7,)
    callbacks.set_state(entry.id, "done", result_linkedid="2.2")
    assert len(writer.jobs) == 3 and writer.jobs[2][1] == (7,)


def test_given_a_failed_insert_when_state_changes_then_nothing_more_is_written() -> None:
    """A lost insert is logged; later changes of that entry are not sent with no row id."""
    writer = FakeWriter()
    callbacks = CallbackList(WriterCallbackStore(writer.submit))
    entry = callbacks.add(missed(), 10.0)
    assert entry is not None
    callbacks.set_state(entry.id, "ringing")
    writer.jobs[0][2].errback(RuntimeError("database is down"))
    assert entry.store_id is None and len(writer.jobs) == 1
