"""The supervisor's endpoints over Twisted requests: spy, recent calls, a recording's bytes."""

from __future__ import annotations

import datetime as dt
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from twisted.internet import defer
from twisted.web.test.requesthelper import DummyRequest

from dispatcher.calllog import db
from dispatcher.calllog.models import Call, Recording
from dispatcher.console.spy import SpyService
from dispatcher.web.console_api import csrf_token
from dispatcher.web.console_supervisor import supervisor_endpoints
from dispatcher.web.sessions import Staff
from tests.unit.console.console_fakes import FakeAMI, FakeWriter, model_with_call

AUDIO = bytes(range(256)) * 20  # 5120 bytes, each position telling its own byte


class _Console:
    def __init__(self, staff: Staff | None) -> None:
        self._staff = staff

    def staff(self, request: Any) -> Staff | None:  # noqa: ANN401
        return self._staff

    def token(self, request: Any) -> str:  # noqa: ANN401
        return "session-token"

    def same_origin(self, request: Any) -> bool:  # noqa: ANN401
        return True


class World:
    def __init__(self, tmp_path: Path) -> None:
        self.folder = tmp_path / "recordings"
        self.folder.mkdir()
        engine = db.make_engine(f"sqlite:///{tmp_path / 'log.db'}")
        db.upgrade(engine)
        self.engine = engine
        self.sessions = db.make_sessionmaker(engine)
        (self.folder / "1.1.wav").write_bytes(AUDIO)
        with db.transaction(self.sessions) as session:
            call = Call(linkedid="1.1", caller_number="0811", outcome="answered",
                        started_at=dt.datetime(2026, 12, 7, tzinfo=dt.UTC))
            call.recordings = [Recording(path=str(self.folder / "1.1.wav"), channel="x",
                                         started_at=dt.datetime(2026, 12, 7, tzinfo=dt.UTC))]
            session.add(call)
            session.flush()
            self.call_id = call.id
        self.ami, self.writer = FakeAMI(), FakeWriter()
        self.spy = SpyService(self.ami, model_with_call("201"), lambda: ("290",),
                              lambda: ("201", "202"), self.writer, lambda: 1_800_000_000.0)

    def reads(self, fn: Any, *args: Any) -> defer.Deferred[Any]:  # noqa: ANN401
        with db.transaction(self.sessions) as session:
            return defer.succeed(fn(session, *args))

    def endpoints(self, staff: Staff | None) -> dict[str, Any]:
        return supervisor_endpoints(_Console(staff), self.spy, self.reads, self.folder)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path)
    yield w
    w.engine.dispose()


SUPERVISOR, OPERATOR = Staff("290", "supervisor"), Staff("201", "operator")


def _request(method: bytes, path: bytes = b"", args: dict[bytes, list[bytes]] | None = None,
             headers: dict[bytes, bytes] | None = None, body: bytes = b"") -> DummyRequest:
    request = DummyRequest([path] if path else [])
    request.method = method
    request.path = b"/console/api/x"
    request.args = args or {}
    for name, value in (headers or {}).items():
        request.requestHeaders.setRawHeaders(name, [value])
    request.content = io.BytesIO(body)
    return request


def _render(endpoint: Any, request: DummyRequest) -> tuple[int, bytes]:  # noqa: ANN401
    result = endpoint.render(request)
    if isinstance(result, bytes):
        return request.responseCode or 200, result
    assert request.finished, "the response never finished"
    return request.responseCode or 200, b"".join(request.written)


def _header(request: DummyRequest, name: bytes) -> str | None:
    values = request.responseHeaders.getRawHeaders(name)
    return values[0].decode() if values else None


def test_given_a_range_when_a_supervisor_asks_then_206_with_exactly_those_bytes(
        world: World) -> None:
    """bytes=100-1099: 206, Content-Range, Content-Length and the file's bytes 100..1099."""
    endpoint = world.endpoints(SUPERVISOR)["recording"]
    request = _request(b"GET", args={b"call": [str(world.call_id).encode()]},
                       headers={b"range": b"bytes=100-1099"})
    status, body = _render(endpoint, request)
    assert status == 206 and body == AUDIO[100:1100]
    assert _header(request, b"content-range") == f"bytes 100-1099/{len(AUDIO)}"
    assert _header(request, b"content-length") == "1000"
    assert _header(request, b"content-type") == "audio/wav"
    assert _header(request, b"accept-ranges") == "bytes"


def test_given_no_range_when_asked_then_the_whole_file_and_a_suffix_range(world: World) -> None:
    """No Range: 200 and every byte; bytes=-16: the last 16."""
    endpoint = world.endpoints(SUPERVISOR)["recording"]
    args = {b"call": [str(world.call_id).encode()]}
    assert _render(endpoint, _request(b"GET", args=args)) == (200, AUDIO)
    assert _render(endpoint, _request(b"GET", args=args,
                                      headers={b"range": b"bytes=-16"})) == (206, AUDIO[-16:])


def test_given_a_range_past_the_end_when_asked_then_416_json_with_the_size(
        world: World) -> None:
    """416, JSON with a reason, and Content-Range: bytes */size."""
    endpoint = world.endpoints(SUPERVISOR)["recording"]
    request = _request(b"GET", args={b"call": [str(world.call_id).encode()]},
                       headers={b"range": f"bytes={len(AUDIO)}-".encode()})
    status, body = _render(endpoint, request)
    assert status == 416 and json.loads(body)["error"] == "range_not_satisfiable"
    assert _header(request, b"content-range") == f"bytes */{len(AUDIO)}"


