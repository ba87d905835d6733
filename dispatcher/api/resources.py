"""Twisted Web resources of the API under ``/api/v1``.

Every answer is JSON, errors included (``{"error", "reason"}``): unknown paths (404), wrong
methods (405 with ``Allow``), bodies over the limit (413, read and discarded, never buffered),
wrong ``Content-Type`` (415), and whatever a feature refuses (its errors answered as
``dispatcher.api.errors.HTTP_REFUSALS`` says). A failure nobody expected is logged with its
traceback and answered 500 without details.

Operator endpoints (``/incidents...``, ``/callbacks...``) are for the console on the
center's own machine: they answer only requests from a loopback address, and, when an
operator token is configured, only with ``Authorization: Bearer <operator token>``.
"""

from __future__ import annotations

import datetime as dt
import hmac
import io
import ipaddress
import json
from importlib import resources as importlib_resources
from typing import Any

import yaml
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from dispatcher.alerts.incident import IncidentInput
from dispatcher.alerts.intake import parse_json_object
from dispatcher.alerts.outcomes import AlertAccepted
from dispatcher.alerts.service import AlertService
from dispatcher.api.errors import ApiError, api_error, json_body
from dispatcher.config.model import AGENCY_KINDS
from dispatcher.hotline.callbacks import CallbackEntry
from dispatcher.hotline.service import HotlineService

__all__ = ["ApiRequest", "build_api", "build_root", "openapi_document"]

log = Logger(namespace="dispatcher.api")

JSON_TYPE = b"application/json"
MAX_FEED_WAIT = 30.0
# Inputs an operator may give through the API; the rest come from Asterisk's events.
OPERATOR_INPUTS = {IncidentInput.HAND_TO_AGENCY, IncidentInput.CLOSE, IncidentInput.CANCEL}


class ApiRequest(Request):
    """A request whose body is bounded: beyond ``max_body`` it is discarded, not stored.

    Twisted buffers a body before calling the resource; this keeps at most ``max_body`` bytes
    and marks the request ``too_large`` so the resource answers 413.
    """

    max_body = 16 * 1024

    def gotLength(self, length: int | None) -> None:  # noqa: N802 -- Twisted's name
        """Refuse to buffer a declared length over the limit."""
        self.too_large = length is not None and length > self.max_body
        self.content = io.BytesIO()

    def handleContentChunk(self, data: bytes) -> None:  # noqa: N802 -- Twisted's name
        """Keep the body while it is within the limit; past it, drop everything."""
        if self.too_large:
            return
        if self.content.tell() + len(data) > self.max_body:
            self.too_large = True
            self.content.seek(0)
            self.content.truncate()
            return
        self.content.write(data)


def _send(request: Request, status: int, body: bytes, headers: dict[str, str] | None = None
          ) -> bytes:
    request.setResponseCode(status)
    request.setHeader(b"Content-Type", b"application/json; charset=utf-8")
    request.setHeader(b"Cache-Control", b"no-store")
    request.setHeader(b"X-Content-Type-Options", b"nosniff")
    # A length rather than chunks: simpler for small clients (buttons, apps) to read.
    request.setHeader(b"Content-Length", str(len(body)).encode("ascii"))
    for name, value in (headers or {}).items():
        request.setHeader(name.encode("ascii"), value.encode("ascii"))
    return body


def _send_error(request: Request, error: ApiError) -> bytes:
    headers = dict(error.headers)
    if error.status in (400, 413):
        # The rest of the connection's bytes cannot be trusted to start a new request.
        headers["Connection"] = "close"
    return _send(request, error.status, error.body(), headers)


def _refusal(error: BaseException, method: Any, path: Any, failure: Failure | None = None
             ) -> ApiError:
    """The answer to ``error``: a feature's refusal as the table says, else a logged 500."""
    refused = api_error(error)
    if refused is not None:
        return refused
    log.failure("API request {method} {path} failed", failure, method=method, path=path)
    return ApiError(500, "internal_error", "the server failed; the error is logged")


