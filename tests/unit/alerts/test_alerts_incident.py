"""The incident state machine's table, and the token buckets."""

from __future__ import annotations

import itertools

import pytest

from dispatcher.alerts.incident import (
    TRANSITIONS,
    IncidentInput,
    IncidentState,
    InvalidTransition,
    accepted_inputs,
    next_state,
)
from dispatcher.alerts.ratelimit import RateLimiter
from dispatcher.calllog.models import INCIDENT_STATES

S, In = IncidentState, IncidentInput


def test_given_alert_callback_path_when_followed_then_reaches_closed() -> None:
    """new → operator_ringing → (operator answers) → talking → handed_to_agency → closed."""
    state = S.NEW
    for event in (In.DIAL_OPERATOR, In.OPERATOR_ANSWERED, In.CITIZEN_ANSWERED,
                  In.HAND_TO_AGENCY, In.CLOSE):
        state = next_state(state, event)
    assert state is S.CLOSED


def test_given_unanswered_citizen_when_retries_run_out_then_unreachable() -> None:
    """Citizen no-answer keeps ringing; give_up makes it unreachable; it can be closed."""
    state = next_state(S.NEW, In.DIAL_OPERATOR)
    assert next_state(state, In.CITIZEN_NO_ANSWER) is S.OPERATOR_RINGING
    state = next_state(state, In.GIVE_UP)
    assert state is S.UNREACHABLE
    assert next_state(state, In.CLOSE) is S.CLOSED


@pytest.mark.parametrize(("state", "event"), [
    (S.NEW, In.CITIZEN_ANSWERED),
    (S.CLOSED, In.DIAL_OPERATOR),
    (S.CANCELLED, In.CLOSE),
    (S.TALKING, In.CANCEL),
    (S.HANDED_TO_AGENCY, In.CITIZEN_NO_ANSWER),
])
def test_given_pair_not_in_table_when_applied_then_raises(state: S, event: In) -> None:
    """A pair the table lacks raises InvalidTransition naming both."""
    with pytest.raises(InvalidTransition, match=event.value):
        next_state(state, event)


def test_every_pair_outside_the_table_raises_and_finals_accept_nothing() -> None:
    """The table is the whole truth: all other pairs raise; closed/cancelled are final."""
    for state, event in itertools.product(S, In):
        if (state, event) in TRANSITIONS:
            assert next_state(state, event) is TRANSITIONS[(state, event)]
        else:
            with pytest.raises(InvalidTransition):
                next_state(state, event)
    assert accepted_inputs(S.CLOSED) == [] and accepted_inputs(S.CANCELLED) == []


def test_states_are_those_the_call_log_stores() -> None:
    """Every state name is one the call log's incidents table accepts."""
    assert {s.value for s in S} == set(INCIDENT_STATES)


def test_given_unknown_name_then_value_error() -> None:
    """Strings are accepted only when they name a state and an input."""
    assert next_state("new", "dial_operator") is S.OPERATOR_RINGING
    with pytest.raises(ValueError):
        next_state("new", "teleport")


def test_given_bucket_when_burst_spent_then_wait_then_refill() -> None:
    """burst 3, 0.5/s: three at once, the fourth waits 2 s; after 2 s one more passes."""
    limiter = RateLimiter(burst=3, rate=0.5)
    assert [limiter.take("d", 100.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take("d", 100.0) == pytest.approx(2.0)
    assert limiter.take("other", 100.0) == 0.0  # buckets are per device
    assert limiter.take("d", 102.0) == 0.0
    assert limiter.take("d", 102.0) > 0


def test_given_clock_stepping_back_then_no_refill() -> None:
    """A clock that goes backwards neither refills nor breaks the bucket."""
    limiter = RateLimiter(burst=1, rate=1.0)
    assert limiter.take("d", 50.0) == 0.0
    assert limiter.take("d", 10.0) > 0


def test_given_many_devices_then_memory_bounded() -> None:
    """At most max_keys buckets are kept."""
    limiter = RateLimiter(burst=2, rate=1.0, max_keys=100)
    for i in range(1000):
        limiter.take(f"dev{i}", 0.0)
    assert len(limiter._buckets) <= 100
