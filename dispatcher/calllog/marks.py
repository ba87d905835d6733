"""The facts the dialplan adds to a journey (``SIAGA_*`` marks) and what they say about the call.

The names are listed in the module docstring of :mod:`dispatcher.calllog.journey`. Marks that
only describe the call (menu choice, category, language, source address, self-test, incident)
are written into the record here; those that open or close legs (queue, recording, agency) are
steps of the journey.
"""

from __future__ import annotations

import json
import re
from urllib.parse import parse_qsl

from dialplans.contract import MARK_NAMES, MARK_PREFIX
from dispatcher.calllog.records import IvrChoiceRecord, JourneyRecord

__all__ = ["DIAL_APPS", "MARK_NAMES", "MARK_PREFIX", "describe", "mark_name", "user_extra"]

# Applications a channel runs while it is only the far end of a Dial (not running dialplan).
DIAL_APPS = frozenset({"", "appdial", "appdial2", "appqueue"})
# What the dialplan copies from CHANNEL(pjsip,remote_addr): an address and port, nothing else.
_SIP_SOURCE = re.compile(r"^(?:[0-9.]{7,15}|\[[0-9A-Fa-f:.]{2,45}\]):[0-9]{1,5}$")


def mark_name(name: str) -> str | None:
    """``NAME`` for a mark called ``SIAGA_NAME`` (a variable, user event or CEL event name);
    None for any other name."""
    if name.startswith(MARK_PREFIX) and name[len(MARK_PREFIX):] in MARK_NAMES:
        return name[len(MARK_PREFIX):]
    return None


def describe(record: JourneyRecord, t: float, name: str, value: str) -> bool:
    """Write a describing mark into ``record``; False when ``value`` is not one it can keep
    (an incident reference that is not a number). Marks that are steps change nothing here."""
    if name == "IVR":
        fields = dict(parse_qsl(value, keep_blank_values=True))
        choice = IvrChoiceRecord(
            t,
            fields.get("menu", ""),
            fields.get("digit", ""),
            fields.get("choice", ""),
            fields.get("lang") or None,
        )
        record.ivr_choices.append(choice)
        if choice.choice:
            record.category = choice.choice
        if choice.language:
            record.language = choice.language
    elif name == "CATEGORY":
        record.category = value or record.category
        pending = [c for c in record.ivr_choices if not c.choice]
        if value and pending:
            pending[-1].choice = value
    elif name == "LANGUAGE":
        record.language = value or record.language
    elif name == "FROM" and _SIP_SOURCE.match(value):
        record.sip_source = value
    elif name == "TEST":
        record.test = record.test or value == "1"
    elif name == "SUPERVISION":
        # A supervisor's listen/whisper/barge call: the center's own, like the self-test's,
        # kept but never reported nor owed a callback (dispatcher.calllog.models.Supervision
        # keeps who listened to whom).
        record.test = True
    elif name == "INCIDENT":
        try:
            record.incident_ref = int(value)
        except ValueError:
            return False
    return True


def user_extra(extra: str) -> str:
    """The text a dialplan gave ``CELGenUserEvent``; Asterisk wraps it as ``{"extra": ...}``."""
    text = extra.strip()
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except ValueError:
            return text
        if isinstance(data, dict):
            return str(data.get("extra", ""))
    return text
