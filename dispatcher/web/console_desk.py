"""The desk's JSON endpoints: ``/console/api/desk`` and ``/console/api/callback_now``.

Operators only, each on their own desk (the session's extension; nothing in the body names
a desk). The rules are :mod:`dispatcher.console.desk_actions`'.
"""

from __future__ import annotations

from typing import Any

from twisted.web.server import Request

from dispatcher.console.desk_actions import call_back_now, desk_action
from dispatcher.web.console_api import ConsoleEndpoint, json_object, reply_later

__all__ = ["CallbackNowEndpoint", "DeskEndpoint"]


class _OwnDeskEndpoint(ConsoleEndpoint):
    """An operator's POST on their own desk: ``verb(hotline, extension, body)``."""

    roles = ("operator",)
    verb: Any = None

    def __init__(self, console: Any, hotline: Any) -> None:  # noqa: ANN401
        super().__init__(console)
        self.hotline = hotline

    def render_POST(self, request: Request) -> Any:  # noqa: ANN401, N802
        body = json_object(request)
        verb = type(self).verb
        return reply_later(request, verb(self.hotline, request.staff.extension, body))


class DeskEndpoint(_OwnDeskEndpoint):
    """``POST {"action": "login"|"logout"|"pause"|"unpause", "reason": ...}``."""

    verb = staticmethod(desk_action)


class CallbackNowEndpoint(_OwnDeskEndpoint):
    """``POST {"id": n}``: ring my phone first, then the citizen owed callback ``n``."""

    verb = staticmethod(call_back_now)
