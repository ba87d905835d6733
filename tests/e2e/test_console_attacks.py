"""The console and the API as an attacker meets them: the whole center (``siaga up``) on
loopback, raw HTTP from several loopback addresses (127.0.0.x stand for other machines)."""

from __future__ import annotations

import http.client
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, urlencode

import pytest
import yaml

from dispatcher.credentials import ensure_credentials
from tests.harness import SiagaProcess, running_center, wait_for

pytestmark = pytest.mark.asterisk

LIMITS = {"connections": 40, "connections_per_source": 8, "request_seconds": 3,
          "idle_seconds": 30}


@pytest.fixture(scope="module")
def center_server(tmp_path_factory: pytest.TempPathFactory,
                  asterisk_install) -> Iterator[SiagaProcess]:  # noqa: ANN001
    """The whole center on free ports with small HTTP limits, for this module."""
    with running_center(tmp_path_factory.mktemp("attacks"), http={"limits": LIMITS}) as proc:
        yield proc


class Browser:
    """One HTTP client from one source address, keeping the session cookie."""

    def __init__(self, server: SiagaProcess, source: str = "127.0.0.1") -> None:
        self.host, self.port = server.center.http.host, server.center.http.port
        self.source = source
        self.cookie: str | None = None

    def request(self, method: str, path: str, body: bytes = b"",
                headers: dict[str, str] | None = None) -> http.client.HTTPResponse:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=10,
                                          source_address=(self.source, 0))
        hdrs = dict(headers or {})
        if self.cookie:
            hdrs["Cookie"] = f"siaga_session={self.cookie}"
        conn.request(method, path, body=body, headers=hdrs)
        response = conn.getresponse()
        response.body = response.read()  # type: ignore[attr-defined]
        conn.close()
        for name, value in response.getheaders():
            if name.lower() == "set-cookie" and value.startswith("siaga_session="):
                self.cookie = value.split(";")[0].split("=", 1)[1] or None
        return response

    def login(self, extension: str, password: str, nxt: str = "/wallboard"
              ) -> http.client.HTTPResponse:
        body = urlencode({"extension": extension, "password": password, "next": nxt}).encode()
        return self.request("POST", "/login", body,
                            {"Content-Type": "application/x-www-form-urlencoded"})


def test_given_brute_force_from_one_address_when_the_supervisor_logs_in_from_another_then_in(
        center_server: SiagaProcess) -> None:
    """Thirty wrong passwords for a supervisor from 127.0.0.2: that address is slowed down
    (429, even with the right password), but the supervisor at 127.0.0.3 logs in."""
    creds = ensure_credentials(center_server.center)
    sup = center_server.center.supervisors[0]
    attacker = Browser(center_server, "127.0.0.2")
    statuses = [attacker.login(sup, f"guess{i}").status for i in range(30)]
    assert statuses[:5] == [401] * 5 and 429 in statuses[5:]
    assert attacker.login(sup, creds.console_passwords[sup]).status == 429
    supervisor = Browser(center_server, "127.0.0.3")
    response = supervisor.login(sup, creds.console_passwords[sup])
    assert response.status == 302 and supervisor.cookie
    assert supervisor.request("GET", "/reports?format=csv").status == 200


EVIL_NEXT = ["//evil.example/x", "/\\evil.example", "/\t/evil.example", "/\\\\evil.example",
             "/%5Cevil.example", "%2F%2Fevil.example", "/%2F/evil.example",
             "javascript:alert(1)", "https://evil.example/", "\\\\evil.example",
             "/\r\n/evil.example", "///evil.example", " //evil.example"]


def test_given_evil_next_targets_when_logging_in_then_always_the_wallboard(
        center_server: SiagaProcess) -> None:
    """Every redirect an attacker could put in a login link lands on the wallboard, both
    after the POST and in the login form the GET shows."""
    creds = ensure_credentials(center_server.center)
    op = center_server.center.operators[0].extension
    for evil in EVIL_NEXT:
        browser = Browser(center_server, "127.0.0.4")
        response = browser.login(op, creds.console_passwords[op], nxt=evil)
        assert (response.status, response.getheader("Location")) == (302, "/wallboard"), evil
        page = browser.request("GET", f"/login?next={quote(evil, safe='')}")
        assert b'name="next" value="/wallboard"' in page.body, evil  # type: ignore[attr-defined]


