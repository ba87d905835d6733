"""Missed-call detection (sans-IO, from AMI events) and the callback list."""

from __future__ import annotations

from pathlib import Path

import pytest

from dispatcher.hotline.callbacks import (
    ABANDONED,
    DROPPED,
    CallbackEntry,
    CallbackList,
    MissedCall,
    MissedCallDetector,
    SqlCallbackStore,
    endpoint_of,
)

CITIZEN = {"Channel": "PJSIP/anonymous-00000001", "Uniqueid": "1700.1", "Linkedid": "1700.1",
           "CallerIDNum": "08123"}


def ev(detector: MissedCallDetector, name: str, now: float, **fields: str) -> list[MissedCall]:
    """Feed one event about the citizen's channel (fields override)."""
    return detector.feed(name, {**CITIZEN, **fields}, now)


def start_call(detector: MissedCallDetector, now: float = 100.0, category: str = "police",
               source: str = "10.0.0.7:5062") -> None:
    """What the hotline dialplan makes Asterisk say as a call starts."""
    ev(detector, "Newchannel", now)
    ev(detector, "VarSet", now, Variable="__SIAGA_CALL", Value="1700.1")
    ev(detector, "VarSet", now, Variable="SIAGA_CITIZEN", Value="yes")
    ev(detector, "VarSet", now, Variable="__SIAGA_FROM", Value=source)
    ev(detector, "VarSet", now + 2, Variable="__SIAGA_CATEGORY", Value=category)


def test_given_a_caller_who_hangs_up_in_the_queue_then_abandoned_with_how_to_call_back() -> None:
    """Never answered: abandoned, with number, endpoint, source, category, waiting time."""
    d = MissedCallDetector()
    start_call(d)
    ev(d, "QueueCallerJoin", 103)
    assert d.tracked == 1
    missed = ev(d, "Hangup", 130)
    assert missed == [MissedCall(reason=ABANDONED, number="08123", linkedid="1700.1",
                                 channel="PJSIP/anonymous-00000001", endpoint="anonymous",
                                 source="10.0.0.7:5062", category="police", waited=30.0,
                                 talked=None, queued=True)]
    assert d.tracked == 0


def test_given_a_caller_who_hangs_up_in_the_menu_then_abandoned_too() -> None:
    """Before the queue (still in the IVR) counts: nobody helped."""
    d = MissedCallDetector()
    start_call(d, category="unknown")
    assert [m.reason for m in ev(d, "Hangup", 104)] == [ABANDONED]


def test_given_a_call_ending_right_after_answer_then_dropped() -> None:
    """Answered, then gone within dropped_seconds, not handed over: dropped."""
    d = MissedCallDetector(dropped_seconds=5)
    start_call(d)
    ev(d, "AgentConnect", 110, DestChannel="PJSIP/201-00000002")
    missed = ev(d, "Hangup", 112.5)
    assert [(m.reason, m.waited, m.talked) for m in missed] == [(DROPPED, 10.0, 2.5)]


def test_given_a_call_that_lasted_when_it_ends_then_nothing_is_owed() -> None:
    """A conversation longer than dropped_seconds is a call that was served."""
    d = MissedCallDetector(dropped_seconds=5)
    start_call(d)
    ev(d, "AgentConnect", 110)
    assert ev(d, "Hangup", 140) == []


@pytest.mark.parametrize("handover", [
    ("Newexten", {"Context": "agency-police"}),
    ("Newexten", {"Context": "siaga-conference"}),
    ("BlindTransfer", {}),
    ("ConfbridgeJoin", {}),
])
def test_given_a_quick_handover_to_an_agency_then_not_a_drop(handover) -> None:  # noqa: ANN001
    """An operator who transfers within seconds did the job: no callback."""
    d = MissedCallDetector(dropped_seconds=5)
    start_call(d)
    ev(d, "AgentConnect", 110)
    name, fields = handover
    ev(d, name, 111, **fields)
    assert ev(d, "Hangup", 112) == []


def test_given_channels_that_are_not_hotline_citizens_then_ignored() -> None:
    """An operator's own call, or a channel that set other variables, is never tracked."""
    d = MissedCallDetector()
    d.feed("VarSet", {"Channel": "PJSIP/201-00000009", "Uniqueid": "9.9",
                      "Variable": "__SIAGA_CALL", "Value": "9.9"}, 1)
    d.feed("VarSet", {"Channel": "PJSIP/201-00000009", "Uniqueid": "9.9",
                      "Variable": "SIAGA_CITIZEN", "Value": "no"}, 1)
    assert d.feed("Hangup", {"Uniqueid": "9.9"}, 2) == []
    assert d.tracked == 0


