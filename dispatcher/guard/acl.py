"""The blocked addresses as res_pjsip ACL configuration (the file pjsip.conf includes)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from dispatcher.guard.policy import Block

ACL_SECTION = "siaga-guard"


def render_acl(blocks: Iterable[Block]) -> str:
    """pjsip.conf text refusing every blocked address; a comment alone when none is.

    Each address is re-parsed before it is written, so only an IP address (never text a
    sender shaped) reaches Asterisk's configuration. One deny per line: res_pjsip stops at
    the first request from a denied source and answers it 403 without a transaction.
    """
    lines = ["; Written by the siaga server (dispatcher.guard) while it runs; never edit.",
             "; Sources that kept failing SIP authentication, refused until their block ends."]
    denies = []
    for block in blocks:
        ip = ipaddress.ip_address(block.address)
        denies.append(f"deny = {ip}/{ip.max_prefixlen}")
    if denies:
        lines += ["", f"[{ACL_SECTION}]", "type = acl", *denies]
    return "\n".join(lines) + "\n"
