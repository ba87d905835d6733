"""Actions on the operator's own call, from the console, through AMI.

What a softphone does with feature codes, a button does here: put the citizen through to an
agency blind; consult the agency first (the citizen held with music, the operator's phone
talking to the agency) and then hand over, cancel (back with the citizen) or make it a
three-way call; a three-way conference the operator may leave; hold and unhold; hang up.

A consultation from a button cannot be Asterisk's attended transfer: that one is completed
with keys on the phone. So the console builds its own from AMI actions and the dialplan's
``siaga-console`` context (``dialplans/templates/extensions.conf.j2``):

* consult: ``Setvar`` the agency and the citizen's channel on the operator's leg, then one
  ``Redirect`` of both legs: the citizen to music on hold, the operator's leg to ``consult``,
  which dials the agency's group and fallback through a Local pair kept whole;
* hand over: ``Bridge`` the held citizen with that Local leg (the operator's leg, marked
  done, ends); cancel: ``Hangup`` the Local leg (the operator's leg goes back to the
  citizen); three-way: both ``Redirect``\\ ed into the call's ConfBridge with the citizen;
* hold: one ``Redirect`` of both legs (the citizen to music on hold); unhold: ``Bridge``;
* blind and a three-way straight away: :meth:`HotlineService.transfer` (the softphone
  codes' own AMI form); leave: ``Hangup`` the operator's leg (the conference goes on);
  hang up: ``Hangup`` the citizen's leg, then the operator's.

Which of these may run depends on where the operator's call stands, read from the live model
(:func:`call_state`), in the table :data:`ALLOWED`; anything else is refused with
:class:`NotNow` and nothing is sent. Before any of it the call must be on the asking
operator's phone (:func:`dispatcher.console.calls.require_call`), the action one of
:data:`ACTIONS`, the agency a configured key, and every channel name
:func:`dispatcher.hotline.service.check_channel`-clean: nothing a page sent reaches an AMI
action; only names the live model holds and keys the config holds do.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from twisted.internet import defer

from dialplans import contract
from dispatcher.config.model import Center
from dispatcher.console.calls import ConsoleError, desk_of, require_call
from dispatcher.console.handoffs import HandoffBoard
from dispatcher.hotline.service import HotlineService, InvalidInput, TransferMode, check_channel
from pbx.ami.actions import AMIActions
from pbx.ami.entities import Channel, uniqueid_order
from pbx.ami.errors import AMIActionError
from pbx.ami.model import LiveModel

__all__ = ["ACTIONS", "ALLOWED", "CallLegs", "ConsoleActions", "NotNow", "UnknownAction",
           "UnknownAgency", "call_state"]

#: Everything the console may ask of a call.
ACTIONS = ("blind", "consult", "handover", "cancel", "threeway", "leave", "hold", "unhold",
           "hangup")
#: Actions that name an agency.
NEEDS_AGENCY = ("blind", "consult")

#: Where the operator's call stands -> what the console may do there.
ALLOWED: dict[str, frozenset[str]] = {
    "talking": frozenset({"blind", "consult", "threeway", "hold", "hangup"}),
    "held": frozenset({"blind", "unhold", "hangup"}),
    "consulting": frozenset({"handover", "cancel", "threeway", "hangup"}),
    "conference": frozenset({"leave", "hangup"}),
    # Ringing (not answered yet), or between two states: nothing from the console; a
    # citizen ringing an operator's phone is never hung up from a page.
    "other": frozenset(),
}

LINKEDID_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class UnknownAction(ConsoleError):
    """The action is not one the console knows."""


class UnknownAgency(ConsoleError):
    """The agency is not a configured agency's key (or is missing)."""


class NotNow(ConsoleError):
    """The action does not fit where the call stands (hand over with no consultation...)."""


@dataclass(frozen=True)
class CallLegs:
    """The channels of one operator's call, as the live model holds them."""

    operator: Channel
    citizen: Channel | None
    agency: Channel | None  # the consultation's Local leg to the agency, when consulting
    state: str

    @property
    def consulted(self) -> str | None:
        """The agency key the consultation calls (from its Local leg's name)."""
        if self.agency is None:
            return None
        return self.agency.name[len("Local/"):].split("@", 1)[0]


