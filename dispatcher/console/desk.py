"""The operator's desk as the console shows it: the desk's state, and the call card.

Sans-HTTP and sans-I/O: everything is read from the AMI live model (the desk's queue member,
the channels on the desk's phone), the call log's live journeys (what the citizen dialled and
chose, since when they wait) and the console's open incidents (an alert's device). The page
gets :meth:`Desks.document` through the push channel as a *personal* view: rendered for each
operator's own streams only.

The card exists from the moment the operator's phone rings (before it is answered): a
channel on the desk's endpoint, ringing or up, whose linkedid is a citizen's journey. When
the call is over the last card stays, ``state: "ended"``, until the next call rings (the
operator still writes the incident's notes and the disposition from it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from dialplans import contract
from dispatcher.calllog.journey import JourneyFacts
from dispatcher.config.model import Center
from dispatcher.console.calls import desk_channels, desk_of
from dispatcher.hotline.desks import operator_state
from pbx.ami.model import LiveModel
from pbx.channels import endpoint_of

__all__ = ["CARD_STATES", "DESK_STATES", "Desks", "FactsSource", "IncidentsSource",
           "card_document", "desk_state", "origin_of"]

#: The desk's states, as the page labels them (the wallboard's words).
DESK_STATES = ("logged out", "available", "paused", "ringing", "on call", "offline")
#: The card's states.
CARD_STATES = ("ringing", "talking", "ended")


class FactsSource(Protocol):
    """Where the live journeys' facts are read (``JourneyTracker.facts``)."""

    def facts(self, linkedid: str) -> JourneyFacts | None: ...


class IncidentsSource(Protocol):
    """The console's open incidents (``dispatcher.console.lists.OpenIncidents.get``)."""

    def get(self, incident_id: int) -> dict[str, Any] | None: ...


def desk_state(model: LiveModel, extension: str, card: dict[str, Any] | None = None
               ) -> dict[str, str]:
    """``{"state", "reason"}`` of ``extension``'s desk: logged out (not in the queue, or
    paused with the ``logged-out`` reason), offline (the phone is not reachable), paused (with
    its reason), ringing or on call (a call card ringing or up), else available."""
    queue = model.queues.get(contract.QUEUE_NAME)
    member = queue.members.get(f"PJSIP/{extension}") if queue is not None else None
    live = card is not None and card.get("state") in ("ringing", "talking")
    if live:
        assert card is not None
        return {"state": "ringing" if card["state"] == "ringing" else "on call", "reason": ""}
    if member is None:
        return {"state": "logged out", "reason": ""}
    if member.paused and member.paused_reason == contract.LOGGED_OUT_REASON:
        return {"state": "logged out", "reason": ""}
    state = operator_state(member.status, member.paused, member.in_call)
    return {"state": state, "reason": member.paused_reason if state == "paused" else ""}


def origin_of(facts: JourneyFacts, center: Center,
              incidents: IncidentsSource | None = None) -> dict[str, Any]:
    """How the call began: ``{"kind", "incident_id", "device"}``.

    * ``button``: a configured panic button's own phone called (its endpoint, never the
      caller ID it sends), or the call was queued as panic; device: the button's name;
    * ``alert``: the center's operator-first call for an app's alert (its incident);
      device: the alert's device id;
    * ``callback``: any other call the center placed (a missed call's callback);
    * ``hotline``: a citizen called the hotline.
    """
    buttons = {b.extension: b for b in center.buttons}
    endpoint = endpoint_of(facts.citizen)
    incident = None
    if facts.incident_ref is not None and incidents is not None:
        incident = incidents.get(facts.incident_ref)
    device = incident.get("device") if incident else None
    if endpoint in buttons or (facts.category == "panic" and facts.direction == "inbound"):
        button = buttons.get(endpoint)
        return {"kind": "button", "incident_id": facts.incident_ref,
                "device": button.name if button else device}
    if facts.incident_ref is not None:
        return {"kind": "alert", "incident_id": facts.incident_ref, "device": device}
    if facts.direction == "outbound":
        return {"kind": "callback", "incident_id": None, "device": None}
    return {"kind": "hotline", "incident_id": None, "device": None}


def _is_citizens(facts: JourneyFacts) -> bool:
    # A call on the desk's phone is a card when a citizen is in it (or about to be: a
    # callback or an alert's call ringing the operator first). The operator dialling a
    # feature code or a colleague is not.
    return bool(facts.citizen or facts.incident_ref is not None
                or facts.callback_id is not None or facts.category == "callback")


