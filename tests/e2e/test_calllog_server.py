"""The call log kept by `siaga up`: live from AMI, and completed from CEL after downtime."""

from __future__ import annotations

import signal

import pytest
from sqlalchemy import select

from dispatcher.calllog.db import make_engine, make_sessionmaker, transaction
from dispatcher.calllog.models import Call
from dispatcher.credentials import ensure_credentials
from pbx.phone.events import CallState
from pbx.phone.phone import Phone
from tests.harness import SiagaProcess, wait_for

pytestmark = pytest.mark.asterisk




def logged_call(server: SiagaProcess, caller: str, finished: bool = True):  # noqa: ANN201
    """The call log's row for the last call from ``caller`` (with its legs), if any."""
    engine = make_engine(server.center.database_url)
    try:
        with transaction(make_sessionmaker(engine)) as session:
            rows = session.scalars(select(Call).where(Call.caller_number == caller)
                                   .order_by(Call.started_at)).all()
            if not rows or (finished and rows[-1].ended_at is None):
                return None
            call = rows[-1]
            legs = [(leg.kind, leg.started_at, leg.ended_at) for leg in call.legs]
            return {"outcome": call.outcome, "source": call.source, "legs": legs,
                    "category": call.category,
                    "started": call.started_at, "ended": call.ended_at,
                    "answered_by": call.answered_by.code if call.answered_by else None}
    finally:
        engine.dispose()


def hotline_call_answered_by_operator(server: SiagaProcess, phones, caller: str) -> None:  # noqa: ANN001
    """A citizen calls 112, presses 0 for an operator, operator 201 answers, they hear each
    other; both hang up."""
    center = server.center
    sip = f"{center.sip.host}:{center.sip.port}"
    op_ext = center.operators[0].extension
    operator = phones.extension(op_ext, ensure_credentials(center).password(op_ext), sip)
    citizen = phones._keep(Phone(phones.stack, caller, server=sip))
    call = citizen.call(center.hotline[0])
    call.wait_state(CallState.CONFIRMED, 15)
    call.send_dtmf("0")
    answered = operator.answer(40)
    answered.wait_confirmed(10)
    # Hang up only once the two are bridged: a citizen gone in the instant between the
    # operator's answer and the bridge never talked to anyone, and is logged as abandoned.
    heard = phones.two_way_audio(call, answered)
    assert heard.both, heard
    call.hangup()
    answered.wait_disconnected(10)


def test_given_a_running_center_when_a_citizen_is_answered_then_the_log_has_the_journey(
        center_server: SiagaProcess, phones) -> None:  # noqa: ANN001
    """A real hotline call appears in the log, answered by operator 201, legs in order."""
    caller = "081234500001"
    hotline_call_answered_by_operator(center_server, phones, caller)
    row = wait_for(lambda: logged_call(center_server, caller), 20, "the call in the log")
    assert row["outcome"] == "answered" and row["source"] == "ami"  # type: ignore[index]
    assert row["answered_by"] == center_server.center.operators[0].extension  # type: ignore[index]
    assert row["category"] == "operator"  # type: ignore[index]
    kinds = [kind for kind, _, _ in row["legs"]]  # type: ignore[index]
    assert "queue_wait" in kinds and "operator_talk" in kinds
    assert kinds.index("queue_wait") < kinds.index("operator_talk")
    starts = [start for _, start, _ in row["legs"]]  # type: ignore[index]
    assert starts == sorted(starts)
    assert row["started"] <= starts[0] and row["ended"] >= max(  # type: ignore[index]
        end for _, _, end in row["legs"] if end)  # type: ignore[index]


def test_given_the_server_was_down_when_it_restarts_then_the_missed_call_is_logged(
        center_server: SiagaProcess, phones) -> None:  # noqa: ANN001
    """Server SIGKILLed; Asterisk keeps taking calls; after restart CEL fills the gap."""
    center_server.signal(signal.SIGKILL)
    center_server.wait_exit(10)
    caller = "081234500002"
    hotline_call_answered_by_operator(center_server, phones, caller)
    assert logged_call(center_server, caller, finished=False) is None
    center_server.start()
    row = wait_for(lambda: logged_call(center_server, caller), 30, "the reconciled call")
    assert row["source"] == "cel"  # type: ignore[index]
    assert row["outcome"] == "answered"  # type: ignore[index]
    # the dialplan's CEL marks carry what the citizen chose in the menu (0: an operator)
    assert row["category"] == "operator"  # type: ignore[index]
    kinds = [kind for kind, _, _ in row["legs"]]  # type: ignore[index]
    assert "operator_talk" in kinds


def test_given_a_running_center_when_a_citizen_hangs_up_in_the_queue_then_a_callback_is_owed(
        center_server: SiagaProcess, phones) -> None:  # noqa: ANN001
    """An abandoned hotline call becomes a pending callback in the database, via the writer."""
    from dispatcher.calllog.models import Callback

    center = center_server.center
    caller = "081234500003"
    citizen = phones._keep(Phone(phones.stack, caller,
                                 server=f"{center.sip.host}:{center.sip.port}"))
    watch = center_server.ami()
    try:
        call = citizen.call(center.hotline[0])
        call.wait_state(CallState.CONFIRMED, 15)
        call.send_dtmf("0")  # straight to the queue; no operator is logged in to answer
        wait_for(lambda: watch.matching("QueueCallerJoin", CallerIDNum=caller), 20,
                 "the caller in the queue")
    finally:
        watch.close()
    call.hangup()

    def owed() -> list[tuple[str, str]]:
        engine = make_engine(center.database_url)
        try:
            with transaction(make_sessionmaker(engine)) as session:
                return [(c.number, c.state) for c in session.scalars(select(Callback))]
        finally:
            engine.dispose()

    rows = wait_for(lambda: [r for r in owed() if r[0] == caller], 20, "the callback row")
    assert rows == [(caller, "pending")]