def call_state(operator: Channel, citizen: Channel | None) -> str:
    """Where the operator's leg stands: talking with the citizen, holding them, consulting
    an agency, in the conference, or none of those (ringing, ending...).

    The conference first (citizen and operator share its bridge too), then one bridge with
    the citizen, then the dialplan's place: a leg bridged back to the citizen (unhold, or
    a cancelled consultation) still shows the ``siaga-console`` extension it left from.
    """
    if operator.context == contract.CONTEXT_CONFERENCE:
        return "conference"
    if citizen is not None and operator.bridge is not None \
            and operator.bridge == citizen.bridge:
        return "talking"
    if operator.context == contract.CONTEXT_CONSOLE:
        if operator.exten == contract.EXTEN_HOLDING:
            return "held"
        if operator.exten == contract.EXTEN_CONSULT:
            return "consulting"
    return "other"


class ConsoleActions:
    """The console's actions on a call (see the module's docstring).

    ``ami`` sends the actions, ``model`` is the live model they are checked against,
    ``hotline`` does the transfers softphones do, ``handoffs`` learns what was asked.
    """

    def __init__(self, ami: AMIActions, model: LiveModel, center: Center,
                 hotline: HotlineService, handoffs: HandoffBoard) -> None:
        self.ami = ami
        self.model = model
        self.center = center
        self.hotline = hotline
        self.handoffs = handoffs
        self._agencies = {a.key: a.key for a in center.agencies}
        self._busy: set[str] = set()  # calls with an action under way
        self._staff = {op.extension for op in center.operators} | set(center.supervisors) | {
            ext for a in center.agencies for ext in a.extensions}

    # -- the checks --------------------------------------------------------------------------

    def check(self, extension: str, linkedid: object, action: object,
              agency: object = None) -> tuple[CallLegs, str, str | None]:
        """Validate a request; the call's legs, the action and the agency (or a refusal:
        nothing has been sent to Asterisk)."""
        if not isinstance(linkedid, str) or any(c in linkedid for c in "\r\n\0") \
                or not LINKEDID_RE.match(linkedid):
            raise InvalidInput("linkedid must be the call's id (letters, digits, . _ -)")
        require_call(self.model, extension, linkedid)  # ownership first
        if not isinstance(action, str) or action not in ACTIONS:
            shown = action[:40] if isinstance(action, str) else type(action).__name__
            raise UnknownAction(f"unknown action {shown!r}; known: {', '.join(ACTIONS)}")
        key = None
        if agency is not None or action in NEEDS_AGENCY:
            if not isinstance(agency, str) or agency not in self._agencies:
                shown = agency[:40] if isinstance(agency, str) else agency
                raise UnknownAgency(f"unknown agency {shown!r}; known: "
                                    f"{', '.join(sorted(self._agencies))}")
            key = self._agencies[agency]  # the config's own string, not the page's
        legs = self.legs(extension, linkedid)
        if action not in ALLOWED[legs.state]:
            raise NotNow(f"cannot {action} now: the call is {legs.state.replace('_', ' ')}")
        if action == "threeway" and legs.state == "talking" and key is None:
            raise UnknownAgency("a three-way call names the agency to call")
        if action == "handover" and (legs.agency is None or legs.agency.state != "Up"):
            raise NotNow("the agency has not answered yet: cancel, or wait for the answer")
        if action == "threeway" and legs.state == "consulting" and (
                legs.agency is None or legs.agency.state != "Up"):
            raise NotNow("the agency has not answered yet: cancel, or wait for the answer")
        return legs, action, key

    def legs(self, extension: str, linkedid: str) -> CallLegs:
        """The operator's, the citizen's and (consulting) the agency's channel of a call."""
        channels = self.model.channels_of(linkedid)
        mine = [c for c in channels if desk_of(c.name) == extension]
        if not mine:
            raise NotNow("the call is no longer on your phone")
        operator = mine[0]
        check_channel(operator.name)
        citizen = self._citizen(channels, linkedid)
        if citizen is not None:
            check_channel(citizen.name)
        state = call_state(operator, citizen)
        agency = None
        if state == "consulting":
            prefix = f"@{contract.CONTEXT_CONSOLE_AGENCY}-"
            agency = next((c for c in reversed(channels) if c.name.startswith("Local/")
                           and prefix in c.name and c.name.endswith(";1")), None)
            if agency is not None:
                check_channel(agency.name)
        return CallLegs(operator, citizen, agency, state)

    def document(self) -> dict[str, Any]:
        """The push view ``call_actions``: for each call on an operator's phone, where it
        stands and what the console may do now (the page greys out the rest)."""
        calls: dict[str, Any] = {}
        for op in self.center.operators:
            calls.update(self.document_for(op.extension))
        return calls

    def document_for(self, extension: str) -> dict[str, Any]:
        """:meth:`document` of one desk's calls only (the operator's own page: another
        desk's calls are not theirs to see); ``{}`` for a phone that is no operator's."""
        if not any(op.extension == extension for op in self.center.operators):
            return {}
        calls: dict[str, Any] = {}
        for linkedid in {c.linkedid for c in self.model.channels.values()
                         if desk_of(c.name) == extension and c.linkedid}:
            try:
                legs = self.legs(extension, linkedid)
            except (ConsoleError, InvalidInput):
                continue
            calls[linkedid] = {"state": legs.state, "allowed": sorted(ALLOWED[legs.state])}
        return calls

    def _citizen(self, channels: list[Channel], linkedid: str) -> Channel | None:
        # The citizen's channel: the call's own first channel (a hotline call's linkedid is
        # the citizen's uniqueid), else the oldest that is no Local leg and no staff phone
        # (an operator-first callback's citizen).
        candidates = [c for c in channels if not c.name.startswith("Local/")
                      and desk_of(c.name) not in self._staff]
        first = next((c for c in candidates if c.uniqueid == linkedid), None)
        if first is not None:
            return first
        return min(candidates, key=lambda c: uniqueid_order(c.uniqueid), default=None)

    # -- acting ------------------------------------------------------------------------------

    def ami_for(self, call: str) -> AMIActions:
        """Where the actions on ``call`` are sent: over several nodes, the AMI of the node
        holding it (``for_call`` of ``dispatcher.cluster.ami.ClusterAMI``: channel names
        repeat across nodes, the call's linkedid does not); else the one AMI."""
        for_call = getattr(self.ami, "for_call", None)
        return for_call(call) if for_call is not None else self.ami

    def act(self, extension: str, linkedid: object, action: object,
            agency: object = None) -> defer.Deferred[dict[str, Any]]:
        """Check, then carry out ``action`` on the call ``linkedid`` of the operator at
        ``extension``. Refusals are raised here, before anything is sent; the Deferred fires
        with what was done once Asterisk accepted it (or fails with its refusal)."""
        legs, verb, key = self.check(extension, linkedid, action, agency)
        call = legs.operator.linkedid
        if call in self._busy:
            # A double click: the first action's moves are not in the live model yet.
            raise NotNow("another action on this call is under way")
        self._busy.add(call)
        run = getattr(self, f"_{verb}")
        d = defer.ensureDeferred(run(call, legs, key))
        d.addBoth(lambda result: (self._busy.discard(call), result)[1])

        def refused(failure):  # noqa: ANN001, ANN202
            # Asterisk refused (or AMI dropped): the card must not show a request pending.
            if key is not None and verb in ("blind", "consult", "threeway"):
                handoff = self.handoffs.latest(call, key)
                if handoff is not None and handoff.state == "requested":
                    self.handoffs.settled(call, key, "cancelled")
            return failure

        d.addErrback(refused)
        return d.addCallback(lambda _: {"linkedid": call, "action": verb,
                                        "agency": key or legs.consulted, "was": legs.state})

    async def _blind(self, call: str, legs: CallLegs, agency: str) -> None:
        self.handoffs.requested(call, agency, "blind")
        if legs.state == "talking":
            await self.hotline.transfer(legs.operator.name, agency, TransferMode.BLIND)
            return
        citizen = self._need_citizen(legs)
        await self._release(call, citizen)
        await self.ami_for(call).redirect(citizen, contract.agency_context(agency), "s", 1)
        await self.ami_for(call).hangup(legs.operator.name)

    async def _consult(self, call: str, legs: CallLegs, agency: str) -> None:
        citizen = self._need_citizen(legs)
        operator = legs.operator.name
        await self.ami_for(call).setvar(contract.VAR_CONSOLE_AGENCY, agency, operator)
        await self.ami_for(call).setvar(contract.VAR_CONSOLE_CITIZEN, citizen, operator)
        await self.ami_for(call).setvar(contract.VAR_CONSOLE_DONE, "", operator)
        self.handoffs.requested(call, agency, "consult")
        await self._both_to(call, citizen, contract.EXTEN_HELD, operator, contract.EXTEN_CONSULT)

    async def _handover(self, call: str, legs: CallLegs, _agency: None) -> None:
        citizen = self._need_citizen(legs)
        assert legs.agency is not None  # checked
        await self.ami_for(call).setvar(contract.VAR_CONSOLE_DONE, "handover", legs.operator.name)
        await self._release(call, citizen)
        await self.ami_for(call).bridge(citizen, legs.agency.name)
        self.handoffs.settled(call, legs.consulted or "", "handed_over")

    async def _cancel(self, call: str, legs: CallLegs, _agency: None) -> None:
        if legs.agency is None:
            # Between two legs (the agency's leg just ended): the dialplan takes the
            # operator back to the citizen on its own.
            return
        await self.ami_for(call).hangup(legs.agency.name)
        self.handoffs.settled(call, legs.consulted or "", "cancelled")

    async def _threeway(self, call: str, legs: CallLegs, agency: str | None) -> None:
        citizen = self._need_citizen(legs)
        operator = legs.operator.name
        if legs.state == "talking":
            assert agency is not None  # checked
            self.handoffs.requested(call, agency, "threeway")
            await self.hotline.transfer(operator, agency, TransferMode.CONFERENCE, citizen)
            return
        assert legs.agency is not None  # checked
        # The citizen first (the conference's marked member), then the agency's leg and the
        # operator's together, so neither is left alone in the consultation's bridge.
        await self.ami_for(call).setvar(contract.VAR_CONF_AGENCY, "", operator)
        await self.ami_for(call).setvar(contract.VAR_CONSOLE_DONE, "threeway", operator)
        await self._release(call, citizen)
        await self.ami_for(call).redirect(citizen, contract.CONTEXT_CONFERENCE,
                                          contract.EXTEN_CITIZEN, 1)
        await self.ami_for(call).send_action("Redirect", {
            "Channel": legs.agency.name, "Context": contract.CONTEXT_CONFERENCE,
            "Exten": "agency", "Priority": 1,
            "ExtraChannel": operator, "ExtraContext": contract.CONTEXT_CONFERENCE,
            "ExtraExten": contract.EXTEN_OPERATOR, "ExtraPriority": 1,
        })
        self.handoffs.settled(call, legs.consulted or "", "answered", mode="threeway")

    async def _leave(self, call: str, legs: CallLegs, _agency: None) -> None:
        await self.ami_for(call).hangup(legs.operator.name)

    async def _hold(self, call: str, legs: CallLegs, _agency: None) -> None:
        citizen = self._need_citizen(legs)
        operator = legs.operator.name
        await self.ami_for(call).setvar(contract.VAR_CONSOLE_CITIZEN, citizen, operator)
        await self._both_to(call, citizen, contract.EXTEN_HELD, operator, contract.EXTEN_HOLDING)

    async def _unhold(self, call: str, legs: CallLegs, _agency: None) -> None:
        citizen = self._need_citizen(legs)
        await self._release(call, citizen)
        await self.ami_for(call).bridge(legs.operator.name, citizen)

    async def _hangup(self, call: str, legs: CallLegs, _agency: None) -> None:
        ami = self.ami_for(call)
        if legs.citizen is None:
            await ami.hangup(legs.operator.name)
            return
        await ami.hangup(legs.citizen.name)
        try:
            await ami.hangup(legs.operator.name)
        except AMIActionError as exc:
            # The citizen's hang-up ended their bridge and took the operator's leg with it
            # before this Hangup arrived: the call is over, as asked.
            if exc.response.get("Message") != "No such channel":
                raise

    # -- plumbing ----------------------------------------------------------------------------

    def _need_citizen(self, legs: CallLegs) -> str:
        if legs.citizen is None:
            raise NotNow("the citizen has left the call")
        return legs.citizen.name

    async def _release(self, call: str, citizen: str) -> None:
        # The citizen leaves the hold for good: no longer owed a return to the queue when
        # the operator's leg ends (the dialplan's "gone" handler reads this).
        await self.ami_for(call).setvar(f"SHARED({contract.VAR_HELD})", "", citizen)

    async def _both_to(self, call: str, citizen: str, citizen_exten: str, operator: str,
                       operator_exten: str) -> None:
        # One Redirect for both legs: moving one alone would end the other's bridge under it.
        await self.ami_for(call).send_action("Redirect", {
            "Channel": citizen, "Context": contract.CONTEXT_CONSOLE,
            "Exten": citizen_exten, "Priority": 1,
            "ExtraChannel": operator, "ExtraContext": contract.CONTEXT_CONSOLE,
            "ExtraExten": operator_exten, "ExtraPriority": 1,
        })
