"""Hostile callers against the whole center (`siaga up`, real Asterisk), with SIPp as the
attacker on a loopback alias (127.0.0.2) and a pjsua2 phone as the citizen (127.0.0.1):

* an abandon flood (a burst of calls to 112 that hang up at once, each from a new number)
  leaves the callback list bounded, and a citizen who waited in the queue heads the API's
  list and the wallboard;
* a caller whose From user is "trunk" (or the trunk's username), from an address that is
  not the trunk's, lands on the anonymous endpoint, never on the trunk's (whose callers are
  dialled back over the trunk);
* a caller coming in over the trunk (SIPp on the trunk's address) whose From user forges an
  AMI event gets no text of theirs into AMI: the trunk, like the anonymous endpoint, has a
  caller ID of its own and the dialplan cleans the number it reads from the From.
"""

from __future__ import annotations

import http.client
import json
import re
import shutil
import socket
import subprocess
import tempfile
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dispatcher.api.service import ensure_operator_token
from dispatcher.credentials import ensure_credentials
from dispatcher.web.site import COOKIE
from pbx.provision import AsteriskInstall
from tests import ports
from tests.e2e.test_center_callbacks import give_up_in_queue
from tests.harness import PATIENCE, SiagaProcess, running_center, wait_for
from tests.sipdata import sipp_call

pytestmark = pytest.mark.asterisk

ATTACKER = "127.0.0.2"
TRUNK_HOST = "127.0.0.3"  # nobody answers there: only its address matters
TRUNK_USER = "bitung"
MAX_PER_SOURCE = 8
MAX_OPEN = 40
FLOOD_CALLS = 150
CITIZEN = "5551234"


def free_udp_port(address: str = ATTACKER) -> int:
    """A UDP port on ``address`` for SIPp to bind (see :mod:`tests.ports`)."""
    return ports.free_port(socket.SOCK_DGRAM, address)


class Sipp:
    """SIPp as the attacker, run where it is installed (in the Asterisk root filesystem:
    chrooted, so its scenario file is written there)."""

    def __init__(self, install: AsteriskInstall) -> None:
        if install.sipp is None:
            pytest.skip("SIPp (sip-tester) is not installed")
        self.prefix = install.sipp
        self.inside = install.rootfs  # None for a system SIPp
        base = (install.rootfs / "tmp") if install.rootfs is not None else None
        self.dir = Path(tempfile.mkdtemp(prefix="siaga-sipp-", dir=base))

    def start(self, target: str, user: str, calls: int, rate: int, hold_ms: int,
              log: Path, source: str = ATTACKER) -> subprocess.Popen[bytes]:
        """``calls`` calls to 112 at ``target`` from ``source``, ``rate`` per second."""
        scenario = self.dir / f"{re.sub(r'[^a-z0-9]', '', user.lower())[:40]}.xml"
        # One call to 112 hung up ``hold_ms`` after the answer (the hotline answers at
        # once); a ``user`` of "0899[call_number]" gives every call of a run a new number.
        scenario.write_bytes(sipp_call(user, hold_ms, name="hang up at once"))
        seen = scenario if self.inside is None else Path("/") / scenario.relative_to(self.inside)
        argv = [*self.prefix, "-sf", str(seen), "-s", "112", "-i", source,
                "-p", str(free_udp_port(source)), "-mi", source,
                "-mp", str(free_udp_port(source)),
                "-m", str(calls), "-r", str(rate), "-l", "30",
                "-nostdin", "-timeout", f"{int(120 * PATIENCE)}s", "-timeout_error", target]
        out = log.open("wb")
        try:
            return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        finally:
            out.close()

    def close(self) -> None:
        """Remove the scenario files."""
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def hostile_center(tmp_path_factory: pytest.TempPathFactory,
                   asterisk_install: AsteriskInstall) -> Iterator[SiagaProcess]:
    """The example city with a trunk at 127.0.0.3 and small callback bounds, run by
    `siaga up` on free loopback ports for this module's tests."""
    with running_center(tmp_path_factory.mktemp("hostile-center"),
                        trunk={"host": TRUNK_HOST, "port": 5060, "username": TRUNK_USER,
                               "password": "from-the-carrier"},
                        callbacks={"max_open": MAX_OPEN,
                                   "max_per_source": MAX_PER_SOURCE}) as proc:
        yield proc


