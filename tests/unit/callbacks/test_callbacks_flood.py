"""An abandon flood, as an attacker would script it: thousands of calls to the hotline that
hang up at once, from one machine or many, with new numbers or one number over and over.
Driven through the real detector (AMI events in), the real callback list, the API and the
wallboard: the list stays bounded and a citizen who waited in the queue stays on top."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from twisted.internet import task

from dispatcher.config.loader import load_center
from dispatcher.hotline import CallbackList, HotlineService, MissedCallWatcher
from dispatcher.hotline.callbacks import (
    ABANDONED,
    DEFAULT_MAX_OPEN,
    DEFAULT_MAX_PER_SOURCE,
    EVICTED,
    CallbackEntry,
    MissedCall,
    source_host,
)
from dispatcher.web.wallboard import WALLBOARD_CALLBACKS, wallboard_document
from pbx.ami.model import LiveModel
from tests.harness import EXAMPLE_CONFIG
from tests.unit.alerts.alerts_support import Http, make_service
from tests.unit.hotline.test_hotline_service import FakeAmi, FakeEvents

FLOOD = 10_000
ATTACKER = "127.0.0.2"
CITIZEN_NUMBER = "081234567"
CITIZEN_SOURCE = "127.0.0.1:5072"
OPERATOR_TOKEN = "op-secret"


class Center:
    """The hotline's server side on a fake AMI, fed AMI events on a fake clock."""

    def __init__(self, tmp_path: Path, callbacks: CallbackList) -> None:
        self.clock = task.Clock()
        self.clock.advance(1_795_748_400)
        self.events = FakeEvents()
        self.ami = FakeAmi()
        self.center = load_center(EXAMPLE_CONFIG, state_dir=tmp_path)
        self.hotline = HotlineService(self.ami, self.center, callbacks)
        MissedCallWatcher(self.events, self.clock, callbacks, service=self.hotline).start()
        self.serial = 0

    def call(self, number: str, source: str, seconds: float, queued: bool = False) -> None:
        """One hotline call as Asterisk reports it: the dialplan marks the citizen's
        channel and its source address; it may join the queue; it hangs up unanswered."""
        self.serial += 1
        uid = f"1795748400.{self.serial}"
        base = {"Channel": f"PJSIP/anonymous-{self.serial:08x}", "Uniqueid": uid,
                "Linkedid": uid, "CallerIDNum": number}
        self.events.emit("Newchannel", **base)
        self.events.emit("VarSet", Variable="SIAGA_CITIZEN", Value="yes", **base)
        self.events.emit("VarSet", Variable="__SIAGA_FROM", Value=source, **base)
        if queued:
            self.clock.advance(2)
            self.events.emit("QueueCallerJoin", Queue="operators", **base)
            seconds -= 2
        self.clock.advance(seconds)
        self.events.emit("Hangup", Cause="16", **base)

    def flood(self, count: int, source: str = ATTACKER, number: str | None = None,
              first: int = 0) -> None:
        """``count`` calls hung up after 0.2 s, each from a new number unless one is given,
        from the attacker's machine (new source port every time)."""
        for i in range(first, first + count):
            self.call(number or f"0899{i:07d}", f"{source}:{10000 + i % 50000}", 0.2)


def api_list(center: Center, tmp_path: Path, query: str = "") -> tuple[int, dict[str, Any]]:
    """GET /api/v1/callbacks through the real Twisted HTTP channel."""
    http = getattr(center, "http", None)
    if http is None:
        (tmp_path / "alerts").mkdir(exist_ok=True)
        service, _, clock = make_service(tmp_path / "alerts")
        http = center.http = Http(service, clock, operator_token=OPERATOR_TOKEN,
                                  hotline=center.hotline)
    status, _, body = http.request("GET", f"/api/v1/callbacks{query}", b"",
                                   {"Authorization": f"Bearer {OPERATOR_TOKEN}"})
    return status, json.loads(body)


def board(center: Center) -> dict[str, Any]:
    """The wallboard's document as the site serves it (the top of the list, the count)."""
    callbacks = center.hotline.callbacks
    return wallboard_document(LiveModel(lambda: 0.0), center.center, center.clock.seconds(),
                              callbacks.page(0, WALLBOARD_CALLBACKS), callbacks.open_count)


