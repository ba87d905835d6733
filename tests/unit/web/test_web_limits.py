"""The HTTP site's connection caps and request deadlines, driven through the real Twisted
HTTP channel over StringTransport with a fake clock."""

from __future__ import annotations

from pathlib import Path

import pytest
from twisted.internet import defer, task
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport

from dispatcher.config.loader import load_center
from dispatcher.config.model import HttpLimits
from dispatcher.credentials import ensure_credentials
from dispatcher.web.site import build_site
from tests.harness import EXAMPLE_CONFIG


@pytest.fixture
def site(tmp_path: Path):  # noqa: ANN201
    """The console's site with small limits and a fake clock."""
    import dataclasses

    center = load_center(EXAMPLE_CONFIG, state_dir=tmp_path)
    center = dataclasses.replace(center, http_limits=HttpLimits(
        connections=6, connections_per_source=3, request_seconds=10, idle_seconds=60))
    clock = task.Clock()
    site = build_site(center, ensure_credentials(center), clock.seconds,
                      wallboard=lambda: {}, reports=lambda q: defer.succeed(("text/csv", "")),
                      reactor=clock)
    return site, clock


def connect(site, host: str = "127.0.0.1"):  # noqa: ANN001, ANN201
    address = IPv4Address("TCP", host, 40000)
    proto = site.buildProtocol(address)
    transport = StringTransport(peerAddress=address)
    proto.makeConnection(transport)
    return proto, transport


def test_given_a_slow_loris_when_it_trickles_headers_then_dropped_at_the_deadline(site) -> None:  # noqa: ANN001,E501
    """One header byte a second resets Twisted's idle timeout each time; the request
    deadline does not move, so the client is dropped after 10 s with a 408."""
    site, clock = site
    proto, transport = connect(site)
    request = b"GET /login HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 100
    for byte in request[:15]:
        proto.dataReceived(bytes([byte]))
        clock.advance(1)
        if transport.disconnecting:
            break
    assert transport.disconnecting
    assert transport.value().startswith(b"HTTP/1.1 408")


def test_given_a_kept_alive_connection_when_the_next_request_trickles_then_dropped(
        site) -> None:  # noqa: ANN001
    """The deadline starts again with the first byte of each request on a kept-alive
    connection; a prompt request is answered and does not trip it."""
    site, clock = site
    proto, transport = connect(site)
    proto.dataReceived(b"GET /login HTTP/1.1\r\nHost: x\r\n\r\n")
    assert transport.value().startswith(b"HTTP/1.1 200")
    clock.advance(30)  # idle between requests: under idle_seconds
    assert not transport.disconnecting
    transport.clear()
    for _ in range(11):
        proto.dataReceived(b"G")
        clock.advance(1)
    assert transport.disconnecting and transport.value().startswith(b"HTTP/1.1 408")


def test_given_too_many_connections_when_one_more_opens_then_503_and_others_still_work(
        site) -> None:  # noqa: ANN001
    """Per source and in total: the connection over the cap gets a JSON 503 and is closed;
    closing one frees its slot; other sources keep theirs."""
    site, _ = site
    mine = [connect(site, "10.0.0.1") for _ in range(3)]
    proto, transport = connect(site, "10.0.0.1")
    assert transport.value().startswith(b"HTTP/1.1 503") and b"too_many_connections" in (
        transport.value()) and transport.disconnecting
    others = [connect(site, f"10.0.1.{i}") for i in range(3)]
    _, full = connect(site, "10.0.2.1")
    assert full.value().startswith(b"HTTP/1.1 503")
    mine[0][0].connectionLost(None)
    proto, transport = connect(site, "10.0.0.1")
    proto.dataReceived(b"GET /login HTTP/1.1\r\nHost: x\r\n\r\n")
    assert transport.value().startswith(b"HTTP/1.1 200")
    assert site.open_connections == 6 and len(others) == 3


def test_given_a_connection_that_sends_nothing_when_the_deadline_passes_then_closed_silently(
        site) -> None:  # noqa: ANN001
    """A spare connection a browser opened ahead of need is closed without a 408, which the
    browser would otherwise take for the answer to its next request."""
    site, clock = site
    _, transport = connect(site)
    clock.advance(10)
    assert transport.disconnecting and transport.value() == b""