@pytest.fixture
def sipp(asterisk_install: AsteriskInstall) -> Iterator[Sipp]:
    """The attacker's SIPp."""
    attacker = Sipp(asterisk_install)
    try:
        yield attacker
    finally:
        attacker.close()


def callbacks_page(server: SiagaProcess, limit: int = 200) -> dict[str, Any]:
    """GET /api/v1/callbacks as the operators' console does (loopback, operator token)."""
    http_ = server.center.http
    conn = http.client.HTTPConnection(http_.host, http_.port, timeout=10)
    try:
        conn.request("GET", f"/api/v1/callbacks?limit={limit}", headers={
            "Authorization": f"Bearer {ensure_operator_token(server.state_dir)}"})
        response = conn.getresponse()
        body = json.loads(response.read())
        assert response.status == 200, body
        return body
    finally:
        conn.close()


def wallboard(server: SiagaProcess) -> dict[str, Any]:
    """/wallboard.json as a supervisor logged into the console sees it."""
    center = server.center
    supervisor = center.supervisors[0]
    password = ensure_credentials(center).console_passwords[supervisor]
    conn = http.client.HTTPConnection(center.http.host, center.http.port, timeout=10)
    try:
        form = urllib.parse.urlencode({"extension": supervisor, "password": password,
                                       "next": "/wallboard"})
        conn.request("POST", "/login", form, {
            "Content-Type": "application/x-www-form-urlencoded"})
        response = conn.getresponse()
        response.read()
        cookie = next((c.split(";", 1)[0] for c in response.headers.get_all("Set-Cookie") or []
                       if c.startswith(COOKIE.decode() + "=")), None)
        assert cookie, f"no session cookie (HTTP {response.status})"
        conn.request("GET", "/wallboard.json", headers={"Cookie": cookie})
        response = conn.getresponse()
        body = json.loads(response.read())
        assert response.status == 200, body
        return body
    finally:
        conn.close()


def test_given_an_abandon_flood_from_one_address_when_a_citizen_waited_then_bounded_and_on_top(
        hostile_center: SiagaProcess, sipp: Sipp, phones, tmp_path: Path) -> None:  # noqa: ANN001
    """SIPp on 127.0.0.2 places 150 calls to 112 that hang up 0.2 s after the answer, each
    from a new number; meanwhile a citizen on 127.0.0.1 waits in the queue and gives up.
    Afterwards the list holds exactly max_per_source of the attacker's calls (the flood
    reached it and went no further) plus the citizen, who is first in GET /api/v1/callbacks
    and on the wallboard."""
    center = hostile_center.center
    target = f"{center.sip.host}:{center.sip.port}"
    log = tmp_path / "sipp-flood.out"
    flood = sipp.start(target, "0899[call_number]", FLOOD_CALLS, 25, 200, log)
    try:
        wait_for(lambda: callbacks_page(hostile_center)["total"] >= MAX_PER_SOURCE, 60,
                 "the flood to fill the attacker's share of the list")
        give_up_in_queue(phones, hostile_center, CITIZEN)
        flood.wait(timeout=180 * PATIENCE)
    finally:
        if flood.poll() is None:
            flood.kill()
            flood.wait()
    output = log.read_text(errors="replace")
    assert flood.returncode == 0, f"SIPp exit {flood.returncode}:\n{output[-3000:]}"

    def settled() -> dict[str, Any] | None:
        page = callbacks_page(hostile_center)
        if page["callbacks"] and page["callbacks"][0]["number"] == CITIZEN:
            return page
        return None

    page: dict[str, Any] = wait_for(settled, 30, "the citizen at the top")  # type: ignore[assignment]
    numbers = [c["number"] for c in page["callbacks"]]
    flooders = [n for n in numbers if n.startswith("0899")]
    assert len(flooders) == MAX_PER_SOURCE, numbers
    assert page["total"] == MAX_PER_SOURCE + 1 == len(numbers)
    top = page["callbacks"][0]
    assert top["queued"] is True and top["endpoint"] == "anonymous"
    board = wallboard(hostile_center)
    assert board["callbacks"][0]["number"] == CITIZEN
    assert board["callbacks_owed"] == MAX_PER_SOURCE + 1


