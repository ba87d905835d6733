"""What each AMI event tells a journey: one function per event name (header names as
Asterisk 22 sends them), turning the event's fields into the journey's facts.

:class:`~dispatcher.calllog.journey.JourneyTracker` finds the journey an event belongs to and
calls the handler :data:`HANDLERS` names for it; each returns the effects of the facts it told.
Events not listed are not read.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from dialplans import contract
from dispatcher.calllog.machine import Journey
from dispatcher.calllog.marks import DIAL_APPS, mark_name, user_extra
from dispatcher.calllog.phases import Effect

if TYPE_CHECKING:
    from dispatcher.calllog.journey import JourneyTracker

__all__ = ["HANDLERS", "Handler"]

Handler = Callable[["JourneyTracker", Journey, dict[str, str], float], list[Effect]]


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def newchannel(tracker: JourneyTracker, j: Journey, e: dict[str, str], t: float) -> list[Effect]:
    return j.chan_start(
        t,
        e.get("Uniqueid", ""),
        e.get("Channel", ""),
        e.get("CallerIDNum", "").replace("<unknown>", ""),
        e.get("CallerIDName", "").replace("<unknown>", ""),
        e.get("Exten", ""),
    )


def newstate(tracker: JourneyTracker, j: Journey, e: dict[str, str], t: float) -> list[Effect]:
    if e.get("ChannelState") == "6" or e.get("ChannelStateDesc") == "Up":
        return j.answer(t, e.get("Uniqueid", ""))
    return []


def hangup(tracker: JourneyTracker, j: Journey, e: dict[str, str], t: float) -> list[Effect]:
    return j.hangup(t, e.get("Uniqueid", ""), _int(e.get("Cause")))


def varset(tracker: JourneyTracker, j: Journey, e: dict[str, str], t: float) -> list[Effect]:
    # Set(__NAME=...) (inherited by the channels the call creates) is reported with its
    # underscores.
    variable = e.get("Variable", "").lstrip("_")
    uid, value = e.get("Uniqueid", ""), e.get("Value", "")
    if variable == contract.VAR_CALL and value not in ("", j.linkedid):
        # The dialplan names the journey this channel serves: merge into it.
        return tracker.merge(j, value)
    if variable == contract.VAR_QPRIO:
        # The queue priority the dialplan gave the call: shown to the operator, not logged.
        j.queue_priority = _int(value)
        return []
    if variable == contract.VAR_CALLBACK_ID and j.callback_id is None:
        # Set by the server's originate on the operator's phone of a callback, before it
        # rings: the console's card knows the call from the first ring.
        j.callback_id = _int(value)
        return []
    if variable == contract.VAR_CITIZEN:
        # The hotline dialplan marks the channel it runs on as the citizen's.
        return j.adopt_origin(uid)
    mark = mark_name(variable)
    if mark is not None:
        return j.mark(t, uid, mark, value)
    if variable == "MIXMONITOR_FILENAME":
        return j.recording_start(t, uid, value)
    return []


def userevent(tracker: JourneyTracker, j: Journey, e: dict[str, str], t: float) -> list[Effect]:
    name = e.get("UserEvent", "")
    mark = mark_name(name)
    if mark is not None:
        return j.mark(t, e.get("Uniqueid", ""), mark, e.get("Value", ""))
    return []


def cel(tracker: JourneyTracker, j: Journey, e: dict[str, str], t: float) -> list[Effect]:
    # CEL over AMI (cel.conf [manager]): the dialplan's own facts, and the ends of channels
    # and journeys as a second account of them, in case a Hangup event never arrived. The
    # rest duplicates AMI's own events.
    name = e.get("EventName", "")
    if name == "USER_DEFINED":
        name = e.get("UserDefType", "")
    uid = e.get("UniqueID", e.get("Uniqueid", ""))
    mark = mark_name(name)
    if mark is not None:
        return j.mark(t, uid, mark, user_extra(e.get("Extra", "")))
    if name in ("HANGUP", "CHAN_END"):
        extra = e.get("Extra", "")
        cause = None
        if extra.startswith("{"):
            try:
                cause = _int(json.loads(extra).get("hangupcause"))
            except (ValueError, AttributeError):
                cause = None
        return j.hangup(t, uid, cause)
    effects: list[Effect] = []
    if name == "LINKEDID_END":
        for chan in list(j.channels.values()):
            effects += j.hangup(t, chan.uid)
    return effects


def queue_join(tracker: JourneyTracker, j: Journey, e: dict[str, str], t: float) -> list[Effect]:
    return j.queue_join(
        t,
        e.get("Uniqueid", ""),
        e.get("Queue", ""),
        e.get("CallerIDNum", "").replace("<unknown>", ""),
    )


def queue_leave(tracker: JourneyTracker, j: Journey, e: dict[str, str], t: float) -> list[Effect]:
    return j.queue_leave(t, e.get("Uniqueid", ""))


def queue_abandon(tracker: JourneyTracker, j: Journey, e: dict[str, str], t: float) -> list[Effect]:
    return j.queue_leave(t, e.get("Uniqueid", ""), abandoned=True)


def agent_connect(tracker: JourneyTracker, j: Journey, e: dict[str, str], t: float) -> list[Effect]:
    effects = j.event(t, "agent_connect", e.get("Channel", ""),
                      member=e.get("MemberName", ""))
    code = tracker.directory.operator_for_interface(e.get("Interface", ""))
    if code is None:
        role, found = tracker.directory.classify(e.get("DestChannel", ""))
        code = found if role == "operator" else None
    return effects + j.member_connected(t, e.get("DestUniqueid", ""), code)


def bridge_enter(tracker: JourneyTracker, j: Journey, e: dict[str, str], t: float) -> list[Effect]:
    return j.bridge_enter(t, e.get("Uniqueid", ""), e.get("BridgeUniqueid", ""))


def bridge_leave(tracker: JourneyTracker, j: Journey, e: dict[str, str], t: float) -> list[Effect]:
    return j.bridge_exit(t, e.get("Uniqueid", ""), e.get("BridgeUniqueid", ""))


def dial_begin(tracker: JourneyTracker, j: Journey, e: dict[str, str], t: float) -> list[Effect]:
    effects: list[Effect] = []
    dest = e.get("DestUniqueid", "")
    if dest and dest not in tracker.by_uid:
        # The destination's Newchannel normally came first; if not, create it now.
        tracker.by_uid[dest] = j
        effects += j.chan_start(
            t,
            dest,
            e.get("DestChannel", ""),
            e.get("DestCallerIDNum", ""),
            e.get("DestCallerIDName", ""),
            e.get("DestExten", ""),
        )
    effects += j.event(t, "dial_begin", e.get("Channel", ""), to=e.get("DestChannel", ""))
    dial_string = e.get("DialString", "")
    if dial_string:
        # "trunk/0812..." or "0812...@trunk": the number is the part without the route.
        number = dial_string.rsplit("/", 1)[-1].split("@", 1)[0]
        effects += j.dialed_number(dest, number)
    return effects


def dial_end(tracker: JourneyTracker, j: Journey, e: dict[str, str], t: float) -> list[Effect]:
    return j.dial_end(t, e.get("DestUniqueid", ""), e.get("DialStatus", ""))


def transfer(tracker: JourneyTracker, j: Journey, e: dict[str, str], t: float) -> list[Effect]:
    return j.event(
        t,
        e.get("Event", "").lower(),
        e.get("TransfererChannel", e.get("OrigTransfererChannel", "")),
        result=e.get("Result", ""),
        to=e.get("Extension", e.get("SecondTransfererChannel", "")),
    )


def mixmonitor_stop(
    tracker: JourneyTracker, j: Journey, e: dict[str, str], t: float
) -> list[Effect]:
    return j.recording_stop(t, e.get("Uniqueid", ""))


def newexten(tracker: JourneyTracker, j: Journey, e: dict[str, str], t: float) -> list[Effect]:
    application = e.get("Application", "").lower()
    uid = e.get("Uniqueid", "")
    effects: list[Effect] = []
    if application not in DIAL_APPS:
        # A channel running the dialplan, in a journey of Local channels only so far: the
        # hotline runs on it (a call originated into the hotline through a Local channel).
        # Once the record is open the table ignores it.
        effects += j.adopt_origin(uid)
    if application == "mixmonitor":
        effects += j.recording_start(t, uid, e.get("AppData", "").split(",", 1)[0])
    return effects


def dtmf(tracker: JourneyTracker, j: Journey, e: dict[str, str], t: float) -> list[Effect]:
    if e.get("Direction", "Received") == "Received":
        return j.dtmf(t, e.get("Uniqueid", ""), e.get("Digit", ""), e.get("Context", ""))
    return []


def nothing(tracker: JourneyTracker, j: Journey, e: dict[str, str], t: float) -> list[Effect]:
    """Events read only for the caller ID every event carries (see ``step``)."""
    return []


def note(tracker: JourneyTracker, j: Journey, e: dict[str, str], t: float) -> list[Effect]:
    return j.event(t, e.get("Event", "").lower(), e.get("Channel", ""))


HANDLERS: dict[str, Handler] = {
    "newchannel": newchannel,
    "newstate": newstate,
    "hangup": hangup,
    "varset": varset,
    "userevent": userevent,
    "cel": cel,
    "queuecallerjoin": queue_join,
    "queuecallerleave": queue_leave,
    "queuecallerabandon": queue_abandon,
    "agentcalled": note,
    "agentringnoanswer": note,
    "agentconnect": agent_connect,
    "agentcomplete": note,
    "agentdump": note,
    "bridgeenter": bridge_enter,
    "bridgeleave": bridge_leave,
    "dialbegin": dial_begin,
    "dialend": dial_end,
    "blindtransfer": transfer,
    "attendedtransfer": transfer,
    "mixmonitorstart": note,
    "mixmonitorstop": mixmonitor_stop,
    "confbridgejoin": bridge_enter,
    "confbridgeleave": bridge_leave,
    "cdr": note,
    "newexten": newexten,
    "newcallerid": nothing,
    "dtmfend": dtmf,
}
