"""The plumbing every console endpoint shares (``/console/api/<name>``).

A console endpoint answers JSON only, to a logged-in member of the staff whose role it
allows (401 ``login_required`` / 403 ``forbidden`` otherwise). Anything but GET and HEAD is
an action, and an action must be the console page's own: same Origin (or none) and the
header ``X-Siaga-CSRF`` equal to :func:`csrf_token` of the session, which the page reads from
its ``<meta name="siaga-csrf">`` (403 ``cross_site`` / ``csrf``). A cookie alone, which a
browser sends for another site's form too, never acts.

Subclasses implement ``render_GET`` / ``render_POST`` (the session's member is
``request.staff``), read a JSON object with :func:`json_object`, answer with
:func:`reply` or, for a Deferred, :func:`reply_later`. A refusal raised by a feature is
answered as ``dispatcher.api.errors.HTTP_REFUSALS`` says; anything else is a logged 500.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

from twisted.internet.defer import Deferred
from twisted.web.server import Request

from dispatcher.api.base import JsonResource, finish_async, read_body, send, send_error
from dispatcher.api.errors import ApiError, json_body

__all__ = ["CSRF_HEADER", "ConsoleEndpoint", "csrf_token", "json_object", "reply",
           "reply_later"]

CSRF_HEADER = b"x-siaga-csrf"
MAX_BODY = 8 * 1024


def csrf_token(session_token: str) -> str:
    """The CSRF token of a session: a MAC of its (HttpOnly) cookie, so it survives a server
    restart with the session and another site can neither read nor compute it."""
    return hmac.new(session_token.encode(), b"siaga-console-csrf", hashlib.sha256).hexdigest()


def json_object(request: Request, max_body: int = MAX_BODY) -> dict[str, Any]:
    """The request's JSON object body (415 not JSON, 413 too large, 400 not an object)."""
    body = read_body(request, max_body)
    try:
        document = json.loads(body or b"{}")
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, "malformed_json", f"the body is not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise ApiError(400, "malformed_json", "the body must be a JSON object")
    return document


def reply(request: Request, document: object, status: int = 200) -> bytes:
    """Answer ``document`` as JSON."""
    return send(request, status, json_body(document))


def reply_later(request: Request, d: Deferred[Any], status: int = 200) -> Any:
    """Answer the JSON document ``d`` fires with (a refusal it fails with as JSON)."""
    return finish_async(request, d, lambda result: (status, json_body(result), {}))


class ConsoleEndpoint(JsonResource):
    """A console JSON endpoint for logged-in staff (see the module's docstring)."""

    isLeaf = True
    roles: tuple[str, ...] = ("operator", "supervisor")

    def __init__(self, console: Any) -> None:  # noqa: ANN401 (dispatcher.web.site.Console)
        super().__init__()
        self.console = console

    def render(self, request: Request) -> bytes | int:
        """Check the session, the role and, for an action, its origin; then dispatch."""
        console = self.console
        staff = console.staff(request)
        if staff is None:
            return send_error(request, ApiError(401, "login_required", "log in to the console"))
        if staff.role not in self.roles:
            return send_error(request, ApiError(403, "forbidden",
                                                f"a {staff.role} may not do this"))
        if request.method not in (b"GET", b"HEAD"):
            if not console.same_origin(request):
                return send_error(request, ApiError(403, "cross_site",
                                                    "an action from another site is refused"))
            given = request.getHeader(CSRF_HEADER) or ""
            given = given.decode("latin-1") if isinstance(given, bytes) else given
            expected = csrf_token(console.token(request) or "")
            if not hmac.compare_digest(given.encode("latin-1", "replace"), expected.encode()):
                return send_error(request, ApiError(
                    403, "csrf", "send the page's token as X-Siaga-CSRF"))
        request.staff = staff
        return super().render(request)