def test_given_a_withheld_number_then_missed_but_number_is_empty() -> None:
    """'anonymous' / '<unknown>' caller IDs are no number to call."""
    d = MissedCallDetector()
    ev(d, "VarSet", 1, Variable="SIAGA_CITIZEN", Value="yes", CallerIDNum="<unknown>")
    assert [m.number for m in ev(d, "Hangup", 3)] == [""]


def test_given_channel_names_when_asked_for_endpoint_then_pjsip_endpoint_or_empty() -> None:
    """The endpoint the call came in on tells how to call back."""
    assert endpoint_of("PJSIP/trunk-0000001f") == "trunk"
    assert endpoint_of("PJSIP/my-trunk-0000001f") == "my-trunk"
    assert endpoint_of("Local/112@public-00000001;2") == ""


def missed(number: str = "08123", linkedid: str = "1.1", source: str | None = None
           ) -> MissedCall:
    """A missed call."""
    return MissedCall(ABANDONED, number, linkedid, "PJSIP/anonymous-1", "anonymous", source,
                      "fire", 12.0, None)


class RecordingStore:
    """A persistence hook that remembers what it was told (and can be made to fail)."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.created_ids: list[int] = []
        self.updates: list[tuple[int, str]] = []

    def created(self, entry: CallbackEntry) -> int | None:
        """Remember; return a store id."""
        if self.fail:
            raise RuntimeError("database down")
        self.created_ids.append(entry.id)
        return 1000 + entry.id

    def updated(self, entry: CallbackEntry) -> None:
        """Remember."""
        self.updates.append((entry.id, entry.state))


def test_given_the_same_number_missing_twice_then_one_callback_with_both_calls() -> None:
    """One open callback per number; the newest source wins."""
    store = RecordingStore()
    seen: list[int] = []
    cbs = CallbackList(store, on_change=lambda e: seen.append(e.id))
    first = cbs.add(missed(linkedid="1.1", source="10.0.0.1:5060"), now=10)
    again = cbs.add(missed(linkedid="2.2", source="10.0.0.2:5060"), now=20)
    other = cbs.add(missed(number="08999", linkedid="3.3"), now=15)
    assert first is again and first is not None and other is not None
    assert first.calls == ["1.1", "2.2"] and first.source == "10.0.0.2:5060"
    assert first.store_id == 1000 + first.id
    assert [e.number for e in cbs.pending()] == ["08123", "08999"]
    assert store.created_ids == [first.id, other.id] and seen == [first.id, other.id]


def test_given_states_when_set_then_attempts_counted_and_closed_entries_leave_pending() -> None:
    """ringing counts an attempt; done closes; a new miss then opens a new entry."""
    store = RecordingStore()
    cbs = CallbackList(store)
    entry = cbs.add(missed(), now=1)
    assert entry is not None
    cbs.set_state(entry.id, "ringing")
    cbs.set_state(entry.id, "pending")
    cbs.set_state(entry.id, "ringing")
    cbs.set_state(entry.id, "done", result_linkedid="9.9")
    assert entry.attempts == 2 and entry.result_linkedid == "9.9" and cbs.pending() == []
    assert store.updates[-1] == (entry.id, "done")
    assert cbs.add(missed(), now=5) is not entry
    with pytest.raises(ValueError):
        cbs.set_state(entry.id, "forgotten")


def test_given_no_number_then_no_callback() -> None:
    """A withheld number cannot be called back."""
    assert CallbackList().add(missed(number=""), now=1) is None


def test_given_a_failing_store_then_the_callback_is_still_kept() -> None:
    """Persistence failing is logged; the in-memory list still owes the call."""
    cbs = CallbackList(RecordingStore(fail=True))
    entry = cbs.add(missed(), now=1)
    assert entry is not None and entry.store_id is None
    assert cbs.pending() == [entry]


def test_given_the_call_log_database_when_persisting_then_rows_follow_the_list(
        tmp_path: Path) -> None:
    """SqlCallbackStore writes into the call log's callbacks table."""
    from dispatcher.calllog import db, store_callbacks

    url = f"sqlite:///{tmp_path / 'log.db'}"
    db.upgrade(url)
    factory = db.make_sessionmaker(db.make_engine(url))
    cbs = CallbackList(SqlCallbackStore(factory))
    entry = cbs.add(missed(number="0811"), now=1)
    assert entry is not None and entry.store_id is not None
    cbs.set_state(entry.id, "ringing")
    with db.transaction(factory) as session:
        rows = store_callbacks.pending_callbacks(session)
        assert [(r.number, r.state, r.attempts, r.reason) for r in rows] == [
            ("0811", "ringing", 1, ABANDONED)]


