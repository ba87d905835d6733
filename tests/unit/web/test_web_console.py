"""The console's HTTP side, driven through the real Twisted HTTP channel over StringTransport."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from twisted.internet import defer, task
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport

from dispatcher.config.loader import load_center
from dispatcher.credentials import ensure_credentials
from dispatcher.web.sessions import LoginThrottle, SessionTable, Staff, safe_next
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

    def __init__(self, site, source: str = "127.0.0.1") -> None:  # noqa: ANN001
        self.site = site
        self.source = source
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, body: bytes = b"",
                headers: dict[str, str] | None = None) -> Response:
        channel = self.site.buildProtocol(IPv4Address("TCP", self.source, 40000))
        transport = StringTransport(peerAddress=IPv4Address("TCP", self.source, 40000))
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


def test_given_many_bad_passwords_when_logging_in_then_the_address_backs_off(world) -> None:  # noqa: ANN001,E501
    """After five failures the guessing address waits, longer after each further failure;
    its attempts in the wait are refused (429 with Retry-After) without being checked."""
    center, creds, clock, client, _ = world
    ext = center.operators[1].extension
    for _ in range(5):
        assert client.login(ext, "guess").status == 401
    refused = client.login(ext, creds.console_passwords[ext])
    assert refused.status == 429 and refused.header("retry-after") == "1"
    clock.advance(1)
    assert client.login(ext, "guess").status == 401
    assert client.login(ext, "guess").header("retry-after") == "2"
    clock.advance(2)
    assert client.login(ext, creds.console_passwords[ext]).status == 302


def test_given_brute_force_from_one_address_when_the_user_logs_in_elsewhere_then_admitted(
        world) -> None:  # noqa: ANN001
    """Guessing a supervisor's password from one address never locks the supervisor out:
    the right password from another address still opens the console."""
    center, creds, clock, attacker, _ = world
    sup = center.supervisors[0]
    for _ in range(200):
        attacker.login(sup, "guess")
        clock.advance(0.5)
    assert attacker.login(sup, "guess").status == 429
    assert attacker.login(sup, creds.console_passwords[sup]).status == 429
    supervisor = Client(attacker.site, source="10.1.2.3")
    assert supervisor.login(sup, creds.console_passwords[sup]).status == 302
    assert supervisor.request("GET", "/reports?format=csv").status == 200


def test_given_many_addresses_when_guessing_one_account_then_each_gets_few_guesses(
        world) -> None:  # noqa: ANN001
    """A distributed guesser: once the account has failed often, an address that already
    failed on it waits (the account's backoff), so each address gets few guesses."""
    center, creds, _, client, _ = world
    sup = center.supervisors[0]
    statuses = []
    for i in range(40):
        guesser = Client(client.site, source=f"10.9.0.{i}")
        statuses.append([guesser.login(sup, "guess").status for _ in range(3)])
    assert statuses[-1] == [401, 429, 429]


def test_given_an_attack_going_on_when_the_user_mistyped_once_then_waits_a_bounded_time(
        world) -> None:  # noqa: ANN001
    """The supervisor mistypes once from their own address while an attacker keeps guessing
    from another: the supervisor's wait is counted from their own failure and ends, however
    long the attack goes on."""
    center, creds, clock, attacker, _ = world
    sup = center.supervisors[0]
    supervisor = Client(attacker.site, source="10.1.2.3")
    for _ in range(10):
        attacker.login(sup, "guess")
    assert supervisor.login(sup, "typo").status == 401
    waited = 0
    while supervisor.login(sup, creds.console_passwords[sup]).status == 429:
        assert waited <= 300
        for k in range(5):  # the attack goes on, from ever new addresses
            Client(attacker.site, source=f"10.7.{waited % 250}.{k}").login(sup, "guess")
        clock.advance(5)
        waited += 5
    assert supervisor.request("GET", "/reports?format=csv").status == 200


def test_given_a_session_when_logged_out_then_its_cookie_is_refused(world) -> None:  # noqa: ANN001
    """Logout ends the session on the server: the cookie captured before is worthless."""
    center, creds, _, client, _ = world
    sup = center.supervisors[0]
    client.login(sup, creds.console_passwords[sup])
    captured = dict(client.cookies)
    assert client.request("GET", "/wallboard.json").status == 200
    assert client.request("POST", "/logout").status == 302
    thief = Client(client.site)
    thief.cookies = captured
    assert thief.request("GET", "/wallboard.json").status == 401


def test_given_a_user_removed_or_demoted_when_the_config_changes_then_sessions_end(
        world, tmp_path: Path) -> None:  # noqa: ANN001
    """The role is read from the current config on each request: a supervisor made operator
    loses the session (not just the reports), and so does a user removed."""
    import dataclasses

    center, creds, _, client, queries = world
    sup, op = center.supervisors[0], center.operators[0].extension
    client.login(sup, creds.console_passwords[sup])
    other = Client(client.site)
    other.login(op, creds.console_passwords[op])
    console = client.site.console
    demoted = dataclasses.replace(
        center, supervisors=center.supervisors[1:],
        operators=(*center.operators, dataclasses.replace(center.operators[0], extension=sup)))
    console.center = demoted
    assert client.request("GET", "/reports?format=csv").status == 302
    assert client.request("GET", "/wallboard.json").status == 401
    removed = dataclasses.replace(center, operators=center.operators[1:])
    # The removed operator's session (the demoted one ended at its last request).
    assert console.reloaded(removed, creds) == 1
    assert other.request("GET", "/wallboard.json").status == 401
    assert queries == []


def test_given_sessions_when_the_server_restarts_then_only_valid_ones_survive(
        tmp_path: Path) -> None:
    """Sessions are kept in the state directory (by digest only) and reloaded; one whose
    user was removed or which expired does not come back."""
    from dispatcher.web.sessions import load_sessions, save_sessions

    clock = task.Clock()
    path = tmp_path / "sessions.json"
    roles = {"201": "operator", "290": "supervisor"}
    table = SessionTable(clock.seconds, lambda: roles, lifetime=60,
                         save=lambda rows: save_sessions(path, rows))
    kept = table.open(Staff("201", "operator"))
    gone = table.open(Staff("290", "supervisor"))
    assert kept not in path.read_text() and oct(path.stat().st_mode & 0o777) == "0o600"
    after = {"201": "operator"}
    table2 = SessionTable(clock.seconds, lambda: after, lifetime=60, rows=load_sessions(path),
                          save=lambda rows: save_sessions(path, rows))
    assert table2.lookup(kept) == Staff("201", "operator")
    assert table2.lookup(gone) is None and len(load_sessions(path)) == 1
    clock.advance(61)
    assert table2.lookup(kept) is None
    assert table2.lookup(None) is None and table2.lookup("x" * 300) is None


@pytest.mark.parametrize("evil", [
    "//evil.example/x", "/\\evil.example", "/\tevil.example", "/\t/evil.example",
    "\\evil.example", "/%5Cevil.example", "/%2F%2Fevil.example", "%2F%2Fevil.example",
    "https://evil.example/", "javascript:alert(1)", "JavaScript:alert(1)",
    "/\r\n/evil.example", " //evil.example", "/../evil", "/./x", "http:/evil.example",
    "/wallboard\x00", "///evil.example", "/\u3000/evil.example", "",
])
def test_given_an_evil_next_when_logging_in_then_the_default_page(world, evil: str) -> None:  # noqa: ANN001,E501
    """Every redirect target that a browser could read as another site falls back to the
    wallboard, as a form field and as the login page's query."""
    from urllib.parse import quote

    center, creds, _, client, _ = world
    assert safe_next(evil) == "/wallboard"
    ext = center.operators[0].extension
    body = (f"extension={ext}&password={creds.console_passwords[ext]}"
            f"&next={quote(evil, safe='')}").encode()
    response = client.request("POST", "/login", body,
                              {"Content-Type": "application/x-www-form-urlencoded"})
    assert response.header("location") == "/wallboard"
    page = client.request("GET", f"/login?next={quote(evil, safe='')}")
    assert b'name="next" value="/wallboard"' in page.body


def test_given_a_local_next_when_logging_in_then_kept() -> None:
    """Plain console paths with a plain query stay."""
    assert safe_next("/reports?from=2026-11-01&format=csv") == (
        "/reports?from=2026-11-01&format=csv")
    assert safe_next("/wallboard") == "/wallboard"


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
        throttle.failed(f"user{i}", "10.0.0.1")
    assert len(throttle._failures) <= 10_001
