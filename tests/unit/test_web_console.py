"""The console's HTTP side, driven through the real Twisted HTTP channel over StringTransport."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from twisted.internet import defer, task
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport

from dispatcher.config import load_center
from dispatcher.credentials import ensure_credentials
from dispatcher.web.sessions import LoginThrottle, SessionSigner, Staff
from dispatcher.web.site import build_site
from tests.harness import EXAMPLE_CONFIG


class Response:
    def __init__(self, raw: bytes) -> None:
        head, _, self.body = raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1])
        self.headers: dict[str, list[str]] = {}
        for line in lines[1:]:
            name, _, value = line.partition(": ")
            self.headers.setdefault(name.lower(), []).append(value)
        if self.headers.get("transfer-encoding") == ["chunked"]:
            self.body = _dechunk(self.body)

    def header(self, name: str) -> str:
        return self.headers.get(name.lower(), [""])[0]

    def json(self) -> dict:
        return json.loads(self.body)


def _dechunk(data: bytes) -> bytes:
    out = b""
    while data:
        size_line, _, rest = data.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            break
        out += rest[:size]
        data = rest[size + 2:]
    return out


class Client:
    """Sends one request per fresh HTTP channel to the site; keeps cookies like a browser."""

    def __init__(self, site) -> None:  # noqa: ANN001
        self.site = site
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, body: bytes = b"",
                headers: dict[str, str] | None = None) -> Response:
        channel = self.site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
        transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 40000))
        channel.makeConnection(transport)
        hdrs = {"Host": "127.0.0.1:8080", "Content-Length": str(len(body)), **(headers or {})}
        if self.cookies:
            hdrs["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        raw = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items())
        channel.dataReceived(raw.encode() + b"\r\n" + body)
        response = Response(transport.value())
        channel.connectionLost(None)
        for cookie in response.headers.get("set-cookie", []):
            name, _, rest = cookie.partition("=")
            value = rest.split(";")[0]
            if value:
                self.cookies[name] = value
            else:
                self.cookies.pop(name, None)
        return response

    def login(self, extension: str, password: str, **headers: str) -> Response:
        body = f"extension={extension}&password={password}&next=/wallboard".encode()
        return self.request("POST", "/login", body, {
            "Content-Type": "application/x-www-form-urlencoded", **headers})


@pytest.fixture
def world(tmp_path: Path):  # noqa: ANN201
    center = load_center(EXAMPLE_CONFIG, state_dir=tmp_path)
    creds = ensure_credentials(center)
    clock = task.Clock()
    clock.advance(1_800_000_000)
    queries: list[dict] = []

    def reports(query: dict) -> defer.Deferred:
        queries.append(query)
        return defer.succeed(("text/csv; charset=utf-8", "section,item\n"))

    site = build_site(center, creds, clock.seconds,
                      wallboard=lambda: {"waiting": 2, "callers": []}, reports=reports)
    return center, creds, clock, Client(site), queries


def test_given_no_login_when_opening_the_wallboard_then_sent_to_login(world) -> None:  # noqa: ANN001
    """Pages redirect to the login; the JSON behind them says 401 with a reason."""
    _, _, _, client, _ = world
    page = client.request("GET", "/wallboard")
    assert page.status == 302 and page.header("location").startswith("/login?next=")
    data = client.request("GET", "/wallboard.json")
    assert data.status == 401 and data.json()["error"] == "login_required"


def test_given_operator_password_when_logging_in_then_wallboard_opens(world) -> None:  # noqa: ANN001
    """A good console password sets an HttpOnly, SameSite=Strict cookie; data then flows."""
    center, creds, _, client, _ = world
    ext = center.operators[0].extension
    response = client.login(ext, creds.console_passwords[ext])
    assert response.status == 302
    cookie = response.header("set-cookie")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    assert client.request("GET", "/wallboard.json").json() == {"waiting": 2, "callers": []}
    page = client.request("GET", "/wallboard")
    assert page.status == 200 and b"wallboard.js" in page.body
    assert "frame-ancestors 'none'" in page.header("content-security-policy")


def test_given_the_sip_password_when_logging_in_then_refused(world) -> None:  # noqa: ANN001
    """The softphone's SIP secret is not a console password."""
    center, creds, _, client, _ = world
    ext = center.operators[0].extension
    response = client.login(ext, creds.password(ext))
    assert response.status == 401
    assert client.cookies == {}