def _finish_async(request: Request, d: Deferred[Any], render: Any) -> Any:
    """Write ``render(result)`` when ``d`` fires, unless the client has gone."""
    gone: list[bool] = []
    request.notifyFinish().addErrback(lambda _: gone.append(True))

    def write(result: Any) -> None:
        if gone:
            return
        try:
            status, body, headers = render(result)
        except Exception as exc:  # noqa: BLE001 -- a refusal is answered, the rest logged
            body = _send_error(request, _refusal(exc, request.method, request.path))
        else:
            body = _send(request, status, body, headers)
        request.write(body)
        request.finish()

    def fail(failure: Failure) -> None:
        error = _refusal(failure.value, request.method, request.path, failure)
        if gone:
            return
        request.write(_send_error(request, error))
        request.finish()

    d.addCallback(write)
    d.addErrback(fail)
    d.addErrback(lambda f: log.failure("API response could not be written", f))
    return NOT_DONE_YET


class JsonResource(Resource):
    """A resource whose misses are JSON: 404 for unknown children, 405 for other methods."""

    def getChild(self, path: bytes, request: Request) -> Resource:  # noqa: N802
        """Unknown paths answer a JSON 404."""
        return ErrorResource(ApiError(404, "not_found", "no such resource"))

    def render(self, request: Request) -> bytes | int:
        """Dispatch to ``render_<METHOD>``; a method without one answers a JSON 405."""
        method = request.method.decode("ascii", "replace")
        allowed = _allowed_methods(type(self))
        handler = getattr(self, f"render_{method}", None) if method in allowed else None
        if handler is None:
            return _send_error(request, ApiError(
                405, "method_not_allowed", f"{method} is not allowed here",
                {"Allow": ", ".join(allowed)}))
        try:
            return handler(request)
        except Exception as exc:  # noqa: BLE001 -- a refusal is answered, the rest logged
            return _send_error(request, _refusal(exc, method, request.path))


_ALLOWED: dict[type, list[str]] = {}


def _allowed_methods(cls: type) -> list[str]:
    # Resource defines render_HEAD for everyone; HEAD only makes sense where GET does.
    if cls not in _ALLOWED:
        _ALLOWED[cls] = sorted(
            name[len("render_"):] for name in dir(cls)
            if name.startswith("render_") and name[7:].isupper()
            and (name != "render_HEAD" or hasattr(cls, "render_GET")))
    return _ALLOWED[cls]


class ErrorResource(JsonResource):
    """Answers one error whatever the method."""

    isLeaf = True

    def __init__(self, error: ApiError) -> None:
        super().__init__()
        self.error = error

    def render(self, request: Request) -> bytes:
        """The error."""
        return _send_error(request, self.error)


def _header(request: Request, name: bytes) -> str | None:
    value = request.getHeader(name)
    if value is None:
        return None
    return value.decode("latin-1") if isinstance(value, bytes) else value


def _body(request: Request, max_body: int) -> bytes:
    if getattr(request, "too_large", False):
        raise ApiError(413, "too_large", f"the body is over {max_body} bytes")
    ctype = _header(request, b"content-type")
    media = (ctype or "").split(";", 1)[0].strip().lower()
    if media != "application/json":
        raise ApiError(415, "unsupported_media_type", "send Content-Type: application/json")
    body = request.content.read() if request.content is not None else b""
    if len(body) > max_body:
        raise ApiError(413, "too_large", f"the body is over {max_body} bytes")
    return body


class AlertsResource(JsonResource):
    """``POST /api/v1/alerts``."""

    isLeaf = True

    def __init__(self, alerts: AlertService) -> None:
        super().__init__()
        self.alerts = alerts

    def render_POST(self, request: Request) -> bytes | int:  # noqa: N802
        """Take an alert: 201 once committed, 200 for a retry of a known alert id."""
        if request.postpath not in ([], [b""]):
            raise ApiError(404, "not_found", "no such resource")
        body = _body(request, self.alerts.settings.max_body_bytes)
        headers = {name: _header(request, name.encode()) for name in
                   ("authorization", "x-siaga-timestamp", "x-siaga-signature")}
        source = getattr(request.getClientAddress(), "host", None)
        d = self.alerts.post_alert(headers, body, source)

        def render(taken: AlertAccepted) -> tuple[int, bytes, dict[str, str]]:
            url = f"/api/v1/incidents/{taken.incident_id}"
            document = {"alert_id": taken.alert_id, "incident_id": taken.incident_id,
                        "state": taken.state, "created": taken.created, "incident_url": url}
            if not taken.created:
                return 200, json_body(document), {}  # a retry of an alert already stored
            return 201, json_body(document), {"Location": url}

        return _finish_async(request, d, render)

    def render_GET(self, request: Request) -> bytes | int:  # noqa: N802
        """``GET /api/v1/alerts/{alert_id}``: the sending device's view of its own alert."""
        parts = [p.decode("ascii", "replace") for p in request.postpath]
        if parts and parts[-1] == "":
            parts = parts[:-1]
        if not parts:
            raise ApiError(405, "method_not_allowed", "GET is not allowed here: "
                           "GET /alerts/{alert_id} reads one alert", {"Allow": "POST"})
        if len(parts) != 1:
            raise ApiError(404, "not_found", "no such resource")
        headers = {name: _header(request, name.encode()) for name in
                   ("authorization", "x-siaga-timestamp", "x-siaga-signature",
                    "x-siaga-device")}
        source = getattr(request.getClientAddress(), "host", None)
        d = self.alerts.alert_status(headers, parts[0], source)
        return _finish_async(request, d, lambda doc: (200, json_body(doc), {}))


