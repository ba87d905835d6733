"""Where each hand-off of a call to an agency stands, as Asterisk tells it: ringing the
agency's group, answered, failed and ringing the fallback, failed altogether.

The dialplan announces each ring group it rings (``SiagaAgencyRing``) and each that did not
answer (``SiagaAgencyFailed``, for the group then for the fallback), on the channel that dials
(the citizen's own in a blind transfer, a Local leg in a consultation or a conference); that
channel's ``DialEnd`` with ``ANSWER`` says the agency answered. The console tells the board
what it asked for (:meth:`HandoffBoard.requested`), so the card shows the request at once and
its mode (blind, consult, three-way); a hand-off begun with a softphone's feature code shows
too, its mode read from the dialling channel.

The board is published as the push view ``handoffs``: ``{linkedid: [{agency, mode, state,
target, at, steps}]}``. It is bounded (the latest :attr:`HandoffBoard.max_calls` calls), and it
believes only what names a configured agency and a well-formed call id.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from dialplans import contract

__all__ = ["Handoff", "HandoffBoard", "MODES", "STATES"]

#: How the console (or a feature code) put the citizen through.
MODES = ("blind", "consult", "threeway")
#: requested: the console asked, Asterisk has not rung yet; ringing: the agency's group rings;
#: fallback: the group did not answer, the fallback rings; answered; failed: the fallback did
#: not answer either; cancelled: the operator cancelled, or the caller left before an answer;
#: handed_over: a consultation ended with the citizen put through.
STATES = ("requested", "ringing", "fallback", "answered", "failed", "cancelled",
          "handed_over")
_OPEN = ("requested", "ringing", "fallback")

CALL_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


@dataclass
class Handoff:
    """One agency asked to take one call."""

    agency: str
    mode: str
    state: str
    target: str  # "group" or "fallback": who rings (or rang last)
    at: float  # when the state last changed (epoch seconds)
    #: Every state it went through, with its target and time: the card shows the way a
    #: failed group led to the fallback.
    steps: list[tuple[str, str, float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.steps:
            self.steps.append((self.state, self.target, self.at))

    def move(self, state: str, at: float) -> bool:
        """Go to ``state`` (False when already there)."""
        if self.state == state:
            return False
        self.state, self.at = state, at
        self.steps.append((state, self.target, at))
        del self.steps[:-12]
        return True

    def document(self) -> dict[str, Any]:
        """The JSON form the page reads."""
        return {"agency": self.agency, "mode": self.mode, "state": self.state,
                "target": self.target, "at": round(self.at, 3),
                "steps": [{"state": state, "target": target, "at": round(at, 3)}
                          for state, target, at in self.steps]}


class HandoffBoard:
    """The hand-offs of the latest calls, kept from AMI events (:meth:`on_event`).

    ``agencies`` are the configured agency keys; ``clock`` gives epoch seconds. Each change
    calls every function in :attr:`listeners` (the push hub's ``changed``).
    """

    max_calls = 200
    max_per_call = 20

    def __init__(self, agencies: Iterable[str], clock: Callable[[], float]) -> None:
        self.agencies = frozenset(agencies)
        self.clock = clock
        self.calls: OrderedDict[str, list[Handoff]] = OrderedDict()
        self.listeners: list[Callable[[], object]] = []
        # The channel dialling an agency (uniqueid) -> the hand-off it dials for.
        self._dialing: dict[str, Handoff] = {}

    # -- what the console asks --------------------------------------------------------------

    def requested(self, linkedid: str, agency: str, mode: str) -> Handoff | None:
        """The console asked for ``agency`` on call ``linkedid`` in ``mode``."""
        if not self._believable(linkedid, agency) or mode not in MODES:
            return None
        handoff = Handoff(agency, mode, "requested", "group", self.clock())
        self._add(linkedid, handoff)
        self._changed()
        return handoff

    def settled(self, linkedid: str, agency: str, state: str, mode: str | None = None) -> None:
        """The console ended a consultation: ``state`` is cancelled or handed_over (the
        three-way from a consultation changes its ``mode``)."""
        handoff = self.latest(linkedid, agency)
        if handoff is None or state not in STATES:
            return
        if mode in MODES:
            handoff.mode = mode
        handoff.move(state, self.clock())
        self._changed()

    def latest(self, linkedid: str, agency: str) -> Handoff | None:
        """The last hand-off of ``linkedid`` to ``agency``."""
        return next((h for h in reversed(self.calls.get(linkedid, ())) if h.agency == agency),
                    None)

    # -- what Asterisk says ----------------------------------------------------------------

    def on_event(self, event: Any) -> bool:  # noqa: ANN401 (a pbx.ami.protocol.Message)
        """Apply one AMI event; True when the board changed."""
        fields = getattr(event, "fields", event)
        name = fields.get("Event", getattr(event, "name", ""))
        changed = False
        if name == "UserEvent":
            kind = fields.get("UserEvent")
            if kind == contract.EVENT_AGENCY_RING:
                changed = self._ringing(fields)
            elif kind == contract.EVENT_AGENCY_FAILED:
                changed = self._failed(fields)
        elif name == "DialEnd":
            handoff = self._dialing.get(fields.get("Uniqueid", ""))
            if handoff is not None and fields.get("DialStatus") == "ANSWER" \
                    and handoff.state in _OPEN:
                changed = self._move(handoff, "answered")
        elif name == "Hangup":
            handoff = self._dialing.pop(fields.get("Uniqueid", ""), None)
            if handoff is not None and handoff.state in _OPEN:
                changed = self._move(handoff, "cancelled")
        if changed:
            self._changed()
        return changed

    def _ringing(self, fields: Any) -> bool:  # noqa: ANN401
        call, agency = fields.get("Call", ""), fields.get("Agency", "")
        if not self._believable(call, agency):
            return False
        handoff = next((h for h in reversed(self.calls.get(call, ()))
                        if h.agency == agency and h.state == "requested"), None)
        if handoff is None:
            handoff = Handoff(agency, _mode_of(fields.get("Channel", "")), "ringing", "group",
                              self.clock())
            self._add(call, handoff)
        uniqueid = fields.get("Uniqueid", "")
        if uniqueid:
            self._dialing[uniqueid] = handoff
        handoff.target = "group"
        return self._move(handoff, "ringing") or True

    def _failed(self, fields: Any) -> bool:  # noqa: ANN401
        call, agency = fields.get("Call", ""), fields.get("Agency", "")
        if not self._believable(call, agency):
            return False
        handoff = self._dialing.get(fields.get("Uniqueid", "")) or self.latest(call, agency)
        if handoff is None or handoff.agency != agency:
            return False
        if fields.get("Target") == "fallback":
            return self._move(handoff, "failed")
        handoff.target = "fallback"
        return self._move(handoff, "fallback")

    # -- the view ---------------------------------------------------------------------------

    def document(self) -> dict[str, Any]:
        """The push view: every call's hand-offs, oldest first."""
        return {linkedid: [h.document() for h in handoffs]
                for linkedid, handoffs in self.calls.items()}

    # -- plumbing ---------------------------------------------------------------------------

    def _believable(self, call: str, agency: str) -> bool:
        return bool(CALL_RE.match(call or "")) and agency in self.agencies

    def _add(self, linkedid: str, handoff: Handoff) -> None:
        handoffs = self.calls.pop(linkedid, [])
        handoffs.append(handoff)
        del handoffs[:-self.max_per_call]
        self.calls[linkedid] = handoffs  # the latest call last
        while len(self.calls) > self.max_calls:
            _old, dropped = self.calls.popitem(last=False)
            for uniqueid in [u for u, h in self._dialing.items() if h in dropped]:
                del self._dialing[uniqueid]

    def _move(self, handoff: Handoff, state: str) -> bool:
        return handoff.move(state, self.clock())

    def _changed(self) -> None:
        for listener in list(self.listeners):
            listener()


def _mode_of(channel: str) -> str:
    """How a hand-off the console did not ask for was made, from the dialling channel: the
    citizen's own (blind), a conference's Local leg, or a consultation's."""
    if not channel.startswith("Local/"):
        return "blind"
    if f"@{contract.CONTEXT_CONFERENCE_AGENCY}-" in channel:
        return "threeway"
    return "consult"
