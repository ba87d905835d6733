"""Wallboard figures from the live model, fed the AMI events Asterisk sends."""

from __future__ import annotations

from pathlib import Path

from dispatcher.config.loader import load_center
from dispatcher.web.wallboard import operator_state, wallboard_document
from pbx.ami.model import LiveModel
from tests.harness import EXAMPLE_CONFIG


def member(interface: str, status: str, paused: str = "0", reason: str = "") -> dict:
    return {"Event": "QueueMemberStatus", "Queue": "operators", "Interface": interface,
            "MemberName": interface, "StateInterface": interface, "Status": status,
            "Paused": paused, "PausedReason": reason, "InCall": "0", "CallsTaken": "3",
            "Membership": "static", "Penalty": "0"}


def test_given_two_callers_and_desks_when_built_then_board_counts_them(tmp_path: Path) -> None:
    """Waiting callers in order with their wait, each desk's state, free operators counted."""
    center = load_center(EXAMPLE_CONFIG, state_dir=tmp_path)
    now = [1000.0]
    model = LiveModel(lambda: now[0])
    for uid, num in (("1.1", "081234"), ("1.2", "<b>x</b>")):
        model.handle({"Event": "Newchannel", "Uniqueid": uid, "Linkedid": uid,
                      "Channel": f"PJSIP/anonymous-{uid}", "CallerIDNum": num,
                      "ChannelStateDesc": "Up"})
        model.handle({"Event": "QueueCallerJoin", "Queue": "operators", "Uniqueid": uid,
                      "Channel": f"PJSIP/anonymous-{uid}", "Position": uid[-1], "Count": "1"})
        now[0] += 30
    model.handle(member("PJSIP/201", "1"))                       # not in use
    model.handle(member("PJSIP/202", "1", "1", "break"))          # paused
    model.handle(member("PJSIP/203", "6"))                       # ringing
    model.handle(member("PJSIP/204", "5"))                       # unavailable
    board = wallboard_document(model, center, now[0])
    assert board["waiting"] == 2
    assert [c["caller"] for c in board["callers"]] == ["081234", "<b>x</b>"]
    assert [c["wait_s"] for c in board["callers"]] == [60, 30]
    assert board["longest_wait_s"] == 60
    states = {d["extension"]: (d["state"], d["reason"]) for d in board["operators"]}
    assert states == {"201": ("available", ""), "202": ("paused", "break"),
                      "203": ("ringing", ""), "204": ("offline", "")}
    assert board["available"] == 1
    assert board["active_calls"] == 2
    assert {a["key"] for a in board["agencies"]} == {a.key for a in center.agencies}


def test_given_states_when_named_then_call_beats_pause_and_offline_beats_all() -> None:
    """An operator on a call shows 'on call' even if paused; offline wins over both."""
    assert operator_state("INUSE", True, True) == "on call"
    assert operator_state("NOT_INUSE", True, False) == "paused"
    assert operator_state("UNAVAILABLE", True, True) == "offline"


def test_given_device_states_only_when_built_then_agency_phones_count_as_reachable(
        tmp_path: Path) -> None:
    """After a resync without endpoint lists, device states tell which phones are up."""
    center = load_center(EXAMPLE_CONFIG, state_dir=tmp_path)
    model = LiveModel(lambda: 0.0)
    model.handle({"Event": "DeviceStateChange", "Device": "PJSIP/301", "State": "NOT_INUSE"})
    model.handle({"Event": "DeviceStateChange", "Device": "PJSIP/302", "State": "UNAVAILABLE"})
    board = wallboard_document(model, center, 0.0)
    police = next(a for a in board["agencies"] if a["key"] == "police")
    assert police["reachable"] == 1
    assert [p["registered"] for p in police["phones"]] == [True, False, False]


def test_given_callbacks_owed_when_built_then_listed_open_only_with_their_age(
        tmp_path: Path) -> None:
    """The open callbacks, strongest evidence first (a dropped call before abandoned ones,
    then oldest first), with how long they have waited; done ones are not on the board."""
    from dispatcher.hotline.callbacks import ABANDONED, DROPPED, CallbackList, MissedCall

    center = load_center(EXAMPLE_CONFIG, state_dir=tmp_path)
    callbacks = CallbackList()
    for number, reason, at in (("0811", ABANDONED, 100.0), ("0822", DROPPED, 160.0),
                               ("0833", ABANDONED, 170.0)):
        callbacks.add(MissedCall(reason, number, f"{at}.1", "PJSIP/trunk-1", "trunk", None,
                                 "fire", 3.0, None), at)
    done = callbacks.pending()[2]
    callbacks.set_state(done.id, "done")
    board = wallboard_document(LiveModel(lambda: 0.0), center, 200.0, callbacks.pending())
    assert board["callbacks_owed"] == 2
    assert board["callbacks"] == [
        {"number": "0822", "reason": "dropped", "state": "pending", "since_s": 40},
        {"number": "0811", "reason": "abandoned", "state": "pending", "since_s": 100}]
