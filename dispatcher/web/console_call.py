"""``/console/api/call``: the operator's actions on their own call (operators only).

* ``GET`` — the buttons' words: the agencies (key, the config's name, the short label in the
  page's language) and the action labels (``?lang=en`` for English).
* ``POST {"linkedid", "action", "agency"?}`` — one action of
  :data:`dispatcher.console.actions.ACTIONS`; 200 with what was done once Asterisk accepted
  it, or a JSON refusal with its reason: 403 ``not_your_call``, 400 ``unknown_action``,
  422 ``unknown_agency`` / ``invalid_field``, 409 ``not_now``, 502/503 from the PBX.
"""

from __future__ import annotations

from typing import Any

from twisted.web.server import Request

from dispatcher.console.actions import ACTIONS, ConsoleActions
from dispatcher.web.console_api import ConsoleEndpoint, json_object, reply, reply_later
from dispatcher.web.site import TEXT

__all__ = ["CallEndpoint"]


class CallEndpoint(ConsoleEndpoint):
    """Actions on the asking operator's call (see the module's docstring)."""

    roles = ("operator",)

    def __init__(self, console: Any, actions: ConsoleActions) -> None:  # noqa: ANN401
        super().__init__(console)
        self.actions = actions

    def render_GET(self, request: Request) -> bytes:  # noqa: N802
        """The agencies and the labels the page's buttons show."""
        lang = self.console.language(request)
        words = TEXT[lang].get("actions", {})
        short = words.get("agencies", {})
        agencies = [{"key": a.key, "name": a.name, "digit": a.digit,
                     "label": short.get(a.key, a.name)} for a in self.console.center.agencies]
        return reply(request, {"agencies": agencies, "actions": list(ACTIONS),
                               "labels": {k: v for k, v in words.items() if k != "agencies"}})

    def render_POST(self, request: Request) -> Any:  # noqa: N802, ANN401
        """Carry out one action (refusals are answered before anything reaches Asterisk)."""
        body = json_object(request)
        d = self.actions.act(request.staff.extension, body.get("linkedid"),
                             body.get("action"), body.get("agency"))
        return reply_later(request, d)