# -- missed calls found afterwards (CEL reconciliation) ---------------------------------------

def _journey(timeline: object) -> object:
    from dispatcher.calllog import journey
    from tests.unit.calllog import calllog_scenarios as sc

    return journey.run(timeline.ami(), sc.DIRECTORY)[0]  # type: ignore[attr-defined]


def test_given_a_journey_abandoned_in_the_queue_when_found_late_then_a_missed_call() -> None:
    """The same facts the live detector reports: abandoned, the number, the category."""
    from dispatcher.hotline.callbacks import missed_from_journey
    from tests.unit.calllog import calllog_scenarios as sc

    record = _journey(sc.abandoned_in_queue(after=20.0, number="0812222"))
    missed = missed_from_journey(record, ["112"], now=sc.T0 + 60)
    assert missed is not None
    assert (missed.reason, missed.number, missed.category, missed.linkedid) == (
        ABANDONED, "0812222", "fire", "3000.1")
    assert missed.waited == 20.0 and missed.endpoint == "trunk"


def test_given_a_flood_call_found_only_in_cel_when_judged_then_it_keeps_its_source() -> None:
    """A call the server learns of only from CEL (away, or its live events lagging behind a
    flood) carries the SIP source address the dialplan recorded, so the per-source bound
    holds for it too and an app user can be rung back; a value that is no address is not
    taken."""
    from dispatcher.hotline.callbacks import CallbackList, missed_from_journey
    from tests.unit.calllog import calllog_scenarios as sc

    def abandoned_from(linkedid: str, number: str, source: str) -> object:
        timeline = sc.Timeline(linkedid, sc.T0)
        timeline.channel(0.0, linkedid, f"PJSIP/anonymous-{linkedid}", number, "112")
        timeline.mark(0.1, linkedid, "FROM", source)
        timeline.answer(0.5, linkedid)
        timeline.queue_join(5.0, linkedid)
        timeline.queue_abandon(20.0, linkedid)
        timeline.end(20.0)
        return _journey(timeline)

    callbacks = CallbackList(max_open=100, max_per_source=3)
    for i in range(10):
        record = abandoned_from(f"77{i:02d}.1", f"08990{i:02d}", f"127.0.0.2:{5060 + i}")
        missed = missed_from_journey(record, ["112"], now=sc.T0 + 60)
        assert missed is not None and missed.source == f"127.0.0.2:{5060 + i}"
        callbacks.add(missed, sc.T0 + 60)
    assert callbacks.open_count == 3
    forged = abandoned_from("7800.1", "0899100", "127.0.0.2:5060\r\nEvent: x")
    assert missed_from_journey(forged, ["112"], now=sc.T0 + 60).source is None


def test_given_journeys_that_were_not_missed_or_are_old_then_none() -> None:
    """An answered call with a real conversation, a call to another number, and a call that
    ended more than a day ago are not owed a callback."""
    from dispatcher.hotline.callbacks import LATE_MISSED_WINDOW, missed_from_journey
    from tests.unit.calllog import calllog_scenarios as sc

    answered = _journey(sc.answered_call(talk=60.0))
    assert missed_from_journey(answered, ["112"], now=sc.T0 + 100) is None
    abandoned = _journey(sc.abandoned_in_queue(after=20.0))
    assert missed_from_journey(abandoned, ["11245"], now=sc.T0 + 60) is None
    assert missed_from_journey(abandoned, ["112"],
                               now=sc.T0 + 20 + LATE_MISSED_WINDOW + 1) is None


def test_given_a_call_cut_two_seconds_after_the_answer_then_dropped() -> None:
    """Answered, 2 s with the operator, no agency: dropped, like the live rule."""
    from dispatcher.hotline.callbacks import missed_from_journey
    from tests.unit.calllog import calllog_scenarios as sc

    record = _journey(sc.answered_call(talk=2.0, answer_at=9.0))
    missed = missed_from_journey(record, ["112"], now=sc.T0 + 60)
    assert missed is not None
    assert (missed.reason, missed.talked) == (DROPPED, 2.0)