def test_given_an_operator_when_opening_reports_then_forbidden(world) -> None:  # noqa: ANN001
    """Reports are for supervisors; an operator's session gets a JSON 403."""
    center, creds, _, client, queries = world
    ext = center.operators[0].extension
    client.login(ext, creds.console_passwords[ext])
    response = client.request("GET", "/reports?format=csv")
    assert response.status == 403 and response.json()["error"] == "forbidden"
    assert queries == []


def test_given_a_supervisor_when_asking_a_bad_report_then_json_reason(world) -> None:  # noqa: ANN001
    """Bad dates and formats are refused with a reason; a good query reaches the runner."""
    center, creds, _, client, queries = world
    sup = center.supervisors[0]
    client.login(sup, creds.console_passwords[sup])
    bad = client.request("GET", "/reports?from=2026-13-01")
    assert bad.status == 400 and bad.json()["error"] == "bad_date"
    bad = client.request("GET", "/reports?format=pdf")
    assert bad.status == 400 and bad.json()["error"] == "bad_format"
    good = client.request("GET", "/reports?from=2026-11-01&to=2026-11-30&format=csv&lang=en")
    assert good.status == 200 and good.body == b"section,item\n"
    assert queries[-1]["language"] == "en" and str(queries[-1]["to"]) == "2026-11-30"


def test_given_another_site_when_posting_login_then_refused(world) -> None:  # noqa: ANN001
    """A login form posted from another origin (CSRF) is refused before any check."""
    center, creds, _, client, _ = world
    ext = center.operators[0].extension
    response = client.login(ext, creds.console_passwords[ext], Origin="http://evil.example")
    assert response.status == 403 and client.cookies == {}


def test_given_many_bad_passwords_when_logging_in_then_throttled(world) -> None:  # noqa: ANN001
    """After five failures the right password is refused too, until the window passes."""
    center, creds, clock, client, _ = world
    ext = center.operators[1].extension
    for _ in range(5):
        assert client.login(ext, "guess").status == 401
    assert client.login(ext, creds.console_passwords[ext]).status == 429
    clock.advance(301)
    assert client.login(ext, creds.console_passwords[ext]).status == 302


def test_given_a_session_when_expired_or_altered_then_refused() -> None:
    """Tokens expire, and changing the role or extension breaks the signature."""
    clock = task.Clock()
    signer = SessionSigner("k" * 32, clock.seconds, lifetime=60)
    token = signer.issue(Staff("201", "operator"))
    assert signer.verify(token) == Staff("201", "operator")
    assert signer.verify(token.replace("operator", "supervisor")) is None
    assert signer.verify(token.replace("201", "290")) is None
    clock.advance(61)
    assert signer.verify(token) is None
    assert signer.verify(None) is None and signer.verify("a.b") is None


def test_given_a_redirect_target_when_logging_in_then_only_local_paths(world) -> None:  # noqa: ANN001
    """`next` cannot send the user to another site after login."""
    center, creds, _, client, _ = world
    ext = center.operators[0].extension
    body = (f"extension={ext}&password={creds.console_passwords[ext]}"
            "&next=//evil.example/x").encode()
    response = client.request("POST", "/login", body,
                              {"Content-Type": "application/x-www-form-urlencoded"})
    assert response.header("location") == "/wallboard"


def test_given_throttle_when_many_names_then_memory_is_bounded() -> None:
    """A flood of made-up user names does not grow the failure table without bound."""
    clock = task.Clock()
    throttle = LoginThrottle(clock.seconds)
    for i in range(20_000):
        throttle.failed(f"user:{i}")
    assert len(throttle._failures) <= 10_000
