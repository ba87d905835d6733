"""The caller ID of an anonymous SIP caller, from the From of an INVITE (`siaga up`).

Asterisk decodes the From user's percent-escapes and used to copy the result into the caller
ID, which it writes unescaped into AMI events and CEL rows. The attacker here is an anonymous
SIP caller: one From forges a ``SiagaCallbackResult`` event that would close a callback the
center owes; another forges CEL rows of a whole journey that reconciliation would log.

The From's display name is the caller's free text too. Honest phones send one ("Budi"), and
a citizen who does must keep the number of the From URI: on the queue, in the call log and in
the callback owed. A hostile display name (a URI of its own, digits, escapes, kilobytes of
angle brackets) neither changes the number nor reaches AMI.

One center serves the whole module (the forging test restarts it).
"""

from __future__ import annotations

import datetime as dt
import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from sqlalchemy import select

from dispatcher.calllog.db import make_engine, make_sessionmaker, transaction
from dispatcher.calllog.models import Call, CelCursor
from dispatcher.credentials import ensure_credentials
from pbx.phone.events import CallState
from pbx.phone.phone import Phone
from pbx.provision import AsteriskInstall
from tests.e2e.test_callbacks_hostile import Sipp, free_udp_port, sipp  # noqa: F401 (fixture)
from tests.e2e.test_center_callbacks import give_up_in_queue, owed
from tests.harness import PATIENCE, AmiWatch, SiagaProcess, running_center, wait_for
from tests.sipdata import sipp_call

pytestmark = pytest.mark.asterisk

SAFE_NUMBER = re.compile(r"^\+?[0-9]{0,20}$")
SAFE_NAME = re.compile(r"^[A-Za-z0-9 ._+-]*$")
FAKE_LINKEDID = "fake1"
TRUNK_HOST = "127.0.0.3"


@pytest.fixture(scope="module")
def center_server(tmp_path_factory: pytest.TempPathFactory,
                  asterisk_install: AsteriskInstall) -> Iterator[SiagaProcess]:
    """The whole center (`siaga up`) on free ports, with a trunk at 127.0.0.3 (nobody
    answers there: only its address matters), shared by this module's tests."""
    with running_center(tmp_path_factory.mktemp("callerid"),
                        trunk={"host": TRUNK_HOST, "port": 5060, "username": "bitung",
                               "password": "from-the-carrier"}) as proc:
        yield proc


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
    assert all(SAFE_NAME.match(name) for _, _, name, _ in calls), calls
    assert owed(center_server, "5557001")["state"] == "pending"  # type: ignore[index]


# ---- display names -----------------------------------------------------------------------

# Phones as citizens have them: a name, a full name, a name beyond ASCII, a name of digits.
HONEST = {"0812110001": "Budi", "0812110002": "Budi Santoso",
          "0812110003": "Dewi Ayu Ñoño 🚑", "0812110004": "0899123456"}

# As an attacker writes them in the From (no "[": SIPp reads it as a keyword).
HOSTILE: dict[str, str | None] = {
    "0812200001": '""',
    "0812200002": '"<sip:999@evil>"',
    "0812200003": '"sip:999@evil?"',
    "0812200004": '"Evil\\r\\nEvent: UserEvent\\r\\nUserEvent: SiagaCallbackResult"',
    "0812200005": '"%0D%0AEvent:%20UserEvent%0D%0AUserEvent:%20EvilForged"',
    "0812200006": '"evil\\"<sip:999@evil>\\"" ',
    "0812200007": "Evil Token",
    "0812200008": '"' + "<evil>" * 600 + '"',
    "0812200009": None,  # no display name and no brackets: From: sip:0812200009@host;tag=
}
# Text of the display names above that must never reach an AMI event.
HOSTILE_MARKS = ("evil", "Evil", "999@", "%0D", "\\r")
# Angle brackets Asterisk itself writes: a withheld number, a CDR's ``"name" <number>``.
ASTERISK_BRACKETS = re.compile(r'^(<unknown>|"[A-Za-z0-9 ._+-]*" <\+?[0-9]*>)$')


def call_with_display(attacker: Sipp, server: SiagaProcess, user: str, display: str | None,
                      log: Path, source: str = "127.0.0.1") -> subprocess.Popen[bytes]:
    """SIPp calls 112 once from ``source`` with ``display`` and ``user`` in the From (with
    ``display`` None, the From is a bare URI, as RFC 3261 allows without a display name)."""
    sip = server.center.sip
    scenario = attacker.dir / f"display-{user}.xml"
    # Hung up in the IVR.
    scenario.write_bytes(sipp_call(user, 1500, display=display, bare=display is None,
                                   name="display name"))
    inside = attacker.inside
    seen = scenario if inside is None else Path("/") / scenario.relative_to(inside)
    argv = [*attacker.prefix, "-sf", str(seen), "-s", server.center.hotline[0],
            "-i", source, "-p", str(free_udp_port(source)),
            "-mi", source, "-mp", str(free_udp_port(source)), "-m", "1",
            "-nostdin", "-timeout", f"{int(60 * PATIENCE)}s", "-timeout_error",
            f"{sip.host}:{sip.port}"]
    with log.open("wb") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)


def events_of(watch: AmiWatch) -> list[dict[str, str]]:
    with watch.lock:
        return list(watch.events)


def ended_rows(server: SiagaProcess, numbers: set[str]
               ) -> dict[str, tuple[str, str, str, str | None]]:
    """The ended call-log row of each of ``numbers``, once every one has one."""
    rows = {c[1]: c for c in logged_calls(server) if c[1] in numbers and c[3]}
    return rows if set(rows) == numbers else {}


