"""The caller ID a citizen sends is hostile input: the one definition of a safe number and name.

Asterisk copies a SIP caller's From user (percent-escapes decoded) into ``CALLERID(num)`` and
writes it unescaped into AMI events and CEL rows. The dialplan's ``siaga-caller-id`` context
(``dialplans/templates/extensions.conf.j2``) cleans it before anything else runs, with the
limits below; the anonymous endpoint's own caller ID (``ANONYMOUS_NUMBER``, pjsip.conf) keeps
the From out of the channel's first events. The call log keeps only numbers and names that
pass :func:`safe_number` and :func:`safe_name`, whatever Asterisk reported.
"""

from __future__ import annotations

import re

from dialplans.contract import ANONYMOUS_NAME, ANONYMOUS_NUMBER
from dialplans.contract import CALLERID_MAX_DIGITS as MAX_DIGITS
from dialplans.contract import CALLERID_MAX_NAME as MAX_NAME

__all__ = ["ANONYMOUS_NAME", "ANONYMOUS_NUMBER", "MAX_DIGITS", "MAX_NAME", "safe_name",
           "safe_number"]

# MAX_DIGITS, MAX_NAME and the anonymous caller ID are the dialplan's too (dialplans.contract).

_NUMBER_RE = re.compile(rf"^\+?[0-9]{{1,{MAX_DIGITS}}}$")
_NAME_RE = re.compile(rf"^[A-Za-z0-9 ._+-]{{1,{MAX_NAME}}}$")


def safe_number(value: str | None) -> str:
    """``value`` if it is a number the dialplan could have produced (digits, one leading +,
    at most ``MAX_DIGITS``), else ``''`` (withheld, placeholder, or not to be trusted)."""
    return value if value and _NUMBER_RE.match(value) else ""


def safe_name(value: str | None) -> str:
    """``value`` if it is a plain caller name (letters, digits, space, ``._+-``), else ``''``."""
    return value if value and _NAME_RE.match(value) else ""
