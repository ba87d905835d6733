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


class DeskEndpoint(ConsoleEndpoint):
    """``POST {"action": "login"|"logout"|"pause"|"unpause", "reason": ...}``."""

    roles = ("operator",)

    def __init__(self, console: Any, hotline: Any) -> None:  # noqa: ANN401
        super().__init__(console)
        self.hotline = hotline

    def render_POST(self, request: Request) -> Any:  # noqa: ANN401, N802
        body = json_object(request)
        return reply_later(request, desk_action(self.hotline, request.staff.extension, body))


class CallbackNowEndpoint(ConsoleEndpoint):
    """``POST {"id": n}``: ring my phone first, then the citizen owed callback ``n``."""

    roles = ("operator",)

    def __init__(self, console: Any, hotline: Any) -> None:  # noqa: ANN401
        super().__init__(console)
        self.hotline = hotline

    def render_POST(self, request: Request) -> Any:  # noqa: ANN401, N802
        body = json_object(request)
        return reply_later(request, call_back_now(self.hotline, request.staff.extension, body))