class EnrolResource(JsonResource):
    """``POST /api/v1/enrol``: a panic app spends its one-time code for its token."""

    isLeaf = True

    def __init__(self, alerts: AlertService) -> None:
        super().__init__()
        self.alerts = alerts

    def render_POST(self, request: Request) -> bytes | int:  # noqa: N802
        """``{"code": ...}`` → 200 ``{"device_id", "token", "callback_number", "label"}``."""
        if request.postpath not in ([], [b""]):
            raise ApiError(404, "not_found", "no such resource")
        body = _body(request, 1024)
        source = getattr(request.getClientAddress(), "host", None)
        d = self.alerts.enrol(body, source)
        return _finish_async(request, d, lambda doc: (200, json_body(doc), {}))


def _is_loopback(request: Request) -> bool:
    address = request.getClientAddress()
    host = getattr(address, "host", None)
    if host is None:
        return False
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_operator(request: Request, operator_token: str | None) -> None:
    """Operator endpoints: loopback callers only, with the operator token when one is set."""
    if not _is_loopback(request):
        raise ApiError(403, "forbidden", "operator endpoints answer the center's own "
                       "machine only")
    if operator_token is not None:
        given = _header(request, b"authorization") or ""
        expected = f"Bearer {operator_token}"
        if not hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode()):
            raise ApiError(401, "invalid_credentials", "send the operator token as "
                           "Authorization: Bearer <token>",
                           {"WWW-Authenticate": 'Bearer realm="siaga-operators"'})


class IncidentsResource(JsonResource):
    """``/api/v1/incidents/{id}``, ``/api/v1/incidents/{id}/events``, ``.../feed``."""

    isLeaf = True

    def __init__(self, alerts: AlertService, operator_token: str | None) -> None:
        super().__init__()
        self.alerts = alerts
        self.operator_token = operator_token

    def _check_operator(self, request: Request) -> None:
        check_operator(request, self.operator_token)

    def _route(self, request: Request) -> tuple[str, int | None]:
        parts = [p.decode("ascii", "replace") for p in request.postpath]
        if parts and parts[-1] == "":
            parts = parts[:-1]
        if parts == ["feed"]:
            return "feed", None
        if 1 <= len(parts) <= 2 and parts[0].isdigit() and len(parts[0]) <= 12:
            if len(parts) == 1:
                return "incident", int(parts[0])
            if parts[1] == "events":
                return "events", int(parts[0])
        raise ApiError(404, "not_found", "no such resource")

    def render_GET(self, request: Request) -> bytes | int:  # noqa: N802
        """An incident (location, note, state, history), or the feed of changes."""
        kind, incident_id = self._route(request)
        if kind == "events":
            raise ApiError(405, "method_not_allowed", "GET is not allowed here",
                           {"Allow": "POST"})
        self._check_operator(request)
        if kind == "feed":
            after = _int_arg(request, b"after", 0, 0, 2**62)
            wait = _int_arg(request, b"wait", 0, 0, int(MAX_FEED_WAIT))
            d = self.alerts.feed.wait(after, float(wait))
            return _finish_async(request, d, lambda events: (200, json_body({
                "events": events,
                "last": events[-1]["seq"] if events else max(after, 0)}), {}))
        assert incident_id is not None
        d = self.alerts.incident(incident_id)

        def render(document: dict[str, Any] | None) -> tuple[int, bytes, dict[str, str]]:
            if document is None:
                raise ApiError(404, "not_found", f"no incident {incident_id}")
            return 200, json_body(document), {}

        return _finish_async(request, d, render)

    def render_POST(self, request: Request) -> bytes | int:  # noqa: N802
        """An operator's input: ``{"input": "hand_to_agency"|"close"|"cancel", ...}``."""
        kind, incident_id = self._route(request)
        if kind != "events":
            raise ApiError(405, "method_not_allowed", "POST is not allowed here",
                           {"Allow": "GET"})
        self._check_operator(request)
        body = _body(request, 4096)
        document = parse_json_object(body, 4096)
        unknown = sorted(set(document) - {"input", "agency", "detail"})
        if unknown:
            raise ApiError(422, "unknown_field", f"unknown field(s): {', '.join(unknown)}")
        raw = document.get("input")
        allowed = sorted(i.value for i in OPERATOR_INPUTS)
        if not isinstance(raw, str) or raw not in allowed:
            raise ApiError(422, "invalid_field", f"input must be one of {', '.join(allowed)}")
        what = IncidentInput(raw)
        agency = document.get("agency")
        if what is IncidentInput.HAND_TO_AGENCY:
            if agency not in AGENCY_KINDS:
                raise ApiError(422, "invalid_field",
                               f"agency must be one of {', '.join(AGENCY_KINDS)}")
        elif agency is not None:
            raise ApiError(422, "invalid_field", "agency goes with hand_to_agency only")
        detail = document.get("detail", "")
        if not isinstance(detail, str) or len(detail) > 500 or any(
                ord(c) < 32 or ord(c) == 127 for c in detail):
            raise ApiError(422, "invalid_field", "detail must be one line of at most 500 "
                           "characters")
        assert incident_id is not None
        d = self.alerts.operator_input(incident_id, what, detail, agency)
        return _finish_async(request, d, lambda r: (200, json_body({
            "incident_id": r.incident_id, "from": r.from_state, "state": r.to_state}), {}))


