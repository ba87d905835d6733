"""The incident's state machine: an explicit ``(state, input) -> next state`` table.

::

    new ──dial_operator──► operator_ringing ──citizen_answered──► talking ──hand_to_agency──►
      │  (alert: server      │   ▲ operator_answered,            │  ▲     handed_to_agency
      │   originates)        │   │ citizen_no_answer,            │  │          │
      │──caller_queued──────►│   │ operator_no_answer (retries)  close         close
      │  (button call)       │───┘                               ▼             ▼
      │                      ├──caller_connected──► talking     closed ◄──────┘
      │                      ├──give_up / caller_abandoned──► unreachable ──close──► closed
      └──cancel──► cancelled ◄──cancel──┘                       └──dial_operator──► operator_ringing

State names are those of the call log (``dispatcher.calllog.models.INCIDENT_STATES``); the
issue's "talking to citizen" is ``talking``. A pair missing from the table raises
:class:`InvalidTransition`: an AMI event arriving out of order is then a logged error, never a
silent jump. Self-transitions (``operator_ringing`` on ``operator_answered``) are listed on
purpose: they are inputs that change what the server does, not the state.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "FINAL_STATES",
    "TRANSITIONS",
    "IncidentInput",
    "IncidentState",
    "InvalidTransition",
    "next_state",
]


class IncidentState(StrEnum):
    """Where an incident stands (values stored in ``incidents.state``)."""

    NEW = "new"
    OPERATOR_RINGING = "operator_ringing"
    TALKING = "talking"
    HANDED_TO_AGENCY = "handed_to_agency"
    CLOSED = "closed"
    UNREACHABLE = "unreachable"
    CANCELLED = "cancelled"


class IncidentInput(StrEnum):
    """What can happen to an incident."""

    DIAL_OPERATOR = "dial_operator"  # the server originates the operator-first callback
    CALLER_QUEUED = "caller_queued"  # a button's call waits in the operators' queue
    OPERATOR_ANSWERED = "operator_answered"  # an operator took the callback; citizen dialled
    OPERATOR_NO_ANSWER = "operator_no_answer"  # the callback reached no operator: again
    CITIZEN_ANSWERED = "citizen_answered"  # the citizen picked up: operator and citizen talk
    CITIZEN_NO_ANSWER = "citizen_no_answer"  # a retry follows after the configured interval
    CALLER_CONNECTED = "caller_connected"  # an operator answered a button's queued call
    CALLER_ABANDONED = "caller_abandoned"  # the button's call ended before an operator
    GIVE_UP = "give_up"  # every attempt to reach the citizen failed
    HAND_TO_AGENCY = "hand_to_agency"  # the operator bridged the citizen to an agency
    CLOSE = "close"  # the operator closes the case
    CANCEL = "cancel"  # the alert was withdrawn before anyone talked


S, In = IncidentState, IncidentInput

TRANSITIONS: dict[tuple[IncidentState, IncidentInput], IncidentState] = {
    (S.NEW, In.DIAL_OPERATOR): S.OPERATOR_RINGING,
    (S.NEW, In.CALLER_QUEUED): S.OPERATOR_RINGING,
    (S.NEW, In.CALLER_CONNECTED): S.TALKING,  # queue join unseen (e.g. AMI reconnected)
    (S.NEW, In.CALLER_ABANDONED): S.UNREACHABLE,
    (S.NEW, In.CANCEL): S.CANCELLED,
    (S.OPERATOR_RINGING, In.DIAL_OPERATOR): S.OPERATOR_RINGING,
    (S.OPERATOR_RINGING, In.OPERATOR_ANSWERED): S.OPERATOR_RINGING,
    (S.OPERATOR_RINGING, In.OPERATOR_NO_ANSWER): S.OPERATOR_RINGING,
    (S.OPERATOR_RINGING, In.CITIZEN_ANSWERED): S.TALKING,
    (S.OPERATOR_RINGING, In.CITIZEN_NO_ANSWER): S.OPERATOR_RINGING,
    (S.OPERATOR_RINGING, In.CALLER_CONNECTED): S.TALKING,
    (S.OPERATOR_RINGING, In.CALLER_ABANDONED): S.UNREACHABLE,
    (S.OPERATOR_RINGING, In.GIVE_UP): S.UNREACHABLE,
    (S.OPERATOR_RINGING, In.CANCEL): S.CANCELLED,
    (S.TALKING, In.HAND_TO_AGENCY): S.HANDED_TO_AGENCY,
    (S.TALKING, In.CLOSE): S.CLOSED,
    (S.HANDED_TO_AGENCY, In.HAND_TO_AGENCY): S.HANDED_TO_AGENCY,
    (S.HANDED_TO_AGENCY, In.CLOSE): S.CLOSED,
    (S.UNREACHABLE, In.DIAL_OPERATOR): S.OPERATOR_RINGING,  # an operator tries once more
    (S.UNREACHABLE, In.CLOSE): S.CLOSED,
}

FINAL_STATES = frozenset({S.CLOSED, S.CANCELLED})


class InvalidTransition(ValueError):
    """An input that the incident's current state does not accept."""

    def __init__(self, state: IncidentState, event: IncidentInput) -> None:
        super().__init__(f"incident in state {state.value!r} cannot take {event.value!r}")
        self.state = state
        self.event = event


def next_state(state: IncidentState | str, event: IncidentInput | str) -> IncidentState:
    """The state after ``event``; raises :class:`InvalidTransition` for a pair not in the table.

    Unknown names raise ``ValueError`` too (``InvalidTransition`` is one).
    """
    state = IncidentState(state)
    event = IncidentInput(event)
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise InvalidTransition(state, event) from None


def accepted_inputs(state: IncidentState | str) -> list[IncidentInput]:
    """The inputs ``state`` accepts, in table order (the API lists them for the console)."""
    state = IncidentState(state)
    return [event for (s, event) in TRANSITIONS if s is state]
