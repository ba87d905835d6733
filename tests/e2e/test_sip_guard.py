"""SIP scans and password guessing against the whole center (`siaga up`), as an attacker runs
them: SIPVicious' ``svcrack`` and ``svwar`` from loopback aliases (127.0.0.2, 127.0.0.3),
while the operators' phones and a citizen work from 127.0.0.1 (the example city's staff
network). The attacker's source must end up refused; the center must go on serving."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import pytest

from dispatcher.credentials import ensure_credentials
from pbx.phone.events import CallState
from pbx.phone.phone import Phone
from tests.harness import REPO, SiagaProcess, running_center, wait_for

pytestmark = pytest.mark.asterisk

CRACKER = "127.0.0.2"
ENUMERATOR = "127.0.0.3"


def options_status(source: str, server: SiagaProcess) -> int | None:
    """Send one OPTIONS from ``source`` to the center; the response's status code (None if
    no answer in a second). A blocked source gets 403 from res_pjsip's ACL; any other
    source gets Asterisk's ordinary answer."""
    sip = server.center.sip
    call_id = uuid.uuid4().hex
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((source, 0))
        port = sock.getsockname()[1]
        request = (
            f"OPTIONS sip:{sip.host}:{sip.port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {source}:{port};rport;branch=z9hG4bK{call_id[:16]}\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:probe@{source}>;tag={call_id[:8]}\r\n"
            f"To: <sip:{sip.host}:{sip.port}>\r\n"
            f"Call-ID: {call_id}\r\n"
            "CSeq: 1 OPTIONS\r\n"
            "Content-Length: 0\r\n\r\n")
        sock.sendto(request.encode(), (sip.host, sip.port))
        sock.settimeout(1.0)
        while True:
            try:
                data, _ = sock.recvfrom(65535)
            except TimeoutError:
                return None
            if call_id.encode() in data and data.startswith(b"SIP/2.0 "):
                return int(data.split(b" ", 2)[1])


def scanner(tool: str, source: str, server: SiagaProcess, *args: str) -> subprocess.Popen[str]:
    """Start a SIPVicious scanner bound to ``source`` against the center (tests/sipscan.py
    makes the tool honour its own ``-b``)."""
    sip = server.center.sip
    return subprocess.Popen(
        [sys.executable, "-m", "tests.sipscan", tool, "-b", source, "-p", str(sip.port),
         *args, sip.host],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def stop(proc: subprocess.Popen[str]) -> str:
    """Stop a scanner if it still runs; what it printed."""
    if proc.poll() is None:
        proc.kill()
    out, _ = proc.communicate(timeout=30)
    return out


def test_given_svcrack_guessing_an_operator_password_when_it_keeps_failing_then_its_source_is_refused_and_the_center_serves_on(  # noqa: E501
        center_server: SiagaProcess, phones) -> None:  # noqa: ANN001
    """svcrack from 127.0.0.2 tries passwords for operator 202. Within seconds every request
    from 127.0.0.2 is refused (403 to an OPTIONS probe, which it answered before the
    scan), while a citizen calling 112 from 127.0.0.1 during the scan reaches the queue and
    operator 201 (registered on 127.0.0.1) answers; a phone registers afresh afterwards."""
    center = center_server.center
    sip = f"{center.sip.host}:{center.sip.port}"
    creds = ensure_credentials(center)
    operator = phones.extension("201", creds.password("201"), sip)
    assert options_status(CRACKER, center_server) not in (None, 403), "blocked before any scan"

    watch = center_server.ami()
    try:
        started = time.monotonic()
        crack = scanner("svcrack", CRACKER, center_server, "-u", "202", "-r", "1-400",
                        "--maximumtime", "5")
        try:
            citizen = phones._keep(Phone(phones.stack, "5551201", server=sip))
            call = citizen.call(center.hotline[0])
            call.wait_state(CallState.CONFIRMED, 15)
            call.send_dtmf("0")
            wait_for(lambda: options_status(CRACKER, center_server) == 403, 5,
                     f"{CRACKER} to be refused")
            blocked_after = time.monotonic() - started
            watch.wait_event("QueueCallerJoin", 20, CallerIDNum="5551201")
        finally:
            output = stop(crack)
        failures = len(watch.matching("ChallengeResponseFailed",
                                      RemoteAddress=f"IPV4/UDP/{CRACKER}/5060"))
    finally:
        watch.close()
    # A figure, not a pass/fail bound: how soon the guesser was cut off on this machine.
    print(f"\nsvcrack from {CRACKER}: refused {blocked_after:.2f} s after the scan began "
          f"({failures} failed challenges reached the server)")
    assert "Password" not in output, output  # svcrack's table of cracked passwords

    answered = operator.answer(40)
    answered.wait_confirmed(10)
    heard = phones.two_way_audio(call, answered)
    assert heard.both, heard
    call.hangup()
    answered.wait_disconnected(10)
    phones.extension("203", creds.password("203"), sip)  # staff still register
    assert options_status(CRACKER, center_server) == 403, "the block did not last"


def test_given_svwar_enumerating_extensions_when_it_keeps_trying_then_its_source_is_refused(
        center_server: SiagaProcess) -> None:
    """svwar from 127.0.0.3 registers as extension after extension. Asterisk refuses each
    unknown user (a failed ACL check of the anonymous endpoint, which has no AOR) and svwar
    gives up on the first refusal, so the enumerator runs again and again — as a persistent
    one does — until the center refuses its source altogether."""
    assert options_status(ENUMERATOR, center_server) not in (None, 403)
    started = time.monotonic()
    runs = 0

    def blocked() -> bool:
        nonlocal runs
        runs += 1
        stop_after = scanner("svwar", ENUMERATOR, center_server, "--force", "-e", "100-199",
                             "--maximumtime", "2")
        stop_after.wait(30)
        stop(stop_after)
        return options_status(ENUMERATOR, center_server) == 403

    wait_for(blocked, 20, f"{ENUMERATOR} to be refused")
    print(f"\nsvwar from {ENUMERATOR}: refused after {runs} runs, "
          f"{time.monotonic() - started:.2f} s")
    assert options_status("127.0.0.1", center_server) not in (None, 403)


@pytest.fixture
def quick_center(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SiagaProcess]:
    """`siaga up` whose blocks last 3 s (block after 5 failures in 60 s)."""
    with running_center(tmp_path_factory.mktemp("guard-center"),
                        security={"block_after": 5, "block_seconds": 3}) as proc:
        yield proc


def test_given_a_blocked_source_when_block_seconds_pass_then_it_is_served_again(
        quick_center: SiagaProcess) -> None:
    """The block lasts the configured time, then Asterisk answers the source again (the
    server rewrote the ACL and reloaded it): an address shared with a real caller is not
    cut off for good."""
    crack = scanner("svcrack", "127.0.0.4", quick_center, "-u", "202", "-r", "1-400",
                    "--maximumtime", "2")
    try:
        wait_for(lambda: options_status("127.0.0.4", quick_center) == 403, 5,
                 "127.0.0.4 to be refused")
    finally:
        stop(crack)
    refused_at = time.monotonic()
    assert options_status("127.0.0.4", quick_center) == 403
    wait_for(lambda: options_status("127.0.0.4", quick_center) not in (None, 403), 6,
             "127.0.0.4 to be served again")
    print(f"\n127.0.0.4 served again {time.monotonic() - refused_at:.2f} s after its block "
          "was seen (block_seconds: 3)")
