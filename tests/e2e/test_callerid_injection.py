"""A caller who writes AMI events and CEL rows into the From of an INVITE (`siaga up`).

Asterisk decodes the From user's percent-escapes and used to copy the result into the caller
ID, which it writes unescaped into AMI events and CEL rows. The attacker here is an anonymous
SIP caller: one From forges a ``SiagaCallbackResult`` event that would close a callback the
center owes; another forges CEL rows of a whole journey that reconciliation would log.
"""

from __future__ import annotations

import datetime as dt
import re
import signal
from urllib.parse import quote

import pytest
from sqlalchemy import select

from dispatcher.calllog.db import make_engine, make_sessionmaker, transaction
from dispatcher.calllog.models import Call, CelCursor
from dispatcher.credentials import ensure_credentials
from pbx.phone.events import CallState
from pbx.phone.phone import Phone
from tests.e2e.test_center_callbacks import give_up_in_queue, owed
from tests.harness import AmiWatch, SiagaProcess, wait_for

pytestmark = pytest.mark.asterisk

SAFE_NUMBER = re.compile(r"^\+?[0-9]{0,20}$")
FAKE_LINKEDID = "fake1"


def forged_result_event(callback_id: int) -> str:
    """A From user that ends the event it is written into and adds a callback's result.

    Asterisk keeps 79 bytes of a caller number: no spaces after the colons (AMI parsers
    accept ``Key:Value``)."""
    text = (f"\r\n\r\nEvent:UserEvent\r\nUserEvent:SiagaCallbackResult\r\n"
            f"Callback:{callback_id}\r\nStatus:ANSWER")
    assert len(text) <= 79
    return text


def forged_cel_rows() -> str:
    """A From user holding two whole CEL rows: a finished journey that never happened."""
    text = (f"0899\nCHAN_START,1,,,,,X/y,,,{FAKE_LINKEDID},{FAKE_LINKEDID},,\n"
            f"LINKEDID_END,2,,,,,,,,{FAKE_LINKEDID},{FAKE_LINKEDID},,\n")
    assert len(text) <= 79
    return text


def cleaned(text: str) -> str:
    """The number the dialplan should make of ``text``: one leading +, digits, 20 at most."""
    return ("+" if text.startswith("+") else "") + re.sub(r"[^0-9]", "", text)[:20]


def attack(phones, server: SiagaProcess, from_user: str, operator: Phone) -> None:  # noqa: ANN001
    """An anonymous caller with ``from_user`` (percent-encoded on the wire) calls 112 and
    waits in the queue; operator 201's phone rings, the operator answers, then hangs up."""
    center = server.center
    user = quote(from_user, safe="")
    caller = phones._keep(Phone(phones.stack, user,
                                server=f"{center.sip.host}:{center.sip.port}"))
    call = caller.call(center.hotline[0])
    call.wait_state(CallState.CONFIRMED, 15)
    call.send_dtmf("0")
    answered = operator.answer(40)  # the call reached the queue: an operator's phone rang
    answered.wait_confirmed(10)
    answered.hangup()
    call.wait_disconnected(10)


def logged_calls(server: SiagaProcess) -> list[tuple[str, str, str, str | None]]:
    """``(linkedid, caller number, caller name, ended)`` of every call in the log."""
    engine = make_engine(server.center.database_url)
    try:
        with transaction(make_sessionmaker(engine)) as session:
            return [(c.linkedid, c.caller_number, c.caller_name,
                     c.ended_at.isoformat() if c.ended_at else None)
                    for c in session.scalars(select(Call)).all()]
    finally:
        engine.dispose()


def cel_reconciled_since(server: SiagaProcess, since: dt.datetime) -> bool:
    """True once a reconciliation pass moved the CEL cursor after ``since``."""
    engine = make_engine(server.center.database_url)
    try:
        with transaction(make_sessionmaker(engine)) as session:
            stamps = [c.updated_at for c in session.scalars(select(CelCursor)).all()]
    finally:
        engine.dispose()
    return any(stamp.replace(tzinfo=stamp.tzinfo or dt.UTC) > since for stamp in stamps)


def caller_ids_seen(watch: AmiWatch) -> set[str]:
    """Every CallerIDNum in the events an independent AMI client received."""
    with watch.lock:
        events = list(watch.events)
    return {e.get("CallerIDNum", "") for e in events} - {""}


def test_given_a_from_forging_ami_and_cel_when_it_calls_then_nothing_forged_is_believed(
        center_server: SiagaProcess, phones) -> None:  # noqa: ANN001
    """A callback is owed (pending); an anonymous caller forges its result into AMI, another
    forges a journey into CEL. The callback stays pending, no event a client sees carries the
    caller's text, both calls reach an operator and are logged with a cleaned number, and
    after a restart (reconciliation from CEL) no forged journey is in the log."""
    give_up_in_queue(phones, center_server, "5557001")
    entry = wait_for(lambda: owed(center_server, "5557001"), 15, "the callback to be listed")
    assert entry["state"] == "pending"  # type: ignore[index]

    center = center_server.center
    op_ext = center.operators[0].extension
    operator = phones.extension(op_ext, ensure_credentials(center).password(op_ext),
                                f"{center.sip.host}:{center.sip.port}")
    before = {c[0] for c in logged_calls(center_server)}
    watch = center_server.ami()
    try:
        ami_attack = forged_result_event(entry["id"])  # type: ignore[index]
        attack(phones, center_server, ami_attack, operator)
        cel_attack = forged_cel_rows()
        attack(phones, center_server, cel_attack, operator)

        def attacks_logged() -> list[tuple[str, str, str, str | None]]:
            calls = [c for c in logged_calls(center_server)
                     if c[0] not in before and re.match(r"^\d+\.\d+$", c[0]) and c[3]]
            return calls if len(calls) >= 2 else []

        # Both calls are over in the log: the server has read their events, forged or not.
        calls = wait_for(attacks_logged, 30, "both attack calls in the log")
        still = owed(center_server, "5557001")
        assert still is not None and still["state"] == "pending", still
        assert not watch.matching("UserEvent", UserEvent="SiagaCallbackResult")
        assert {n for n in caller_ids_seen(watch) if not SAFE_NUMBER.match(n)} <= {
            "anonymous", "<unknown>"}
    finally:
        watch.close()
    assert sorted(c[1] for c in calls) == sorted([cleaned(ami_attack), cleaned(cel_attack)])

    # Reconciliation from Asterisk's CEL file happens at the next start.
    center_server.signal(signal.SIGTERM)
    assert center_server.wait_exit(30) == 0
    restarted = dt.datetime.now(dt.UTC)
    center_server.start()
    wait_for(lambda: cel_reconciled_since(center_server, restarted), 30,
             "a CEL reconciliation after the restart")
    calls = logged_calls(center_server)
    assert not [c for c in calls if c[0] == FAKE_LINKEDID], calls
    assert all(SAFE_NUMBER.match(number) for _, number, _, _ in calls), calls
    assert all(re.match(r"^[A-Za-z0-9 ._+-]*$", name) for _, _, name, _ in calls), calls
    assert owed(center_server, "5557001")["state"] == "pending"  # type: ignore[index]