# A page of the callback list: the list may hold thousands (a flood of hang-ups), a request
# never serializes more than this.
CALLBACKS_PAGE = 50
CALLBACKS_PAGE_MAX = 200


def callback_document(entry: CallbackEntry) -> dict[str, Any]:
    """A callback as operators see it, with the evidence it is ranked by."""
    created = dt.datetime.fromtimestamp(entry.created_at, dt.UTC)
    return {
        "id": entry.id, "number": entry.number, "reason": entry.reason,
        "category": entry.category, "state": entry.state, "attempts": entry.attempts,
        "created_at": created.isoformat().replace("+00:00", "Z"), "calls": list(entry.calls),
        "endpoint": entry.endpoint, "missed_calls": entry.missed,
        "waited_s": round(entry.waited, 1), "queued": entry.queued,
        "strength": round(entry.strength, 1),
    }


class CallbacksResource(JsonResource):
    """``/api/v1/callbacks`` (the open ones, a page) and ``/api/v1/callbacks/{id}/call``.

    The hotline's callback list: citizens who hung up before an operator answered, or whose
    call dropped right after, the strongest evidence of a person first; ``?limit=&offset=``
    pages through it. ``POST .../call`` with ``{"operator": "201"}`` rings that operator's
    phone first; once answered, the dialplan dials the citizen, by the way they came in
    only (409 ``no_way_back`` otherwise, and nothing is dialled).
    """

    isLeaf = True

    def __init__(self, hotline: HotlineService, operator_token: str | None) -> None:
        super().__init__()
        self.hotline = hotline
        self.operator_token = operator_token

    def _route(self, request: Request) -> int | None:
        parts = [p.decode("ascii", "replace") for p in request.postpath]
        if parts and parts[-1] == "":
            parts = parts[:-1]
        if not parts:
            return None
        if len(parts) == 2 and parts[0].isdigit() and len(parts[0]) <= 12 \
                and parts[1] == "call":
            return int(parts[0])
        raise ApiError(404, "not_found", "no such resource")

    def render_GET(self, request: Request) -> bytes:  # noqa: N802
        """A page of the callbacks still owed, strongest evidence first (then oldest)."""
        if self._route(request) is not None:
            raise ApiError(405, "method_not_allowed", "GET is not allowed here",
                           {"Allow": "POST"})
        check_operator(request, self.operator_token)
        limit = _int_arg(request, b"limit", CALLBACKS_PAGE, 1, CALLBACKS_PAGE_MAX)
        offset = _int_arg(request, b"offset", 0, 0, 10**9)
        callbacks = self.hotline.callbacks
        entries = callbacks.page(offset, limit)
        total = callbacks.open_count
        following = offset + len(entries)
        return _send(request, 200, json_body({
            "callbacks": [callback_document(e) for e in entries], "total": total,
            "offset": offset, "limit": limit,
            "next_offset": following if following < total else None,
        }))

    def render_POST(self, request: Request) -> bytes | int:  # noqa: N802
        """Ring an operator for a callback: ``{"operator": "<extension>"}``."""
        entry_id = self._route(request)
        if entry_id is None:
            raise ApiError(405, "method_not_allowed", "POST is not allowed here",
                           {"Allow": "GET"})
        check_operator(request, self.operator_token)
        document = parse_json_object(_body(request, 4096), 4096)
        unknown = sorted(set(document) - {"operator", "ring_seconds"})
        if unknown:
            raise ApiError(422, "unknown_field", f"unknown field(s): {', '.join(unknown)}")
        operator = document.get("operator")
        ring = document.get("ring_seconds", 30)
        if not isinstance(operator, str) or not operator.isdigit() or len(operator) > 12:
            raise ApiError(422, "invalid_field", "operator must be an extension (digits)")
        if not isinstance(ring, int) or isinstance(ring, bool) or not 5 <= ring <= 120:
            raise ApiError(422, "invalid_field", "ring_seconds must be an integer 5..120")
        try:
            entry = self.hotline.callbacks.get(entry_id)
        except KeyError:
            raise ApiError(404, "not_found", f"no callback {entry_id}") from None
        if not entry.open:
            raise ApiError(409, "not_open", f"callback {entry_id} is {entry.state}")
        if entry.state == "ringing":
            raise ApiError(409, "already_ringing", f"callback {entry_id} is ringing now")
        # Refused (invalid input, no way back, the PBX away or refusing): HTTP_REFUSALS.
        d = self.hotline.call_back(entry_id, operator, ring)
        return _finish_async(request, d, lambda _: (
            202, json_body(callback_document(self.hotline.callbacks.get(entry_id))), {}))


