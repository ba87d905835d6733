"""The SIP guard: sources that keep failing SIP authentication are refused for a while.

Asterisk reports every failed registration or challenge as an AMI security event
(``events``); the policy counts them per source address in a sliding window and decides
blocks and their expiry (``policy``, sans-IO); the service renders the blocked addresses as
a res_pjsip ACL, writes it beside the generated pjsip.conf and has Asterisk reload it
(``acl``, ``service``). The ACL module runs before anything else in res_pjsip, so a blocked
source gets a stateless 403 for every request: no endpoint lookup, no challenge, no dialplan.
"""

from dispatcher.guard.events import FAILURE_EVENTS, auth_failure
from dispatcher.guard.policy import Block, GuardPolicy
from dispatcher.guard.service import GUARD_FILE, SipGuardService

__all__ = ["FAILURE_EVENTS", "GUARD_FILE", "Block", "GuardPolicy", "SipGuardService",
           "auth_failure"]
