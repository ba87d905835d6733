"""Every desk as the supervisor sees it (dispatcher.console.floor)."""

from __future__ import annotations

from pathlib import Path

from dispatcher.config import load_center
from dispatcher.console.floor import TalkClock, desks_document
from pbx.ami.model import LiveModel
from pbx.ami.protocol import Message
from tests.harness import EXAMPLE_CONFIG
from tests.unit.console.console_fakes import add_member, model_with_call


def _event(name: str, **fields: str) -> Message:
    return Message("event", name, fields)


def test_given_a_desk_talking_when_rendered_then_its_caller_and_talk_time(
        tmp_path: Path) -> None:
    """Desk 201 on a call: the citizen's number, the channel, the seconds since its channel
    entered the bridge (as AMI told the clock); the other desks idle or logged out."""
    center = load_center(EXAMPLE_CONFIG, state_dir=tmp_path)
    model = model_with_call("201", citizen_number="0812<script>")
    add_member(model, "201", status="2")  # in use
    add_member(model, "202", status="1", paused="1", reason="meal")
    now = [1_800_000_050.0]
    talk = TalkClock(lambda: now[0])
    talk.on_event(_event("BridgeEnter", Uniqueid="1800000000.11"))
    now[0] = 1_800_000_080.0
    desks = desks_document(model, center, now[0], talk)["desks"]
    by_ext = {d["extension"]: d for d in desks}
    assert [d["extension"] for d in desks] == [op.extension for op in center.operators]
    call = by_ext["201"]["call"]
    assert (by_ext["201"]["state"], call["caller"], call["channel"], call["talking"],
            call["seconds"]) == ("on call", "0812<script>", "PJSIP/201-0000000b", True, 30)
    assert (by_ext["202"]["state"], by_ext["202"]["reason"], by_ext["202"]["call"]) == (
        "paused", "meal", None)
    assert (by_ext["203"]["state"], by_ext["203"]["call"]) == ("logged out", None)


def test_given_a_call_the_clock_never_saw_when_rendered_then_counted_from_the_channel(
        tmp_path: Path) -> None:
    """Started before the server (no BridgeEnter seen): from the channel's creation, which
    its uniqueid tells; once hung up, the clock forgets the channel."""
    center = load_center(EXAMPLE_CONFIG, state_dir=tmp_path)
    model = model_with_call("201")
    talk = TalkClock(lambda: 0.0)
    doc = desks_document(model, center, 1_800_000_012.0, talk)
    assert doc["desks"][0]["call"]["seconds"] == 12
    talk.on_event(_event("BridgeEnter", Uniqueid="1800000000.11"))
    talk.on_event(_event("Hangup", Uniqueid="1800000000.11"))
    assert talk.since == {}


def test_given_many_channels_never_hung_up_when_seen_then_the_clock_stays_bounded() -> None:
    """Missed Hangups cannot grow the clock without bound."""
    talk = TalkClock(lambda: 0.0)
    for i in range(TalkClock.limit + 100):
        talk.on_event(_event("BridgeEnter", Uniqueid=f"1.{i}"))
    assert len(talk.since) == TalkClock.limit


def test_given_no_model_state_when_rendered_then_every_desk_logged_out(tmp_path: Path) -> None:
    """A fresh model (AMI not yet synced): every desk listed, none with a call."""
    center = load_center(EXAMPLE_CONFIG, state_dir=tmp_path)
    desks = desks_document(LiveModel(lambda: 0.0), center, 0.0)["desks"]
    assert {d["state"] for d in desks} == {"logged out"}
    assert all(d["call"] is None for d in desks)
