"""Malformed SIP against the whole center (`siaga up`): the 49 torture messages of RFC 4475
(tests/data/sip), each in a UDP datagram to the center's SIP port. Asterisk and the server
must stay up, keep no call state the messages tried to create, and serve the next real call.
"""

from __future__ import annotations

import json
import os
import socket
import urllib.parse
import urllib.request
from http.cookiejar import CookieJar
from typing import Any

import pytest

from dispatcher.credentials import ensure_credentials
from pbx.phone.events import CallState
from pbx.phone.phone import Phone
from tests.e2e.test_sip_guard import options_status
from tests.harness import AmiWatch, SiagaProcess, wait_for
from tests.sipdata import NAMES, message

pytestmark = pytest.mark.asterisk

# Sent from the staff network: the messages include REGISTERs of unknown users, and a source
# elsewhere would be refused by the SIP guard before the last of them reached the parser.
SOURCE = "127.0.0.1"


def channels(watch: AmiWatch) -> int:
    """How many channels Asterisk has (CoreShowChannels' list)."""
    before = len(watch.matching("CoreShowChannelsComplete"))
    response = watch.action("CoreShowChannels")
    assert response is not None and response.status == "Success", response
    done = wait_for(lambda: watch.matching("CoreShowChannelsComplete")[before:], 10,
                    "the channel list")
    return int(done[0]["ListItems"])  # type: ignore[index]


def wallboard(server: SiagaProcess) -> dict[str, Any]:
    """The server's live view (its model of Asterisk's queue), as a supervisor reads it."""
    center = server.center
    base = f"http://{center.http.host}:{center.http.port}"
    supervisor = center.supervisors[0]
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()))
    form = urllib.parse.urlencode({
        "extension": supervisor,
        "password": ensure_credentials(center).console_passwords[supervisor]}).encode()
    login = urllib.request.Request(base + "/login", data=form, headers={"Origin": base})
    opener.open(login, timeout=10).read()
    with opener.open(base + "/wallboard.json", timeout=10) as resp:
        return json.loads(resp.read())


def test_given_the_rfc_4475_torture_messages_when_sent_then_the_center_stays_up_and_serves(
        center_server: SiagaProcess, phones) -> None:  # noqa: ANN001
    """Every message of RFC 4475 in its own datagram; then Asterisk and the server still run
    and answer (AMI Ping, a SIP OPTIONS), no channel and no waiting caller is left from
    them, and a citizen calling 112 reaches the operators' queue, seen by the live model."""
    center = center_server.center
    server_pid = center_server.proc.pid  # type: ignore[union-attr]
    asterisk_pid = center_server.asterisk_pid()
    assert asterisk_pid is not None
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((SOURCE, 0))
        for name in NAMES:
            sock.sendto(message(name), (center.sip.host, center.sip.port))

    # A well-formed request sent after all of them is answered: the rest were read first.
    wait_for(lambda: options_status(SOURCE, center_server) not in (None, 403), 15,
             "an answer to OPTIONS after the torture messages")
    assert center_server.proc.poll() is None, center_server.output()  # type: ignore[union-attr]
    os.kill(asterisk_pid, 0)  # raises if Asterisk died
    assert center_server.asterisk_pid() == asterisk_pid, "Asterisk was restarted"
    watch = center_server.ami()
    try:
        assert watch.action("Ping").status == "Success"
        assert channels(watch) == 0
        board = wallboard(center_server)
        assert board["waiting"] == 0 and board["callers"] == [], board

        sip = f"{center.sip.host}:{center.sip.port}"
        citizen = phones._keep(Phone(phones.stack, "5554475", server=sip))
        call = citizen.call(center.hotline[0])
        call.wait_state(CallState.CONFIRMED, 15)
        call.send_dtmf("0")
        watch.wait_event("QueueCallerJoin", 20, CallerIDNum="5554475")
        board = wait_for(lambda: (b := wallboard(center_server))["waiting"] == 1 and b, 10,
                         "the citizen on the wallboard")
        assert [c["caller"] for c in board["callers"]] == ["5554475"], board  # type: ignore[index]
        call.hangup()
        call.wait_disconnected(10)
    finally:
        watch.close()
    assert center_server.proc.pid == server_pid  # type: ignore[union-attr]
