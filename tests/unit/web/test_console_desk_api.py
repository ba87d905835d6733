"""The desk's endpoints: an operator acts on their own desk only, with the four reasons,
through the hotline service (the feature codes' AMI effect); "call back now" rings the
asking operator's phone."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from twisted.internet import defer
from twisted.web.server import NOT_DONE_YET
from twisted.web.test.requesthelper import DummyRequest

from dispatcher.callbacks.missed import MissedCall
from dispatcher.callbacks.owed import CallbackList
from dispatcher.web.console_api import csrf_token
from dispatcher.web.console_desk import CallbackNowEndpoint, DeskEndpoint
from dispatcher.web.sessions import Staff
from tests.unit.web.test_console_api import _Console


class Hotline:
    """Records what the endpoints ask of the hotline service."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.callbacks = CallbackList()

    def __getattr__(self, name: str) -> Any:  # noqa: ANN401
        if name not in ("login", "logout", "pause", "unpause", "call_back"):
            raise AttributeError(name)

        def act(*args: Any) -> defer.Deferred[Any]:  # noqa: ANN401
            self.calls.append((name, *args))
            return defer.succeed({"Response": "Success"})
        return act


def post(endpoint: Any, body: object) -> tuple[int, dict[str, Any]]:  # noqa: ANN401
    request = DummyRequest([b""])
    request.method = b"POST"
    request.path = b"/console/api/desk"
    request.requestHeaders.setRawHeaders(b"content-type", [b"application/json"])
    request.requestHeaders.setRawHeaders(b"x-siaga-csrf", [csrf_token("session-token").encode()])
    request.content = io.BytesIO(json.dumps(body).encode())
    result = endpoint.render(request)
    raw = b"".join(request.written) if result is NOT_DONE_YET else result
    return request.responseCode or 200, json.loads(raw)


@pytest.fixture
def hotline() -> Hotline:
    return Hotline()


def desk(hotline: Hotline, staff: Staff) -> DeskEndpoint:
    return DeskEndpoint(_Console(staff), hotline)


def test_given_an_operator_when_using_the_desk_buttons_then_their_own_desk_changes(
        hotline: Hotline) -> None:
    """Log in, pause for a meal, unpause, log out: each reaches the hotline for the
    session's own extension, whatever desk the body names."""
    me = desk(hotline, Staff("201", "operator"))
    assert post(me, {"action": "login", "extension": "202"}) == (
        200, {"action": "login", "reason": None})
    assert post(me, {"action": "pause", "reason": "meal"}) == (
        200, {"action": "pause", "reason": "meal"})
    assert post(me, {"action": "pause"})[1]["reason"] == "break"
    post(me, {"action": "unpause"})
    post(me, {"action": "logout"})
    assert hotline.calls == [("login", "201"), ("pause", "201", "meal"),
                             ("pause", "201", "break"), ("unpause", "201"),
                             ("logout", "201")]


@pytest.mark.parametrize("body", [
    {"action": "pause", "reason": "logged-out"}, {"action": "pause", "reason": "nap"},
    {"action": "pause", "reason": "meal\r\nAction: Originate"}, {"action": "hangup"},
    {"action": ["login"]}, {},
])
def test_given_a_bad_action_or_reason_when_posted_then_422_and_nothing_sent(
        hotline: Hotline, body: dict[str, Any]) -> None:
    """Only the four actions and the four reasons: anything else is refused with its reason
    and never reaches the hotline (a reason is not a free text to smuggle into AMI)."""
    status, doc = post(desk(hotline, Staff("201", "operator")), body)
    assert (status, doc["error"]) == (422, "invalid_field") and doc["reason"]
    assert hotline.calls == []


def test_given_a_supervisor_when_using_the_desk_endpoints_then_403(hotline: Hotline) -> None:
    """A supervisor has no operator desk: refused, nothing sent."""
    boss = Staff("290", "supervisor")
    assert post(desk(hotline, boss), {"action": "login"})[0] == 403
    assert post(CallbackNowEndpoint(_Console(boss), hotline), {"id": 1})[0] == 403
    assert hotline.calls == []


def test_given_a_callback_owed_when_call_back_now_then_my_phone_rings_first(
        hotline: Hotline) -> None:
    """The callback is rung with the asking operator's extension; an unknown id is 404, an
    id that is not a number is 404, nothing sent for either."""
    entry = hotline.callbacks.add(MissedCall("abandoned", "0812", "9.1", "PJSIP/trunk-1",
                                             "trunk", None, "police", 30.0, None, True), 1.0)
    assert entry is not None
    endpoint = CallbackNowEndpoint(_Console(Staff("203", "operator")), hotline)
    assert post(endpoint, {"id": entry.id + 100})[0] == 404
    assert post(endpoint, {"id": str(entry.id)})[0] == 404
    assert post(endpoint, {"id": True})[0] == 404
    assert hotline.calls == []
    status, doc = post(endpoint, {"id": entry.id, "extension": "201"})
    assert status == 200 and doc["id"] == entry.id
    assert hotline.calls == [("call_back", entry.id, "203")]


def test_given_a_callback_already_done_when_call_back_now_then_409(hotline: Hotline) -> None:
    """A callback no longer pending (done, or ringing someone already) is not rung again."""
    from dispatcher.callbacks.states import CallbackInput

    entry = hotline.callbacks.add(MissedCall("abandoned", "0813", "9.2", "PJSIP/trunk-2",
                                             "trunk", None, "fire", 30.0, None, True), 1.0)
    assert entry is not None
    hotline.callbacks.move(entry.id, CallbackInput.RING_OPERATOR)
    status, doc = post(CallbackNowEndpoint(_Console(Staff("203", "operator")), hotline),
                       {"id": entry.id})
    assert (status, doc["error"]) == (409, "not_owed") and hotline.calls == []


def test_given_the_real_site_when_a_desk_action_comes_without_the_page_token_then_refused(
        tmp_path) -> None:  # noqa: ANN001
    """Mounted as the server mounts it (/console/api/desk behind the login): a logged-in
    operator's cookie alone (a cross-site form) is refused 403 and nothing reaches the
    hotline; with the page's token the operator's own desk is paused."""
    import re

    from twisted.internet import task

    from dispatcher.config import load_center
    from dispatcher.credentials import ensure_credentials
    from dispatcher.web.site import build_site
    from tests.harness import EXAMPLE_CONFIG
    from tests.unit.web.test_web_console import Client

    center = load_center(EXAMPLE_CONFIG, state_dir=tmp_path)
    creds = ensure_credentials(center)
    clock = task.Clock()
    hotline = Hotline()
    site = build_site(center, creds, clock.seconds, wallboard=lambda: {},
                      reports=lambda q: defer.succeed(("text/csv", "")),
                      console_endpoints=lambda console: {
                          "desk": DeskEndpoint(console, hotline)})
    client = Client(site)
    ext = center.operators[0].extension
    client.login(ext, creds.console_passwords[ext])
    body = b'{"action": "pause", "reason": "meal"}'
    refused = client.request("POST", "/console/api/desk", body,
                             {"Content-Type": "application/json"})
    assert refused.status == 403 and refused.json()["error"] == "csrf"
    assert hotline.calls == []
    page = client.request("GET", "/console").body.decode()
    token = re.search(r'name="siaga-csrf" content="([0-9a-f]+)"', page).group(1)  # type: ignore[union-attr]
    done = client.request("POST", "/console/api/desk", body,
                          {"Content-Type": "application/json", "X-Siaga-CSRF": token})
    assert done.status == 200 and hotline.calls == [("pause", ext, "meal")]