@pytest.mark.parametrize("user", ["trunk", TRUNK_USER])
def test_given_a_from_user_naming_the_trunk_when_calling_from_elsewhere_then_anonymous(
        hostile_center: SiagaProcess, sipp: Sipp, tmp_path: Path, user: str) -> None:
    """SIPp on 127.0.0.2 (not the trunk's 127.0.0.3) calls 112 with From user "trunk" (or
    the trunk's username): Asterisk puts the call on the anonymous endpoint, never on the
    trunk's, so it is never dialled back over the trunk."""
    center = hostile_center.center
    watch = hostile_center.ami()
    try:
        log = tmp_path / "sipp-trunk.out"
        caller = sipp.start(f"{center.sip.host}:{center.sip.port}", user, 1, 1, 500, log)
        caller.wait(timeout=60 * PATIENCE)
        assert caller.returncode == 0, log.read_text(errors="replace")[-3000:]
        # The only call made since the watch opened (the caller ID is matched on nothing:
        # the dialplan may clean it).
        started = watch.wait_event("Newchannel", 20, Exten="112")
        channels = [e["Channel"] for e in watch.matching("Newchannel")]
    finally:
        watch.close()
    assert started["Channel"].startswith("PJSIP/anonymous-"), started["Channel"]
    assert not any(c.startswith("PJSIP/trunk-") for c in channels), channels


def test_given_a_trunk_caller_whose_from_forges_an_ami_event_when_it_calls_then_no_text_reaches_ami(
        hostile_center: SiagaProcess, sipp: Sipp, tmp_path: Path) -> None:
    """SIPp on the trunk's own address (127.0.0.3) calls 112 with a From user whose
    percent-escapes decode to CR LF and a whole ``SiagaCallbackResult`` event. The call is
    the trunk's, and no event an independent AMI client reads carries the caller's text: no
    forged user event, every caller number digits (or the endpoint's own "anonymous")."""
    center = hostile_center.center
    forged = "0812\r\n\r\nEvent:UserEvent\r\nUserEvent:SiagaCallbackResult\r\nCallback:1"
    watch = hostile_center.ami()
    try:
        log = tmp_path / "sipp-trunk-forgery.out"
        caller = sipp.start(f"{center.sip.host}:{center.sip.port}",
                            urllib.parse.quote(forged, safe=""), 1, 1, 1500, log,
                            source=TRUNK_HOST)
        caller.wait(timeout=60 * PATIENCE)
        assert caller.returncode == 0, log.read_text(errors="replace")[-3000:]
        started = watch.wait_event("Newchannel", 20, Exten="112")
        watch.wait_event("Hangup", 20, Channel=started["Channel"])
        with watch.lock:
            events = list(watch.events)
    finally:
        watch.close()
    assert started["Channel"].startswith("PJSIP/trunk-"), started["Channel"]
    assert not [e for e in events if e.get("UserEvent") == "SiagaCallbackResult"]
    numbers = {e.get("CallerIDNum", "") for e in events} - {""}
    assert all(re.fullmatch(r"\+?[0-9]{0,20}|anonymous|<unknown>", n) for n in numbers), numbers
    # The number the dialplan kept: the digits of the From user, nothing else.
    assert "08121" in numbers, numbers
