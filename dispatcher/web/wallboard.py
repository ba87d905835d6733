"""What the wallboard shows, computed from the live model of Asterisk (pure functions)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from dialplans.contract import QUEUE_NAME
from dispatcher.callbacks.owed import CallbackEntry, CallbackList
from dispatcher.config.model import Center
from dispatcher.hotline.desks import operator_state
from pbx.ami.model import LiveModel

__all__ = ["WALLBOARD_CALLBACKS", "operator_state", "wallboard_document", "wallboard_source"]

_REACHABLE = {"NOT_INUSE", "INUSE", "BUSY", "RINGING", "RINGINUSE", "ONHOLD"}


# The callbacks the board lists: the strongest of the hotline's list (it may hold a
# thousand); the board shows how many are owed in all beside them.
WALLBOARD_CALLBACKS = 10


def wallboard_document(model: LiveModel, center: Center, now: float,
                       callbacks: Iterable[CallbackEntry] = (),
                       owed_total: int | None = None,
                       selftest: dict[str, Any] | None = None) -> dict[str, Any]:
    """Callers waiting, operator desks, agency phones and the callbacks owed, for the
    wallboard and console.

    ``callbacks`` is the top of the hotline's list (``CallbackList.page``: open entries,
    strongest evidence first) and ``owed_total`` how many are open in all (by default, how
    many were given). ``selftest`` is the self-test's status: its alarm shows as a banner."""
    owed = [e for e in callbacks if e.open]
    queue = model.queues.get(QUEUE_NAME)
    callers = []
    if queue is not None:
        for caller in sorted(queue.callers.values(), key=lambda c: c.position):
            channel = model.channels.get(caller.uniqueid)
            callers.append({
                "position": caller.position,
                "caller": channel.caller_num if channel else "",
                "wait_s": max(0, round(now - caller.wait_start)),
            })
    members = queue.members if queue is not None else {}
    desks = []
    for op in center.operators:
        member = members.get(f"PJSIP/{op.extension}")
        if member is None:
            desks.append({"extension": op.extension, "name": op.name, "state": "logged out",
                          "reason": ""})
            continue
        desks.append({
            "extension": op.extension,
            "name": op.name,
            "state": operator_state(member.status, member.paused, member.in_call),
            "reason": member.paused_reason if member.paused else "",
            "calls_taken": member.calls_taken,
        })
    agencies = []
    for agency in center.agencies:
        phones = []
        for ext in agency.extensions:
            endpoint = model.endpoints.get(ext)
            state = endpoint.device_state if endpoint else "UNKNOWN"
            # Contacts come only from ContactStatus events; the device state (listed at
            # every resync) says the same: a PJSIP device with no contact is UNAVAILABLE.
            registered = bool(endpoint and (endpoint.contacts or state in _REACHABLE))
            phones.append({"extension": ext, "registered": registered, "state": state})
        agencies.append({"key": agency.key, "name": agency.name, "phones": phones,
                         "reachable": sum(p["registered"] for p in phones)})
    return {
        "center": center.name,
        "waiting": len(callers),
        "longest_wait_s": max((c["wait_s"] for c in callers), default=0),
        "callers": callers,
        "operators": desks,
        "available": sum(d["state"] == "available" for d in desks),
        "agencies": agencies,
        "active_calls": len({c.linkedid for c in model.channels.values() if c.linkedid}),
        "callbacks": [{"number": e.number, "reason": e.reason, "state": e.state,
                       "since_s": max(0, round(now - e.created_at))} for e in owed],
        "callbacks_owed": len(owed) if owed_total is None else owed_total,
        "selftest": _selftest_banner(selftest, now),
    }


def wallboard_source(model: LiveModel, center: Center, clock: Callable[[], float],
                     callbacks: CallbackList, selftest: Any = None
                     ) -> Callable[[], dict[str, Any]]:
    """The wallboard's document, computed at each request from the live parts: the model,
    the top of the callback list and, when the center runs one, the self-test's status
    (``selftest`` a ``SelfTestService`` or None)."""
    def document() -> dict[str, Any]:
        return wallboard_document(model, center, clock(),
                                  callbacks.page(0, WALLBOARD_CALLBACKS),
                                  callbacks.open_count,
                                  selftest.status() if selftest is not None else None)

    return document


def _selftest_banner(status: dict[str, Any] | None, now: float) -> dict[str, Any] | None:
    """What the board shows of the self-test: whether the alarm is up, since when, and the
    stage the last test call stopped at (None: no self-test configured)."""
    if status is None:
        return None
    since = status.get("alarm_since")
    return {
        "alarm": bool(status.get("alarm")),
        "since_s": None if since is None else max(0, round(now - since)),
        "stage": status.get("stage") or "",
        "error": status.get("error") or "",
        "last_ok": status.get("last_ok"),
    }


# The incidents the push channel lists: the latest change of each, newest first.
RECENT_INCIDENTS = 50


def incidents_document(events: Iterable[dict[str, Any]],
                       limit: int = RECENT_INCIDENTS) -> dict[str, Any]:
    """The incidents changed lately, from the incident feed's events (oldest first): each
    incident once, as its latest event left it, the most recently changed first."""
    latest: dict[int, dict[str, Any]] = {}
    for item in events:
        latest.pop(item["incident_id"], None)  # re-inserted: dict order is recency
        latest[item["incident_id"]] = {
            "id": item["incident_id"], "state": item["state"], "event": item["event"],
            "at": item["at"], "agency": item.get("agency") or "",
        }
    recent = list(latest.values())[::-1][:limit]
    return {"incidents": recent}


def incidents_source(feed: Any) -> Callable[[], dict[str, Any]]:
    """The incidents view, computed from the latest events of ``feed`` (an
    :class:`~dispatcher.alerts.feed.IncidentFeed`) at each render."""
    def document() -> dict[str, Any]:
        return incidents_document(feed.since(max(0, feed.last - feed.max_batch)))

    return document