def test_given_honest_display_names_when_citizens_wait_in_the_queue_then_each_keeps_the_number(
        center_server: SiagaProcess, phones) -> None:  # noqa: ANN001
    """Four citizens whose phones send a display name ("Budi", "Budi Santoso", a name beyond
    ASCII, a name of digits) call 112 at once, press 0 for an operator, wait in the queue and
    give up. The queue shows each one's own number, the call log has it, a callback is owed
    to it, and the display name (never trusted) reaches neither AMI nor the log."""
    center = center_server.center
    watch = center_server.ami()
    calls = {}
    try:
        for number, name in HONEST.items():
            citizen = phones._keep(Phone(phones.stack, number, display_name=name,
                                         server=f"{center.sip.host}:{center.sip.port}"))
            calls[number] = citizen.call(center.hotline[0])
        for call in calls.values():
            call.wait_confirmed(15)
            call.send_dtmf("0")  # straight to the operators' queue
        joined = {number: watch.wait_event("QueueCallerJoin", 30, CallerIDNum=number)
                  for number in HONEST}
        events = events_of(watch)
    finally:
        watch.close()
    for call in calls.values():
        call.hangup()
    for call in calls.values():
        call.wait_disconnected(10)

    assert {e["CallerIDNum"] for e in joined.values()} == set(HONEST)
    for number in HONEST:
        entry = wait_for(lambda n=number: owed(center_server, n), 20, f"a callback to {number}")
        assert entry["state"] == "pending", entry  # type: ignore[index]
    rows = wait_for(lambda: ended_rows(center_server, set(HONEST)), 30,
                    "the four calls ended in the log")
    for number, (_, logged, name, _) in rows.items():  # type: ignore[union-attr]
        assert logged == number and SAFE_NAME.match(name) and name not in HONEST.values()
    shown = [v for e in events for v in e.values()
             if any(mark in v for mark in ("Budi", "Dewi", "0899123456"))]
    assert not shown, shown


def test_given_hostile_display_names_when_they_call_then_the_number_stays_and_nothing_leaks(
        center_server: SiagaProcess, sipp: Sipp, tmp_path: Path) -> None:  # noqa: F811
    """Nine callers (SIPp) whose display names hold a URI of their own, an escaped quote
    around one, CR LF as escapes and percent-escapes forging AMI events, an empty name, an
    unquoted one and 3600 characters of angle brackets, and one whose From is a bare URI,
    call 112 at once and hang up in the IVR. Each call keeps the number of its From URI (in
    AMI and in the call log); no AMI event carries the display names' text, a line break or
    an angle bracket of theirs, and no forged event arrives."""
    watch = center_server.ami()
    try:
        runs = {user: call_with_display(sipp, center_server, user, display,
                                        tmp_path / f"sipp-{user}.log")
                for user, display in HOSTILE.items()}
        for user, run in runs.items():
            code = run.wait(timeout=90 * PATIENCE)
            assert code == 0, (user, (tmp_path / f"sipp-{user}.log").read_text()[-2000:])
        wait_for(lambda: set(HOSTILE) <= caller_ids_seen(watch), 15,
                 "every caller's own number in AMI")
        rows = wait_for(lambda: ended_rows(center_server, set(HOSTILE)), 30,
                        "the nine calls ended in the log")
        events = events_of(watch)
    finally:
        watch.close()

    assert {n for n in caller_ids_seen(watch) if not SAFE_NUMBER.match(n)} <= {
        "anonymous", "<unknown>"}
    leaked = [(e["Event"], k, v) for e in events for k, v in e.items()
              if any(mark in v for mark in HOSTILE_MARKS) or "\r" in v or "\n" in v
              or (("<" in v or ">" in v) and not ASTERISK_BRACKETS.match(v))]
    assert not leaked, leaked[:10]
    assert not [e for e in events if e["Event"] == "UserEvent"
                and e.get("UserEvent") in ("SiagaCallbackResult", "EvilForged")]
    for number, (_, logged, name, _) in rows.items():  # type: ignore[union-attr]
        assert logged == number and SAFE_NAME.match(name), (number, logged, name)
        assert not any(mark in name for mark in HOSTILE_MARKS), name


def test_given_a_carrier_sending_the_callers_name_when_a_trunk_call_comes_then_the_number_stays(
        center_server: SiagaProcess, sipp: Sipp, tmp_path: Path) -> None:  # noqa: F811
    """A carrier puts the subscriber's name before the number (``"PT Maju Jaya"
    <sip:+62811223344@...>``): the call comes in on the trunk (SIPp on its address) and keeps
    the number with its +, in AMI and in the call log."""
    number = "+62811223344"
    watch = center_server.ami()
    try:
        log = tmp_path / "sipp-carrier.log"
        run = call_with_display(sipp, center_server, number, '"PT Maju Jaya"', log,
                                source=TRUNK_HOST)
        assert run.wait(timeout=90 * PATIENCE) == 0, log.read_text()[-2000:]
        seen = watch.wait_event("Newexten", 15, CallerIDNum=number)
        rows = wait_for(lambda: ended_rows(center_server, {number}), 30,
                        "the carrier's call ended in the log")
    finally:
        watch.close()
    assert seen["Channel"].startswith("PJSIP/trunk-"), seen["Channel"]
    assert rows[number][1] == number  # type: ignore[index]
