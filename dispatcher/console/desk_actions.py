"""What an operator's desk buttons do (sans-HTTP): log in and out of the queue, pause with
one of the four reasons, unpause, and "call back now" ringing the operator's own phone first.

Each goes through :class:`dispatcher.hotline.service.HotlineService`, the same AMI actions
that the feature codes' dialplan applications amount to (a logout is a pause with the
``logged-out`` reason, a login an unpause with ``logged-in``). The desk acted on is always
the session's own: nothing a page sends names another.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer

from dialplans import contract
from dispatcher.console.calls import ConsoleError

__all__ = ["ACTIONS", "CallbackNotOwed", "NoSuchCallback", "UnknownAction", "call_back_now",
           "desk_action"]

#: The desk's actions, as the page names them.
ACTIONS = ("login", "logout", "pause", "unpause")


class UnknownAction(ConsoleError):
    """Not one of the desk's actions, or a pause reason that is not one of the four."""


class NoSuchCallback(ConsoleError):
    """No callback with that id on the list."""


class CallbackNotOwed(ConsoleError):
    """The callback is done, failed or already ringing: nothing to call back now."""


def desk_action(hotline: Any, extension: str, body: dict[str, Any]) -> defer.Deferred[Any]:  # noqa: ANN401
    """Apply ``{"action": ..., "reason": ...}`` to ``extension``'s own desk; fires with
    ``{"action", "reason"}`` once Asterisk accepted it."""
    action = body.get("action")
    if action not in ACTIONS:
        raise UnknownAction(f"action must be one of {', '.join(ACTIONS)}")
    reason = body.get("reason")
    if action == "pause":
        reasons = tuple(contract.PAUSE_REASONS.values())
        if reason is None:
            reason = contract.DEFAULT_PAUSE_REASON
        if reason not in reasons:
            raise UnknownAction(f"a pause reason is one of {', '.join(reasons)}")
        d = hotline.pause(extension, reason)
    else:
        reason = None
        d = getattr(hotline, action)(extension)
    return d.addCallback(lambda _result: {"action": action, "reason": reason})


def call_back_now(hotline: Any, extension: str, body: dict[str, Any]) -> defer.Deferred[Any]:  # noqa: ANN401
    """Ring ``extension``'s phone first for the callback ``{"id": n}``; once answered, the
    dialplan dials the citizen. Fires with ``{"id", "state"}``."""
    entry_id = body.get("id")
    if not isinstance(entry_id, int) or isinstance(entry_id, bool):
        raise NoSuchCallback("id must be a callback's number")
    try:
        entry = hotline.callbacks.get(entry_id)
    except KeyError:
        raise NoSuchCallback(f"no callback {entry_id} is owed") from None
    if entry.state != "pending":
        raise CallbackNotOwed(f"callback {entry_id} is {entry.state}")
    d = hotline.call_back(entry_id, extension)
    return d.addCallback(lambda _result: {"id": entry_id,
                                          "state": hotline.callbacks.get(entry_id).state})
