"""The feature codes operators use from any softphone: one table, rendered into the dialplan.

Two kinds:

* **Dialled codes** (a new call from the softphone, like dialling an extension): log in/out
  of the operators' queue and pause/unpause with a reason.
* **In-call codes** (DTMF keys during a call with a citizen): bridge the citizen to an agency
  blind, attended (consult first) or as a three-way conference. ``<d>`` is the agency's
  ``digit`` in the config (1 police ... 6 transport in the example city).

Keys were chosen so no code is a prefix of another (Asterisk then acts on the last key at
once, without waiting for more) and none clashes with another phase: ``*<d>``, ``**<d>`` and
``*0<d>`` in a call; ``#0``/``#1``/``#3``/``#4`` only while consulting an agency.
"""

from __future__ import annotations

from dataclasses import dataclass

# Dialled codes.
LOGIN_TOGGLE = "*45"  # logged out (or paused) -> logged in; logged in -> logged out
PAUSE = "*46"  # pause with reason "break"; *46<n> pauses with PAUSE_REASONS[n]
UNPAUSE = "*47"
PAUSE_REASONS = {1: "break", 2: "meal", 3: "briefing", 4: "technical"}
DEFAULT_PAUSE_REASON = "break"
LOGGED_OUT_REASON = "logged-out"  # the pause reason that means "not at the desk"

# In-call codes, per agency digit.
BLIND_PREFIX = "*"  # *<d>: the citizen goes to the agency; the operator is free
CONSULT_PREFIX = "**"  # **<d>: the operator talks to the agency first
CONFERENCE_PREFIX = "*0"  # *0<d>: citizen + operator + agency; the operator may leave

# While consulting an agency (Asterisk's attended-transfer keys).
CONSULT_COMPLETE = "#1"  # citizen and agency together, operator leaves
CONSULT_CANCEL = "#0"  # agency leg hung up, back to the citizen
CONSULT_THREEWAY = "#3"  # all three in one call
CONSULT_SWAP = "#4"  # talk alternately to citizen and agency

# Asterisk's own transfer keys (to any number; the number is keyed after the code).
BUILTIN_BLIND = "##"
BUILTIN_ATTENDED = "#*"


@dataclass(frozen=True)
class AgencyCodes:
    """The three in-call codes of one agency."""

    agency: str
    digit: int

    @property
    def blind(self) -> str:
        """Blind transfer to the agency."""
        return f"{BLIND_PREFIX}{self.digit}"

    @property
    def consult(self) -> str:
        """Attended transfer (consult the agency first)."""
        return f"{CONSULT_PREFIX}{self.digit}"

    @property
    def conference(self) -> str:
        """Three-way conference with the agency."""
        return f"{CONFERENCE_PREFIX}{self.digit}"


def agency_codes(agencies: list[tuple[str, int]] | tuple) -> list[AgencyCodes]:
    """In-call codes for ``(agency key, digit)`` pairs (or config Agency objects)."""
    out = []
    for item in agencies:
        key, digit = (item.key, item.digit) if hasattr(item, "key") else item
        out.append(AgencyCodes(key, int(digit)))
    return out