def _recovered_card(model: LiveModel, channel: Any, center: Center  # noqa: ANN401
                    ) -> dict[str, Any] | None:
    """The card of a call the journeys do not know: one that was up before this run of the
    server (a restart while operators talk). What Asterisk still knows is shown (the
    citizen's number, ringing or talking); what only the journey knew (dialled number,
    menu choice, wait, origin) is None. A citizen's channel is a SIP channel of the call on
    no staff phone; without one, no card (the operator dialling a colleague)."""
    staff = {ext for ext, (role, _agency) in center.extensions().items()
             if role in ("operator", "supervisor", "agency")}
    citizen = next((c for c in model.channels_of(channel.linkedid)
                    if desk_of(c.name) is not None and desk_of(c.name) not in staff), None)
    if citizen is None:
        return None
    return {
        "linkedid": channel.linkedid, "citizen_channel": citizen.name,
        "operator_channel": channel.name,
        "state": "talking" if channel.state == "Up" else "ringing",
        "caller_number": citizen.caller_num, "caller_name": citizen.caller_name,
        "dialed": None, "category": None, "language": None, "started_at": None,
        "queued_at": None, "answered_at": None, "priority": None,
        "origin": {"kind": None, "incident_id": None, "device": None},
    }


def card_document(model: LiveModel, extension: str, journeys: FactsSource, center: Center,
                  incidents: IncidentsSource | None = None,
                  callback_number: Callable[[int], str | None] | None = None
                  ) -> dict[str, Any] | None:
    """The live call card of ``extension``'s desk (None: no citizen's call on its phone).

    The newest channel on the desk's phone that is ringing or up and belongs to a citizen's
    journey; its fields are those of the console contract (``siaga:card``'s detail).
    Before a callback reaches its citizen, the number is the one owed a call
    (``callback_number(id)``), or the alert's callback number.
    """
    for channel in reversed(desk_channels(model, extension)):
        if channel.state not in ("Ringing", "Up", "Ring"):
            continue
        facts = journeys.facts(channel.linkedid)
        if facts is None:
            recovered = _recovered_card(model, channel, center)
            if recovered is not None:
                return recovered
            continue
        if facts.ended or not _is_citizens(facts):
            continue
        citizen = next((c for c in model.channels.values() if c.name == facts.citizen), None)
        caller_number = facts.caller_number
        if not caller_number and facts.incident_ref is not None and incidents is not None:
            incident = incidents.get(facts.incident_ref) or {}
            caller_number = incident.get("callback_number") or ""
        if not caller_number and facts.callback_id is not None and callback_number:
            caller_number = callback_number(facts.callback_id) or ""
        return {
            "linkedid": facts.linkedid,
            "citizen_channel": citizen.name if citizen is not None else None,
            "operator_channel": channel.name,
            "state": "talking" if channel.state == "Up" else "ringing",
            "caller_number": caller_number,
            "caller_name": facts.caller_name,
            # What the citizen dialled; a call the center placed has no such number.
            "dialed": facts.dialed if facts.direction == "inbound" else None,
            "category": facts.category,
            "language": facts.language,
            "started_at": facts.started_at,
            "queued_at": facts.queued_at,
            "answered_at": facts.answered_at,
            "priority": facts.queue_priority,
            "origin": origin_of(facts, center, incidents),
        }
    return None


class Desks:
    """Each operator's desk and card, for the console's personal push view.

    ``model`` the live model, ``journeys`` the call log's tracker, ``incidents`` the console's
    open incidents; ``center()`` the current config (its operators and buttons);
    ``callback_number(id)`` the number a hotline callback is owed to.
    """

    def __init__(self, model: LiveModel, journeys: FactsSource,
                 center: Callable[[], Center], incidents: IncidentsSource | None = None,
                 callback_number: Callable[[int], str | None] | None = None) -> None:
        self.model = model
        self.journeys = journeys
        self.center = center
        self.incidents = incidents
        self.callback_number = callback_number
        self._last: dict[str, dict[str, Any]] = {}  # each desk's last card (shown as ended)

    def card(self, extension: str) -> dict[str, Any] | None:
        """``extension``'s card now: the live one, else the last one as ``ended``."""
        card = card_document(self.model, extension, self.journeys, self.center(),
                             self.incidents, self.callback_number)
        if card is not None:
            self._last[extension] = card
            return card
        last = self._last.get(extension)
        if last is None:
            return None
        return {**last, "state": "ended"}

    def last_call(self, extension: str) -> str | None:
        """The call (linkedid) ``extension``'s card showed last, live or ended."""
        last = self._last.get(extension)
        return last.get("linkedid") if last is not None else None

    def document(self, staff: Any) -> dict[str, Any]:  # noqa: ANN401 (sessions.Staff)
        """The personal view of ``staff``: ``{"desk": {...}, "card": {...} | None}``. A
        supervisor has no desk of their own in the queue: their desk is None."""
        extension = staff.extension
        center = self.center()
        operator = next((op for op in center.operators if op.extension == extension), None)
        card = self.card(extension)
        desk = None
        if operator is not None:
            desk = {"extension": extension, "name": operator.name,
                    **desk_state(self.model, extension, card)}
        return {"desk": desk, "card": card}