def test_given_a_cookie_captured_before_logout_when_replayed_then_refused(
        center_server: SiagaProcess) -> None:
    """Logout ends the session on the server: a copy of the cookie taken before is refused."""
    creds = ensure_credentials(center_server.center)
    sup = center_server.center.supervisors[0]
    user = Browser(center_server, "127.0.0.5")
    assert user.login(sup, creds.console_passwords[sup]).status == 302
    thief = Browser(center_server, "127.0.0.6")
    thief.cookie = user.cookie
    assert thief.request("GET", "/wallboard.json").status == 200
    assert user.request("POST", "/logout").status == 302
    assert thief.request("GET", "/wallboard.json").status == 401
    assert thief.request("GET", "/reports?format=csv").status == 302


def _open(server: SiagaProcess, source: str) -> socket.socket:
    sock = socket.create_connection((server.center.http.host, server.center.http.port),
                                    timeout=10, source_address=(source, 0))
    return sock


def _closed_by_server(sock: socket.socket) -> bytes | None:
    """What the server sent before closing, or None while the connection is still open."""
    sock.setblocking(False)
    try:
        data = sock.recv(4096)
    except BlockingIOError:
        return None
    finally:
        sock.setblocking(True)
    return data if data else b"(closed)"


def test_given_slow_loris_clients_when_trickling_headers_then_dropped_while_others_served(
        center_server: SiagaProcess) -> None:
    """Five sockets send a request's headers one byte at a time, never finishing: the server
    drops each (408) once the request deadline passes, and a normal request from elsewhere
    is answered all along."""
    header = b"GET /login HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 100_000
    lorises = [_open(center_server, "127.0.0.7") for _ in range(5)]
    sent = {id(s): 0 for s in lorises}
    dropped: dict[int, bytes] = {}
    started = time.monotonic()

    def all_dropped() -> bool:
        for sock in lorises:
            if id(sock) in dropped:
                continue
            got = _closed_by_server(sock)
            if got is not None:
                dropped[id(sock)] = got
                continue
            try:
                sock.send(header[sent[id(sock)]:sent[id(sock)] + 1])
                sent[id(sock)] += 1
            except OSError:
                dropped[id(sock)] = b"(reset)"
        return len(dropped) == len(lorises)

    try:
        wait_for(all_dropped, 20, "the slow clients to be dropped", interval=0.2)
    finally:
        for sock in lorises:
            sock.close()
    # They kept sending the whole time (each byte resets an idle timeout) and were dropped
    # for being slow, not for being idle.
    assert all(count > 3 for count in sent.values())
    assert all(got.startswith(b"HTTP/1.1 408") or got in (b"(closed)", b"(reset)")
               for got in dropped.values())
    assert any(got.startswith(b"HTTP/1.1 408") for got in dropped.values())
    print(f"slow clients dropped after {time.monotonic() - started:.1f} s")
    assert Browser(center_server, "127.0.0.8").request("GET", "/login").status == 200


def test_given_many_idle_connections_from_one_address_when_one_more_then_503(
        center_server: SiagaProcess) -> None:
    """One address may hold connections_per_source connections; the next gets a 503 and is
    closed, while another address is still served."""
    held = [_open(center_server, "127.0.0.9") for _ in range(LIMITS["connections_per_source"])]
    try:
        extra = _open(center_server, "127.0.0.9")
        extra.settimeout(10)
        answer = extra.recv(4096)
        extra.close()
        assert answer.startswith(b"HTTP/1.1 503") and b"too_many_connections" in answer
        assert Browser(center_server, "127.0.0.10").request("GET", "/login").status == 200
    finally:
        for sock in held:
            sock.close()


def test_given_wrong_alert_credentials_from_one_address_when_repeated_then_429(
        center_server: SiagaProcess) -> None:
    """Guessing device tokens: after the failure budget the address gets 429 (JSON, with
    Retry-After) instead of a device lookup."""
    guesser = Browser(center_server, "127.0.0.11")
    statuses = []
    for i in range(25):
        body = (f'{{"alert_id": "x{i}", "device_id": "guess{i}", "type": "panic", '
                f'"callback_number": "081234567890"}}').encode()
        response = guesser.request("POST", "/api/v1/alerts", body, {
            "Content-Type": "application/json",
            "Authorization": f"Bearer guessed-token-{i:016d}"})
        statuses.append(response.status)
    assert statuses[:20] == [401] * 20 and statuses[20:] == [429] * 5
    assert response.getheader("Retry-After")
    assert b'"rate_limited"' in response.body  # type: ignore[attr-defined]