def test_given_ten_thousand_abandons_from_one_source_when_a_citizen_waited_then_bounded_and_on_top(
        tmp_path: Path) -> None:
    """5,000 scripted hang-ups, then a citizen from another address who waited 40 s in the
    queue, then 5,000 more: the list holds at most max_per_source of the attacker's entries
    (plus the citizen's), and the citizen is first in the API's list and on the wallboard."""
    center = Center(tmp_path, CallbackList())
    center.flood(FLOOD // 2)
    center.call(CITIZEN_NUMBER, CITIZEN_SOURCE, 40.0, queued=True)
    center.flood(FLOOD // 2, first=FLOOD // 2)
    callbacks = center.hotline.callbacks

    assert callbacks.open_count == DEFAULT_MAX_PER_SOURCE + 1
    assert callbacks.evicted_count + callbacks.refused_count == FLOOD - DEFAULT_MAX_PER_SOURCE
    status, doc = api_list(center, tmp_path)
    assert status == 200, doc
    assert doc["callbacks"][0]["number"] == CITIZEN_NUMBER
    assert doc["callbacks"][0]["queued"] is True
    assert doc["total"] == DEFAULT_MAX_PER_SOURCE + 1
    shown = board(center)
    assert shown["callbacks"][0]["number"] == CITIZEN_NUMBER
    assert shown["callbacks_owed"] == DEFAULT_MAX_PER_SOURCE + 1
    assert len(shown["callbacks"]) == WALLBOARD_CALLBACKS


def test_given_ten_thousand_abandons_from_ten_thousand_sources_then_bounded_in_total(
        tmp_path: Path) -> None:
    """A botnet (one address per call) meets the total bound instead: at most max_open
    entries, and the citizen who waited still heads the list."""
    center = Center(tmp_path, CallbackList(max_open=500))
    center.call(CITIZEN_NUMBER, CITIZEN_SOURCE, 30.0, queued=True)
    for i in range(FLOOD):
        center.call(f"0899{i:07d}", f"10.{i // 65536}.{i // 256 % 256}.{i % 256}:5060", 0.2)
    assert center.hotline.callbacks.open_count == 500
    status, doc = api_list(center, tmp_path, "?limit=1")
    assert status == 200 and doc["callbacks"][0]["number"] == CITIZEN_NUMBER
    assert doc["next_offset"] == 1 and doc["total"] == 500


def test_given_one_number_redialled_ten_thousand_times_then_one_entry_below_the_citizen(
        tmp_path: Path) -> None:
    """The same number hanging up again and again is one entry, and its repeats (none of
    them showing a person) do not lift it above a citizen who waited."""
    center = Center(tmp_path, CallbackList())
    center.call(CITIZEN_NUMBER, CITIZEN_SOURCE, 30.0, queued=True)
    center.flood(FLOOD, number="0899000")
    callbacks = center.hotline.callbacks
    assert callbacks.open_count == 2
    top, flood = callbacks.page(0, 2)
    assert top.number == CITIZEN_NUMBER
    assert flood.missed == FLOOD and len(flood.calls) <= 20 and flood.repeats == 0


class RecordingStore:
    """A persistence hook that remembers what it was told."""

    def __init__(self, ids: bool = True) -> None:
        self.ids = ids
        self.inserted: list[int] = []
        self.updates: list[tuple[int, str]] = []

    def created(self, entry: CallbackEntry) -> int | None:
        """Remember; a store id (or none, like the writer's store before its commit)."""
        self.inserted.append(entry.id)
        return 1000 + entry.id if self.ids else None

    def updated(self, entry: CallbackEntry) -> None:
        """Remember."""
        self.updates.append((entry.id, entry.state))


def missed(number: str, source: str | None, waited: float, queued: bool = False
           ) -> MissedCall:
    """An abandoned call from an app straight to the SIP port."""
    return MissedCall(ABANDONED, number, f"{number}.1", "PJSIP/anonymous-1", "anonymous",
                      source, "unknown", waited, None, queued)


def test_given_a_full_source_when_weaker_calls_come_then_refused_before_the_store_sees_them(
        ) -> None:
    """Once a source is full of its own short calls, the next ones are turned away without
    a database write; a stronger one takes the weakest's place, whose row says evicted."""
    store = RecordingStore()
    cbs = CallbackList(store, max_open=100, max_per_source=3)
    for i in range(3):
        assert cbs.add(missed(f"0811{i}", "127.0.0.2:5060", 0.5), now=i) is not None
    assert cbs.add(missed("08119", "127.0.0.2:6000", 0.5), now=10) is None
    assert len(store.inserted) == 3 and store.updates == []
    assert cbs.refused_count == 1 and cbs.evicted_count == 0
    real = cbs.add(missed("0822", "127.0.0.2:7000", 25.0, queued=True), now=11)
    assert real is not None and cbs.page(0, 1) == [real]
    weakest = cbs.get(3)
    assert weakest.state == EVICTED and store.updates == [(3, EVICTED)]
    assert [e.number for e in cbs.page(0, 10)] == ["0822", "08110", "08111"]


def test_given_a_callback_ringing_when_its_source_overflows_then_it_is_never_evicted() -> None:
    """An operator is ringing the citizen: however weak the entry, a flood does not take it
    away under the operator."""
    cbs = CallbackList(max_open=10, max_per_source=2)
    rung = cbs.add(missed("0811", "127.0.0.2:5060", 0.1), now=0)
    assert rung is not None
    cbs.set_state(rung.id, "ringing")
    for i in range(50):
        cbs.add(missed(f"0899{i}", "127.0.0.2:5060", 0.2), now=1 + i)
    assert rung.state == "ringing" and cbs.get(rung.id) is rung
    assert cbs.open_count == 3


def test_given_entries_restored_after_a_restart_when_over_the_bound_then_weakest_evicted(
        ) -> None:
    """The bound holds for a list a previous process persisted: the strongest are kept, the
    rest are evicted (and persisted so)."""
    store = RecordingStore(ids=False)
    cbs = CallbackList(store, max_open=10)
    stored = [CallbackEntry(id=0, number=f"08{i:04d}", reason=ABANDONED, linkedid="",
                            endpoint="anonymous", source=None, category="", created_at=i,
                            store_id=500 + i, evidence=float(i)) for i in range(30)]
    cbs.restore(stored)
    assert cbs.open_count == 10
    assert [e.evidence for e in cbs.page(0, 3)] == [29.0, 28.0, 27.0]
    assert len(store.updates) == 20 and {state for _, state in store.updates} == {EVICTED}


@pytest.mark.parametrize(("source", "host"), [
    ("127.0.0.2:5060", "127.0.0.2"), ("[2001:db8::1]:5060", "2001:db8::1"), (None, None),
    ("", None)])
def test_given_source_addresses_when_keyed_then_the_host_without_port(
        source: str | None, host: str | None) -> None:
    """A flood changes ports freely: the per-source bound counts by address only."""
    assert source_host(source) == host


def test_given_a_page_request_when_out_of_range_then_400_with_a_reason(tmp_path: Path) -> None:
    """limit 0, limit past the maximum and a negative offset are refused as JSON."""
    center = Center(tmp_path, CallbackList())
    for query in ("?limit=0", "?limit=201", "?offset=-1", "?limit=x"):
        status, doc = api_list(center, tmp_path, query)
        assert (status, doc["error"]) == (400, "invalid_parameter"), query


def test_given_the_defaults_then_sane_bounds() -> None:
    """The documented defaults: a thousand owed in all, twenty per source."""
    assert (DEFAULT_MAX_OPEN, DEFAULT_MAX_PER_SOURCE) == (1000, 20)
    center = load_center(EXAMPLE_CONFIG, state_dir=Path("/nonexistent"))
    assert (center.callbacks.max_open, center.callbacks.max_per_source) == (1000, 20)


@pytest.mark.parametrize(("old", "new", "key", "says"), [
    ("  max_open: 1000 ", "  max_open: 5 ", "callbacks.max_open", "between 10 and 100000"),
    ("  max_per_source: 20 ", "  max_per_source: 0 ", "callbacks.max_per_source",
     "between 1 and 100000"),
    ("  max_per_source: 20 ", "  max_per_source: 2000 ", "callbacks.max_per_source",
     "must not exceed callbacks.max_open"),
    ("  max_open: 1000 ", "  max_open: lots ", "callbacks.max_open", "whole number"),
    ("  max_open: 1000 ", "  max_opn: 1000 ", "max_opn", ""),
], ids=["open too small", "per source zero", "per source over total", "not a number",
        "unknown key"])
def test_given_bad_callback_bounds_when_loaded_then_the_error_names_file_line_and_key(
        tmp_path: Path, old: str, new: str, key: str, says: str) -> None:
    """A bound out of range, one beyond the total, a word or a misspelt key: ConfigError
    with the file's name, the line and the key; nothing else is loaded."""
    from dispatcher.yamlnodes import ConfigError

    text = EXAMPLE_CONFIG.read_text()
    assert old in text, old
    line = text[:text.index(old)].count("\n") + 1
    path = tmp_path / "siaga.example.yaml"
    path.write_text(text.replace(old, new, 1))
    with pytest.raises(ConfigError) as caught:
        load_center(path, state_dir=tmp_path)
    message = str(caught.value)
    assert f"siaga.example.yaml:{line}" in message and key in message and says in message


def test_given_calls_whose_hangup_never_comes_when_more_start_then_the_detector_stays_bounded(
        ) -> None:
    """Hangups lost (AMI was away): the detector forgets the oldest calls beyond its bound
    instead of growing, and still judges the newest ones."""
    from dispatcher.hotline.callbacks import MissedCallDetector

    detector = MissedCallDetector(max_tracked=100)
    for i in range(FLOOD):
        detector.feed("VarSet", {"Uniqueid": f"1.{i}", "Channel": f"PJSIP/anonymous-{i}",
                                 "Variable": "SIAGA_CITIZEN", "Value": "yes",
                                 "CallerIDNum": f"0899{i}"}, float(i))
    assert detector.tracked == 100
    last = FLOOD - 1
    [missed_call] = detector.feed("Hangup", {"Uniqueid": f"1.{last}"}, float(FLOOD))
    assert missed_call.number == f"0899{last}"