@pytest.mark.parametrize("args, postpath, status", [
    ({b"call": [b"../../etc/passwd"]}, b"", 400),
    ({b"call": [b"1"], b"path": [b"/etc/passwd"]}, b"", 400),
    ({b"file": [b"/etc/passwd"]}, b"", 400),
    ({b"call": [b"1", b"2"]}, b"", 400),
    ({b"call": [b"0"]}, b"", 400),
    ({b"call": [b"99999999999999999999"]}, b"", 400),
    ({}, b"..%2f..%2fetc%2fpasswd", 404),
    ({b"call": [b"424242"]}, b"", 404),
])
def test_given_a_request_naming_a_path_when_asked_then_a_json_refusal_only(
        world: World, args: dict, postpath: bytes, status: int) -> None:
    """Nothing in the request is a path: a path anywhere gets a JSON refusal, never bytes."""
    endpoint = world.endpoints(SUPERVISOR)["recording"]
    request = _request(b"GET", postpath, args=args)
    got, body = _render(endpoint, request)
    assert got == status and json.loads(body)["reason"]


def test_given_an_operator_when_asking_for_recordings_then_403_json(world: World) -> None:
    """Operators neither list nor play recordings."""
    for name, args in (("recording", {b"call": [str(world.call_id).encode()]}),
                       ("recordings", {})):
        endpoint = world.endpoints(OPERATOR)[name]
        status, body = _render(endpoint, _request(b"GET", args=args))
        assert (status, json.loads(body)["error"]) == (403, "forbidden")


def test_given_a_supervisor_when_listing_then_the_calls_with_their_recordings(
        world: World) -> None:
    """GET /console/api/recordings: the calls, each saying whether it has a recording."""
    status, body = _render(world.endpoints(SUPERVISOR)["recordings"], _request(b"GET"))
    assert status == 200
    assert [(c["id"], c["recording"]) for c in json.loads(body)["calls"]] == [
        (world.call_id, True)]


def _spy(world: World, staff: Staff, body: dict, csrf: str | None = None) -> tuple[int, dict]:
    headers = {b"content-type": b"application/json"}
    if csrf is not None:
        headers[b"x-siaga-csrf"] = csrf.encode()
    status, raw = _render(world.endpoints(staff)["spy"],
                          _request(b"POST", headers=headers, body=json.dumps(body).encode()))
    return status, json.loads(raw)


def test_given_an_operators_session_when_posting_spy_then_403_and_nothing_originated(
        world: World) -> None:
    """The operator's own valid token changes nothing: the role is refused first."""
    status, doc = _spy(world, OPERATOR, {"extension": "202", "mode": "listen"},
                       csrf_token("session-token"))
    assert (status, doc["error"]) == (403, "forbidden")
    assert world.ami.originates == [] and world.writer.rows == []


def test_given_a_supervisor_without_the_token_when_posting_spy_then_403_csrf(
        world: World) -> None:
    """A cookie alone (another site's form) does not act."""
    status, doc = _spy(world, SUPERVISOR, {"extension": "201", "mode": "listen"})
    assert (status, doc["error"]) == (403, "csrf") and world.ami.originates == []


def test_given_a_supervisor_when_posting_spy_then_the_phone_rings_or_a_reason(
        world: World) -> None:
    """A good request: 200 with the channel; a bad mode: 422; a desk in no call: 409."""
    token = csrf_token("session-token")
    status, doc = _spy(world, SUPERVISOR, {"extension": "201", "mode": "whisper"}, token)
    assert status == 200 and doc["channel"] == "PJSIP/201-0000000b"
    assert len(world.ami.originates) == 1
    status, doc = _spy(world, SUPERVISOR, {"extension": "201", "mode": "shout"}, token)
    assert (status, doc["error"]) == (422, "invalid_field")
    status, doc = _spy(world, SUPERVISOR, {"extension": "202", "mode": "listen"}, token)
    assert (status, doc["error"]) == (409, "no_call")
    assert len(world.ami.originates) == 1


def test_given_each_role_when_opening_the_supervisor_page_then_only_supervisors(
        tmp_path: Path) -> None:
    """/supervisor: a supervisor gets the page (and the link in the header), an operator a
    403 JSON and no link, nobody logged in the login page."""
    from twisted.internet import task

    from dispatcher.config import load_center
    from dispatcher.credentials import ensure_credentials
    from dispatcher.web.site import build_site
    from tests.harness import EXAMPLE_CONFIG
    from tests.unit.web.test_web_console import Client

    center = load_center(EXAMPLE_CONFIG, state_dir=tmp_path)
    creds = ensure_credentials(center)
    clock = task.Clock()
    clock.advance(1_800_000_000)
    site = build_site(center, creds, clock.seconds, wallboard=dict,
                      reports=lambda query: defer.succeed(("text/csv", "")))
    assert Client(site).request("GET", "/supervisor").status == 302
    supervisor, operator = Client(site), Client(site)
    sup, op = center.supervisors[0], center.operators[0].extension
    supervisor.login(sup, creds.console_passwords[sup])
    operator.login(op, creds.console_passwords[op])
    page = supervisor.request("GET", "/supervisor")
    assert page.status == 200 and b'id="desks"' in page.body
    assert b'href="/supervisor"' in page.body and b"/static/supervisor.js" in page.body
    refused = operator.request("GET", "/supervisor")
    assert refused.status == 403 and refused.json()["error"] == "forbidden"
    assert b'href="/supervisor"' not in operator.request("GET", "/wallboard").body
