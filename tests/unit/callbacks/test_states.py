"""The one state table of callbacks: legal moves go through, an illegal one changes nothing.

Written against ``dispatcher.hotline.callbacks`` (the names the hotline has always used) so the
same test ran on the tree before the table: there ``set_state`` took any move.
"""

from __future__ import annotations

from typing import Any

import pytest

from dispatcher.hotline.callbacks import CallbackEntry, CallbackList, MissedCall


class RecordingStore:
    """A CallbackStore that remembers what it was told."""

    def __init__(self) -> None:
        self.updates: list[tuple[int, str]] = []

    def created(self, entry: CallbackEntry) -> int | None:
        """A new row id."""
        return 100 + entry.id

    def updated(self, entry: CallbackEntry) -> None:
        """Remember the state written."""
        self.updates.append((entry.id, entry.state))


def missed(number: str = "0811") -> MissedCall:
    """An abandoned call that waited a minute in the queue."""
    return MissedCall("abandoned", number, "1.1", "PJSIP/trunk-00000001", "trunk", None,
                      "fire", 60.0, None, True)


def test_given_a_done_callback_when_moved_back_to_pending_then_refused_and_nothing_changes(
        ) -> None:
    """done → pending raises; the entry's state, attempts and result, the store, the
    listeners and the list's pages are as they were."""
    store, heard = RecordingStore(), []
    cbs = CallbackList(store, on_change=heard.append)
    entry = cbs.add(missed(), now=1.0)
    assert entry is not None
    cbs.set_state(entry.id, "ringing")
    cbs.set_state(entry.id, "done", result_linkedid="9.9")
    before: tuple[Any, ...] = (entry.state, entry.attempts, entry.result_linkedid,
                               list(store.updates), len(heard), cbs.open_count)
    with pytest.raises(ValueError, match="done"):
        cbs.set_state(entry.id, "pending")
    assert (entry.state, entry.attempts, entry.result_linkedid, store.updates, len(heard),
            cbs.open_count) == before == ("done", 1, "9.9", [(1, "ringing"), (1, "done")],
                                          3, 0)
    assert cbs.get(entry.id) is entry and cbs.page() == []


@pytest.mark.parametrize("closed", ["done", "failed", "evicted"])
@pytest.mark.parametrize("target", ["pending", "ringing", "done", "failed", "evicted"])
def test_given_a_closed_state_when_any_move_then_the_table_refuses_it(closed: str,
                                                                       target: str) -> None:
    """A closed callback never moves again, whatever the move."""
    from dispatcher.callbacks.states import CallbackInput, IllegalMove, input_towards, next_state

    with pytest.raises(IllegalMove):
        input_towards(closed, target)
    for event in CallbackInput:
        with pytest.raises(IllegalMove):
            next_state(closed, event)


def test_given_the_table_then_the_retry_paths_lead_back_to_pending_and_count_attempts() -> None:
    """pending → ringing_operator → ringing_citizen → (no answer) pending → ringing again
    → done: each ring counts an attempt; the stored names fold both ringing states."""
    from dispatcher.callbacks.states import CallbackInput as In
    from dispatcher.callbacks.states import CallbackState as S
    from dispatcher.callbacks.states import next_state, stored

    path = [In.RING_OPERATOR, In.OPERATOR_ANSWERED, In.CITIZEN_NO_ANSWER, In.RING_OPERATOR,
            In.OPERATOR_NO_ANSWER, In.RING_OPERATOR, In.OPERATOR_ANSWERED,
            In.CITIZEN_ANSWERED]
    state, seen = S.PENDING, []
    for event in path:
        state = next_state(state, event)
        seen.append(stored(state))
    assert seen == ["ringing", "ringing", "pending", "ringing", "pending", "ringing",
                    "ringing", "done"]
    assert next_state(S.RINGING_CITIZEN, In.GIVE_UP) is S.FAILED
    with pytest.raises(ValueError):
        next_state(S.PENDING, In.OPERATOR_ANSWERED)  # nobody was rung


def test_given_an_unknown_state_when_set_then_value_error_and_nothing_changes() -> None:
    """A name outside the table is refused like before."""
    cbs = CallbackList()
    entry = cbs.add(missed(), now=1.0)
    assert entry is not None
    with pytest.raises(ValueError):
        cbs.set_state(entry.id, "forgotten")
    assert (entry.state, entry.attempts) == ("pending", 0)
