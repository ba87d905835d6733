"""Which AMI security events are failed SIP authentication, and from which address."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping

# Failures a scanner or a password guesser causes; each counts against its source address.
# Not counted: ChallengeSent (every phone is challenged before it authenticates),
# SuccessfulAuth, and anything a plain call causes (an anonymous call to the hotline raises
# no security event at all).
FAILURE_EVENTS = frozenset({
    "InvalidAccountID",  # a user that does not exist
    "ChallengeResponseFailed",  # a wrong password answered to a digest challenge
    "InvalidPassword",
    "FailedACL",  # e.g. a REGISTER to the anonymous endpoint, which has no AOR
    "AuthMethodNotAllowed",
})


def remote_address(value: str) -> str | None:
    """The IP address in a security event's ``RemoteAddress`` (``IPV4/UDP/1.2.3.4/5060``).

    None for anything that is not an IP address: the value is the sender's to shape only
    through its packets' source, but a parse must never trust it to be well formed.
    """
    parts = value.split("/")
    if len(parts) < 4 or parts[0] not in ("IPV4", "IPV6"):
        return None
    host = "/".join(parts[2:-1]).strip("[]")
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return None


def auth_failure(fields: Mapping[str, str]) -> str | None:
    """The source address of a failed SIP authentication event, or None for any other event.

    Only res_pjsip's events count (``Service: PJSIP``): the manager interface reports its own
    failed logins with the same event names, and those come from loopback.
    """
    if fields.get("Event") not in FAILURE_EVENTS or fields.get("Service") != "PJSIP":
        return None
    return remote_address(fields.get("RemoteAddress", ""))
