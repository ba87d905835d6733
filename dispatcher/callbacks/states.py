"""A callback's life: one explicit ``(state, input) -> next state`` table for every callback.

::

    pending ──ring_operator──► ringing_operator ──operator_answered──► ringing_citizen
       ▲  │                     │  │ ▲ ring_operator (again)            │
       │  │                     │  └─┘                                  │
       │  │   operator_no_answer│, citizen_no_answer                    │ citizen_no_answer
       │◄─┼─────────────────────┘◄──────────────────────────────────────┤ (a retry follows)
       │  │                     │ citizen_answered                      │ citizen_answered
       │  │                     ▼                                       ▼
       │  ├──evict──► evicted   done ◄──────────────────────────────────┘
       │  └──give_up──► failed ◄──give_up── (either ringing state)
       └─ done, failed and evicted accept nothing: a closed callback never opens again.

Both kinds of callback live on this table: a hotline callback (an operator chose to call back
an abandoned or dropped call) and an alert's (the server rings the operators' queue at once).
Who is rung and how often is the dialer's policy (:mod:`dispatcher.callbacks.dialer`); what
may follow what is here, and a pair missing from the table raises :class:`IllegalMove`.

The call log stores the two ringing states as one, ``ringing`` (:func:`stored`): its schema
and every page and report that reads it stay as they are.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "CALLBACK_STATES",
    "CLOSED_STATES",
    "OPEN_STATES",
    "TRANSITIONS",
    "CallbackInput",
    "CallbackState",
    "IllegalMove",
    "check_stored_move",
    "input_towards",
    "next_state",
    "stored",
]


class CallbackState(StrEnum):
    """Where a callback stands."""

    PENDING = "pending"  # owed, nobody is ringing
    RINGING_OPERATOR = "ringing_operator"  # an operator's phone (or the queue) is ringing
    RINGING_CITIZEN = "ringing_citizen"  # an operator answered; the citizen is being dialled
    DONE = "done"  # the citizen answered
    FAILED = "failed"  # every attempt the policy allows went unanswered
    EVICTED = "evicted"  # a hotline callback that gave way to stronger ones in a full list


class CallbackInput(StrEnum):
    """What can happen to a callback."""

    RING_OPERATOR = "ring_operator"  # an originate was accepted: one more attempt
    OPERATOR_ANSWERED = "operator_answered"
    OPERATOR_NO_ANSWER = "operator_no_answer"  # no operator took it: pending until a retry
    CITIZEN_ANSWERED = "citizen_answered"
    CITIZEN_NO_ANSWER = "citizen_no_answer"  # pending until a retry (or an operator's choice)
    GIVE_UP = "give_up"  # the policy's attempts are spent
    EVICT = "evict"


S, In = CallbackState, CallbackInput

TRANSITIONS: dict[tuple[CallbackState, CallbackInput], CallbackState] = {
    (S.PENDING, In.RING_OPERATOR): S.RINGING_OPERATOR,
    # A call followed after a restart (restored pending while Asterisk still carried it).
    (S.PENDING, In.CITIZEN_ANSWERED): S.DONE,
    (S.PENDING, In.GIVE_UP): S.FAILED,
    (S.PENDING, In.EVICT): S.EVICTED,
    # The queue policy rings again at once when no operator took the call.
    (S.RINGING_OPERATOR, In.RING_OPERATOR): S.RINGING_OPERATOR,
    (S.RINGING_OPERATOR, In.OPERATOR_ANSWERED): S.RINGING_CITIZEN,
    (S.RINGING_OPERATOR, In.OPERATOR_NO_ANSWER): S.PENDING,
    # A desk callback's dialplan reports only the citizen's outcome.
    (S.RINGING_OPERATOR, In.CITIZEN_ANSWERED): S.DONE,
    (S.RINGING_OPERATOR, In.CITIZEN_NO_ANSWER): S.PENDING,
    (S.RINGING_OPERATOR, In.GIVE_UP): S.FAILED,
    (S.RINGING_CITIZEN, In.CITIZEN_ANSWERED): S.DONE,
    (S.RINGING_CITIZEN, In.CITIZEN_NO_ANSWER): S.PENDING,
    (S.RINGING_CITIZEN, In.RING_OPERATOR): S.RINGING_OPERATOR,
    (S.RINGING_CITIZEN, In.GIVE_UP): S.FAILED,
}

OPEN_STATES = ("pending", "ringing")  # as stored
CLOSED_STATES = ("done", "failed", "evicted")
#: Every state the call log's ``callbacks.state`` holds.
CALLBACK_STATES = OPEN_STATES + CLOSED_STATES

_STORED = {S.RINGING_OPERATOR: "ringing", S.RINGING_CITIZEN: "ringing"}


def stored(state: CallbackState | str) -> str:
    """The name the call log (and the API) use for ``state``: both ringing states are
    ``ringing``."""
    state = CallbackState(state)
    return _STORED.get(state, state.value)


class IllegalMove(ValueError):
    """A move the callback's current state does not allow; nothing was changed."""

    def __init__(self, state: str, move: str) -> None:
        super().__init__(f"a callback in state {state!r} cannot take {move!r}")
        self.state = state
        self.move = move


def next_state(state: CallbackState | str, event: CallbackInput | str) -> CallbackState:
    """The state after ``event``; :class:`IllegalMove` for a pair not in the table."""
    state, event = CallbackState(state), CallbackInput(event)
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise IllegalMove(state.value, event.value) from None


def _phases(name: str) -> list[CallbackState]:
    if name not in CALLBACK_STATES:
        raise ValueError(f"unknown callback state {name!r}")
    return [s for s in CallbackState if stored(s) == name]


def input_towards(state: CallbackState | str, target: str) -> CallbackInput:
    """The input that takes a callback from ``state`` to the stored state ``target``
    (``ringing``: the operator is rung), for callers that speak in stored names;
    :class:`IllegalMove` when the table has none, ``ValueError`` for an unknown name."""
    state = CallbackState(state)
    goals = _phases(target)
    for (source, event), after in TRANSITIONS.items():
        if source is state and after in goals:
            return event
    raise IllegalMove(state.value, f"-> {target}")


def check_stored_move(current: str, target: str) -> None:
    """Refuse a stored row's move that reopens or rewrites a closed callback (done, failed,
    evicted): :class:`IllegalMove`. A row cannot tell the two ringing states apart, and one
    restored ``ringing`` by a new process is pending in its memory, so among the open states
    the row follows the list or the dialer, which apply the whole table."""
    _phases(target)
    if current in CLOSED_STATES:
        raise IllegalMove(current, f"-> {target}")