def _int_arg(request: Request, name: bytes, default: int, lo: int, hi: int) -> int:
    values = request.args.get(name)
    if not values:
        return default
    raw = values[0].decode("ascii", "replace")
    if not raw.isdigit() or len(raw) > 19 or not lo <= int(raw) <= hi:
        raise ApiError(400, "invalid_parameter",
                       f"{name.decode()} must be an integer from {lo} to {hi}")
    return int(raw)


def openapi_document() -> dict[str, Any]:
    """The API's OpenAPI 3 document (``dispatcher/api/openapi.yaml``)."""
    text = (importlib_resources.files("dispatcher.api") / "openapi.yaml").read_text("utf-8")
    return yaml.safe_load(text)


class StaticDocument(JsonResource):
    """A fixed document (the OpenAPI description)."""

    isLeaf = True

    def __init__(self, body: bytes, content_type: bytes) -> None:
        super().__init__()
        self.body = body
        self.content_type = content_type

    def render_GET(self, request: Request) -> bytes:  # noqa: N802
        """The document."""
        if request.postpath not in ([], [b""]):
            raise ApiError(404, "not_found", "no such resource")
        request.setHeader(b"Content-Type", self.content_type)
        return self.body


def build_api(alerts: AlertService, operator_token: str | None = None,
              hotline: HotlineService | None = None) -> Resource:
    """The ``/api`` resource (``v1/...`` below it), to mount as the server root's ``api``.

    ``/callbacks`` is there when the hotline's service is given (``siaga up``)."""
    api = JsonResource()
    v1 = JsonResource()
    api.putChild(b"v1", v1)
    v1.putChild(b"alerts", AlertsResource(alerts))
    v1.putChild(b"enrol", EnrolResource(alerts))
    v1.putChild(b"incidents", IncidentsResource(alerts, operator_token))
    if hotline is not None:
        v1.putChild(b"callbacks", CallbacksResource(hotline, operator_token))
    spec = openapi_document()
    v1.putChild(b"openapi.json", StaticDocument(json.dumps(spec, indent=1).encode(),
                                                b"application/json"))
    text = (importlib_resources.files("dispatcher.api") / "openapi.yaml").read_bytes()
    v1.putChild(b"openapi.yaml", StaticDocument(text, b"application/yaml"))
    return api


def build_root(alerts: AlertService, operator_token: str | None = None) -> Resource:
    """A root with only ``/api`` (the API served alone)."""
    root = JsonResource()
    root.putChild(b"api", build_api(alerts, operator_token))
    return root
