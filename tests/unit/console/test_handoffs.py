"""HandoffBoard: each hand-off's progress from the dialplan's agency events."""

from __future__ import annotations

from dialplans import contract
from dispatcher.console.handoffs import HandoffBoard

CALL = "1700000000.1"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        self.now += 1
        return self.now


def board() -> tuple[HandoffBoard, list[int]]:
    b = HandoffBoard(["police", "fire"], Clock())
    calls: list[int] = []
    b.listeners.append(lambda: calls.append(1))
    return b, calls


def ring(uniqueid: str = "9.1", channel: str = "PJSIP/anonymous-00000001", agency: str = "police",
         call: str = CALL) -> dict[str, str]:
    return {"Event": "UserEvent", "UserEvent": contract.EVENT_AGENCY_RING, "Call": call,
            "Agency": agency, "Target": "group", "Uniqueid": uniqueid, "Channel": channel}


def failed(target: str, uniqueid: str = "9.1") -> dict[str, str]:
    return {"Event": "UserEvent", "UserEvent": contract.EVENT_AGENCY_FAILED, "Call": CALL,
            "Agency": "police", "Status": "NOANSWER", "Target": target, "Uniqueid": uniqueid}


def test_given_a_blind_hand_off_when_the_group_fails_and_the_fallback_answers_then_each_step_shows(
        ) -> None:
    """ringing → fallback (the group did not answer) → answered (the fallback's DialEnd),
    every step kept in order with its target; the page is told each time."""
    b, told = board()
    assert b.on_event(ring())
    assert b.on_event(failed("group"))
    assert b.on_event({"Event": "DialEnd", "Uniqueid": "9.1", "DialStatus": "ANSWER"})
    [doc] = b.document()[CALL]
    assert (doc["agency"], doc["mode"], doc["state"], doc["target"]) == (
        "police", "blind", "answered", "fallback")
    assert [(s["state"], s["target"]) for s in doc["steps"]] == [
        ("ringing", "group"), ("fallback", "fallback"), ("answered", "fallback")]
    assert len(told) == 3


def test_given_both_group_and_fallback_fail_then_failed() -> None:
    """The fallback did not answer either: failed."""
    b, _ = board()
    b.on_event(ring())
    b.on_event(failed("group"))
    b.on_event(failed("fallback"))
    assert b.document()[CALL][0]["state"] == "failed"


def test_given_the_console_asked_when_the_ring_comes_then_its_mode_is_kept() -> None:
    """A consultation the console asked for keeps its mode when its Local leg rings; a ring
    the console did not ask for takes its mode from the dialling channel."""
    b, _ = board()
    b.requested(CALL, "police", "consult")
    b.on_event(ring(channel=f"Local/police@{contract.CONTEXT_CONSOLE_AGENCY}-1;2"))
    b.on_event(ring("9.2", f"Local/fire@{contract.CONTEXT_CONFERENCE_AGENCY}-2;2", "fire"))
    assert [(h["agency"], h["mode"], h["state"]) for h in b.document()[CALL]] == [
        ("police", "consult", "ringing"), ("fire", "threeway", "ringing")]


def test_given_the_dialling_channel_hangs_up_before_an_answer_then_cancelled() -> None:
    """The citizen (or the consultation's leg) gone while ringing: cancelled; a later
    DialEnd of another channel changes nothing."""
    b, _ = board()
    b.on_event(ring())
    b.on_event({"Event": "Hangup", "Uniqueid": "9.1"})
    assert not b.on_event({"Event": "DialEnd", "Uniqueid": "9.7", "DialStatus": "ANSWER"})
    assert b.document()[CALL][0]["state"] == "cancelled"


def test_given_forged_or_unknown_values_when_events_come_then_ignored() -> None:
    """An agency not in the config, a call id that is no id, other user events: nothing
    changes and nobody is told."""
    b, told = board()
    for event in (ring(agency="navy"), ring(call="x\r\ny"), ring(call=""),
                  {"Event": "UserEvent", "UserEvent": "SiagaQueued", "Call": CALL},
                  {"Event": "DialEnd", "Uniqueid": "9.1", "DialStatus": "ANSWER"}):
        assert not b.on_event(event)
    assert b.requested(CALL, "navy", "blind") is None
    assert b.requested(CALL, "police", "teleport") is None
    assert b.document() == {} and told == []


def test_given_many_calls_when_more_than_the_bound_then_the_oldest_are_dropped() -> None:
    """The board keeps the latest max_calls calls only."""
    b, _ = board()
    b.max_calls = 3
    for n in range(5):
        b.on_event(ring(f"9.{n}", call=f"1700000000.{n}"))
    assert list(b.document()) == [f"1700000000.{n}" for n in (2, 3, 4)]
    assert set(b._dialing) == {"9.2", "9.3", "9.4"}
