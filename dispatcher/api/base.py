"""The API's HTTP plumbing: bounded request bodies, JSON answers and refusals.

Every answer is JSON, errors included (``{"error", "reason"}``): unknown paths (404), wrong
methods (405 with ``Allow``), bodies over the limit (413, read and discarded, never buffered),
wrong ``Content-Type`` (415), and whatever a feature refuses (its errors answered as
``dispatcher.api.errors.HTTP_REFUSALS`` says). A failure nobody expected is logged with its
traceback and answered 500 without details. The resources themselves live in
``dispatcher.api.alerts`` and ``dispatcher.api.callbacks``; ``dispatcher.api.resources``
assembles them.
"""

from __future__ import annotations

import hmac
import io
import ipaddress
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from dispatcher.api.errors import ApiError, api_error

__all__ = ["ApiRequest", "ErrorResource", "JsonResource", "check_operator", "finish_async",
           "header", "int_arg", "is_loopback", "read_body", "refusal", "send", "send_error"]

log = Logger(namespace="dispatcher.api")

JSON_TYPE = b"application/json"


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


def send(request: Request, status: int, body: bytes, headers: dict[str, str] | None = None
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


def send_error(request: Request, error: ApiError) -> bytes:
    headers = dict(error.headers)
    if error.status in (400, 413):
        # The rest of the connection's bytes cannot be trusted to start a new request.
        headers["Connection"] = "close"
    return send(request, error.status, error.body(), headers)


def refusal(error: BaseException, method: Any, path: Any, failure: Failure | None = None
             ) -> ApiError:
    """The answer to ``error``: a feature's refusal as the table says, else a logged 500."""
    refused = api_error(error)
    if refused is not None:
        return refused
    log.failure("API request {method} {path} failed", failure, method=method, path=path)
    return ApiError(500, "internal_error", "the server failed; the error is logged")


def finish_async(request: Request, d: Deferred[Any], render: Any) -> Any:
    """Write ``render(result)`` when ``d`` fires, unless the client has gone."""
    gone: list[bool] = []
    request.notifyFinish().addErrback(lambda _: gone.append(True))

    def write(result: Any) -> None:
        if gone:
            return
        try:
            status, body, headers = render(result)
        except Exception as exc:  # noqa: BLE001 -- a refusal is answered, the rest logged
            body = send_error(request, refusal(exc, request.method, request.path))
        else:
            body = send(request, status, body, headers)
        request.write(body)
        request.finish()

    def fail(failure: Failure) -> None:
        error = refusal(failure.value, request.method, request.path, failure)
        if gone:
            return
        request.write(send_error(request, error))
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
            return send_error(request, ApiError(
                405, "method_not_allowed", f"{method} is not allowed here",
                {"Allow": ", ".join(allowed)}))
        try:
            return handler(request)
        except Exception as exc:  # noqa: BLE001 -- a refusal is answered, the rest logged
            return send_error(request, refusal(exc, method, request.path))


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
        return send_error(request, self.error)


def header(request: Request, name: bytes) -> str | None:
    value = request.getHeader(name)
    if value is None:
        return None
    return value.decode("latin-1") if isinstance(value, bytes) else value


def read_body(request: Request, max_body: int) -> bytes:
    if getattr(request, "too_large", False):
        raise ApiError(413, "too_large", f"the body is over {max_body} bytes")
    ctype = header(request, b"content-type")
    media = (ctype or "").split(";", 1)[0].strip().lower()
    if media != "application/json":
        raise ApiError(415, "unsupported_media_type", "send Content-Type: application/json")
    body = request.content.read() if request.content is not None else b""
    if len(body) > max_body:
        raise ApiError(413, "too_large", f"the body is over {max_body} bytes")
    return body


def int_arg(request: Request, name: bytes, default: int, lo: int, hi: int) -> int:
    values = request.args.get(name)
    if not values:
        return default
    raw = values[0].decode("ascii", "replace")
    if not raw.isdigit() or len(raw) > 19 or not lo <= int(raw) <= hi:
        raise ApiError(400, "invalid_parameter",
                       f"{name.decode()} must be an integer from {lo} to {hi}")
    return int(raw)


def is_loopback(request: Request) -> bool:
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
    if not is_loopback(request):
        raise ApiError(403, "forbidden", "operator endpoints answer the center's own "
                       "machine only")
    if operator_token is not None:
        given = header(request, b"authorization") or ""
        expected = f"Bearer {operator_token}"
        if not hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode()):
            raise ApiError(401, "invalid_credentials", "send the operator token as "
                           "Authorization: Bearer <token>",
                           {"WWW-Authenticate": 'Bearer realm="siaga-operators"'})