def test_given_chromium_when_logging_out_or_guessing_then_pages_say_so(
        center_server: SiagaProcess, tmp_path: Path) -> None:
    """In a real browser: the logout button ends the session (the cookie Chromium held is
    refused afterwards, by anyone); wrong passwords typed again and again get the page that
    says how long to wait. Screenshots are left in the test's folder."""
    from selenium.webdriver.common.by import By

    from tests.browser import chromium, replaced, settled

    center = center_server.center
    creds = ensure_credentials(center)
    base = f"http://{center.http.host}:{center.http.port}"
    sup = center.supervisors[1]
    with chromium() as driver:
        driver.get(base + "/reports")
        wait_for(lambda: "/login" in driver.current_url, 10, "the login page")
        driver.find_element(By.ID, "extension").send_keys(sup)
        driver.find_element(By.ID, "password").send_keys(creds.console_passwords[sup])
        driver.find_element(By.ID, "login").click()
        wait_for(lambda: "/reports" in driver.current_url, 10, "the reports after login")
        cookie = driver.get_cookie("siaga_session")["value"]
        copy = Browser(center_server, "127.0.0.13")
        copy.cookie = cookie
        assert copy.request("GET", "/wallboard.json").status == 200
        driver.get(base + "/wallboard")
        logout = wait_for(lambda: driver.find_elements(
            By.CSS_SELECTOR, "form[action='/logout'] button"), 10, "the logout button")
        driver.save_screenshot(str(tmp_path / "wallboard.png"))
        logout[0].click()
        wait_for(lambda: driver.current_url.endswith("/login"), 10, "the login page")
        assert copy.request("GET", "/wallboard.json").status == 401
        driver.get(base + "/wallboard")
        wait_for(lambda: "/login?next=" in driver.current_url, 10, "login required again")

        op = center.operators[1].extension
        for _ in range(8):
            driver.find_element(By.ID, "extension").send_keys(op)
            driver.find_element(By.ID, "password").send_keys("wrong")
            button = driver.find_element(By.ID, "login")
            button.click()
            wait_for(replaced(button), 10, "the login's answer page")
            error = wait_for(settled(lambda: driver.find_element(By.CSS_SELECTOR,
                                                                 "p.error").text),
                             10, "the login's answer")
            if "Try again in" in error or "Coba lagi dalam" in error:
                break
        driver.save_screenshot(str(tmp_path / "throttled.png"))
        print(f"screenshot: {tmp_path / 'throttled.png'}")
        assert re.search(r"(Try again in|Coba lagi dalam) \d+", error), error


def test_given_a_user_removed_from_the_config_when_the_server_restarts_then_refused(
        center_server: SiagaProcess) -> None:
    """An operator logged in, removed from the config, server restarted: the cookie opens
    nothing. A supervisor still in the config keeps the session across the restart, and one
    demoted to operator loses it."""
    center = center_server.center
    creds = ensure_credentials(center)
    removed = center.operators[-1].extension
    kept, demoted = center.supervisors[0], center.supervisors[1]
    browsers = {}
    for ext in (removed, kept, demoted):
        browsers[ext] = Browser(center_server, "127.0.0.12")
        assert browsers[ext].login(ext, creds.console_passwords[ext]).status == 302
        assert browsers[ext].request("GET", "/wallboard.json").status == 200

    center_server.stop()
    doc = yaml.safe_load(Path(center_server.config).read_text())
    doc["operators"] = [op for op in doc["operators"] if str(op["extension"]) != removed]
    doc["operators"].append({"extension": demoted, "name": "Demoted supervisor"})
    doc["supervisors"] = [s for s in doc["supervisors"] if str(s) != demoted]
    Path(center_server.config).write_text(yaml.safe_dump(doc, sort_keys=False))
    center_server.start()

    assert browsers[removed].request("GET", "/wallboard.json").status == 401
    assert browsers[demoted].request("GET", "/wallboard.json").status == 401
    assert browsers[kept].request("GET", "/reports?format=csv").status == 200
