"""/console/api/call: operators only, JSON refusals with reasons, the buttons' words."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from twisted.internet import defer
from twisted.web.test.requesthelper import DummyRequest

from dispatcher.config.loader import load_center
from dispatcher.console.actions import NotNow
from dispatcher.console.calls import NotYourCall
from dispatcher.web.console_api import csrf_token
from dispatcher.web.console_call import CallEndpoint
from dispatcher.web.sessions import Staff
from tests.harness import EXAMPLE_CONFIG


class _Console:
    def __init__(self, center, staff: Staff) -> None:  # noqa: ANN001
        self.center = center
        self._staff = staff

    def staff(self, request):  # noqa: ANN001, ANN201
        return self._staff

    def token(self, request):  # noqa: ANN001, ANN201
        return "session-token"

    def same_origin(self, request):  # noqa: ANN001, ANN201
        return True

    def language(self, request):  # noqa: ANN001, ANN201
        return (request.args.get(b"lang") or [b"id"])[0].decode()


class _Actions:
    def __init__(self, error: Exception | None = None) -> None:
        self.asked: list[tuple] = []
        self.error = error

    def act(self, extension, linkedid, action, agency=None):  # noqa: ANN001, ANN201
        self.asked.append((extension, linkedid, action, agency))
        if self.error is not None:
            raise self.error
        return defer.succeed({"linkedid": linkedid, "action": action, "agency": agency})


@pytest.fixture
def center(tmp_path: Path):  # noqa: ANN201
    return load_center(EXAMPLE_CONFIG, state_dir=tmp_path)


def _post(endpoint: CallEndpoint, body: dict) -> tuple[int, dict]:
    request = DummyRequest([b""])
    request.method = b"POST"
    request.path = b"/console/api/call"
    request.requestHeaders.setRawHeaders(b"content-type", [b"application/json"])
    request.requestHeaders.setRawHeaders(b"x-siaga-csrf", [csrf_token("session-token").encode()])
    request.content = io.BytesIO(json.dumps(body).encode())
    result = endpoint.render(request)
    if isinstance(result, bytes):
        return request.responseCode or 200, json.loads(result)
    return request.responseCode or 200, json.loads(b"".join(request.written))


def test_given_an_operator_when_posting_an_action_then_it_is_carried_out(center) -> None:  # noqa: ANN001
    """The session's extension, never one from the body, is who acts."""
    actions = _Actions()
    endpoint = CallEndpoint(_Console(center, Staff("201", "operator")), actions)
    status, doc = _post(endpoint, {"linkedid": "1.2", "action": "blind", "agency": "police",
                                   "extension": "202"})
    assert (status, doc["action"]) == (200, "blind")
    assert actions.asked == [("201", "1.2", "blind", "police")]


def test_given_a_supervisor_when_posting_then_403_and_nothing_asked(center) -> None:  # noqa: ANN001
    """Operators only."""
    actions = _Actions()
    endpoint = CallEndpoint(_Console(center, Staff("290", "supervisor")), actions)
    status, doc = _post(endpoint, {"linkedid": "1.2", "action": "hangup"})
    assert (status, doc["error"]) == (403, "forbidden") and actions.asked == []


@pytest.mark.parametrize(("error", "status", "code"), [
    (NotYourCall("call '1.2' is not on desk 201's phone"), 403, "not_your_call"),
    (NotNow("cannot handover now: the call is talking"), 409, "not_now"),
])
def test_given_a_refusal_when_posting_then_json_with_its_reason(
        center, error: Exception, status: int, code: str) -> None:  # noqa: ANN001
    """A refusal is JSON with its code and the refusal's own words."""
    endpoint = CallEndpoint(_Console(center, Staff("201", "operator")), _Actions(error))
    got, doc = _post(endpoint, {"linkedid": "1.2", "action": "hangup"})
    assert (got, doc["error"], doc["reason"]) == (status, code, str(error))


def test_given_lang_en_when_getting_then_english_labels_and_every_agency(center) -> None:  # noqa: ANN001
    """GET: every configured agency with its config name and a short label in the page's
    language, and the actions' labels."""
    endpoint = CallEndpoint(_Console(center, Staff("201", "operator")), _Actions())
    for lang, police, hold in (("en", "Police", "Hold"), ("id", "Polisi", "Tahan")):
        request = DummyRequest([b""])
        request.method = b"GET"
        request.args = {b"lang": [lang.encode()]}
        doc = json.loads(endpoint.render(request))
        assert [a["key"] for a in doc["agencies"]] == [a.key for a in center.agencies]
        assert doc["agencies"][0] == {"key": "police", "name": "Polres Bitung", "digit": 1,
                                      "label": police}
        assert doc["labels"]["hold"] == hold


def test_the_actions_words_exist_in_both_languages() -> None:
    """Every label of the actions (and every agency's short name) in Bahasa and English."""
    from dispatcher.web.site import TEXT

    ours, theirs = TEXT["id"]["actions"], TEXT["en"]["actions"]
    assert set(ours) == set(theirs)
    assert set(ours["agencies"]) == set(theirs["agencies"])
