"""The console endpoints' plumbing: session, role, origin and CSRF before any action."""

from __future__ import annotations

import json

from twisted.web.test.requesthelper import DummyRequest

from dispatcher.web.console_api import ConsoleEndpoint, csrf_token, json_object, reply
from dispatcher.web.sessions import Staff


class _Console:
    def __init__(self, staff: Staff | None, origin_ok: bool = True) -> None:
        self._staff = staff
        self._origin_ok = origin_ok

    def staff(self, request):  # noqa: ANN001, ANN201
        return self._staff

    def token(self, request):  # noqa: ANN001, ANN201
        return "session-token"

    def same_origin(self, request):  # noqa: ANN001, ANN201
        return self._origin_ok


class _Echo(ConsoleEndpoint):
    acted: list[dict] = []

    def render_GET(self, request):  # noqa: ANN001, ANN201, N802
        return reply(request, {"who": request.staff.extension})

    def render_POST(self, request):  # noqa: ANN001, ANN201, N802
        body = json_object(request)
        self.acted.append(body)
        return reply(request, {"done": True})


def _request(method: bytes, body: bytes = b"", csrf: str | None = None,
             ctype: bytes = b"application/json") -> DummyRequest:
    request = DummyRequest([b""])
    request.path = b"/console/api/echo"
    request.method = method
    request.requestHeaders.setRawHeaders(b"content-type", [ctype])
    if csrf is not None:
        request.requestHeaders.setRawHeaders(b"x-siaga-csrf", [csrf.encode()])
    request.content = __import__("io").BytesIO(body)
    return request


def _answer(endpoint: ConsoleEndpoint, request: DummyRequest) -> tuple[int, dict]:
    body = endpoint.render(request)
    return request.responseCode or 200, json.loads(body)


def test_no_session_is_401() -> None:
    status, doc = _answer(_Echo(_Console(None)), _request(b"GET"))
    assert (status, doc["error"]) == (401, "login_required")


def test_role_not_allowed_is_403() -> None:
    class SupervisorsOnly(_Echo):
        roles = ("supervisor",)

    status, doc = _answer(SupervisorsOnly(_Console(Staff("2001", "operator"))), _request(b"GET"))
    assert (status, doc["error"]) == (403, "forbidden")


def test_get_needs_no_csrf() -> None:
    status, doc = _answer(_Echo(_Console(Staff("2001", "operator"))), _request(b"GET"))
    assert (status, doc) == (200, {"who": "2001"})


def test_action_without_the_token_is_refused_and_does_nothing() -> None:
    _Echo.acted = []
    endpoint = _Echo(_Console(Staff("2001", "operator")))
    for csrf in (None, "", "0" * 64, csrf_token("another-session")):
        status, doc = _answer(endpoint, _request(b"POST", b'{"a":1}', csrf))
        assert (status, doc["error"]) == (403, "csrf")
    assert _Echo.acted == []


def test_action_from_another_site_is_refused() -> None:
    _Echo.acted = []
    endpoint = _Echo(_Console(Staff("2001", "operator"), origin_ok=False))
    status, doc = _answer(endpoint, _request(b"POST", b"{}", csrf_token("session-token")))
    assert (status, doc["error"]) == (403, "cross_site")
    assert _Echo.acted == []


def test_action_with_the_token_acts() -> None:
    _Echo.acted = []
    endpoint = _Echo(_Console(Staff("2001", "operator")))
    status, doc = _answer(endpoint, _request(b"POST", b'{"a":1}', csrf_token("session-token")))
    assert (status, doc) == (200, {"done": True})
    assert _Echo.acted == [{"a": 1}]


def test_action_body_must_be_a_json_object() -> None:
    endpoint = _Echo(_Console(Staff("2001", "operator")))
    token = csrf_token("session-token")
    assert _answer(endpoint, _request(b"POST", b"[1]", token))[1]["error"] == "malformed_json"
    assert _answer(endpoint, _request(b"POST", b"{", token))[1]["error"] == "malformed_json"
    status, doc = _answer(endpoint, _request(b"POST", b"{}", token, b"text/plain"))
    assert status == 415
