"""Who a channel belongs to: the directory of the center's phones (operators, agencies) and the
channel technologies that carry no person.

A journey asks it once per channel (:meth:`Directory.classify`); the answer is the channel's
*role* (operator, agency, local, other) and, for staff, their code.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from dialplans import contract

__all__ = ["HELPER_TECHS", "Directory", "endpoint_of"]

# Channel technologies that carry no person: Local pairs, ConfBridge's announcer, recorders.
# They are "local" here: never a leg of their own, never counted in a conference.
HELPER_TECHS = frozenset({"local", "cbann", "cbrec", "announcer", "recorder", "snoop"})
_ENDPOINT = re.compile(r"^(?P<tech>[A-Za-z0-9_]+)/(?P<rest>.+)$")


def endpoint_of(channel: str) -> tuple[str, str]:
    """Split ``PJSIP/op101-0000000a`` into ``("PJSIP", "op101")``; Local keeps its ``exten@ctx``."""
    match = _ENDPOINT.match(channel)
    if match is None:
        return "", channel
    tech, rest = match.group("tech"), match.group("rest")
    if tech.lower() == "local":
        return tech, rest.split(";", 1)[0].rsplit("-", 1)[0]
    return tech, rest.rsplit("-", 1)[0] if "-" in rest else rest


@dataclass(frozen=True)
class Directory:
    """Maps SIP endpoints to operators and agencies (built from the center's config)."""

    operators: Mapping[str, str] = field(default_factory=dict)  # endpoint -> operator code
    agencies: Mapping[str, str] = field(default_factory=dict)  # endpoint -> agency code
    # Dialplan contexts where the center places calls itself (callbacks): a Local channel
    # running there makes its journey outbound.
    outbound_contexts: frozenset[str] = frozenset({contract.CONTEXT_CALLBACK,
                                                   contract.CONTEXT_ALERTS})

    @classmethod
    def from_center(cls, center: Any) -> Directory:
        """Build it from the center's config (``dispatcher.config.Center``).

        Operators are known by their extension; an agency by its key, on each of its phones
        and on its fallback number unless that number is an operator's or a supervisor's.
        """
        operators = {op.extension: op.extension for op in center.operators}
        staff = set(operators) | set(getattr(center, "supervisors", ()))
        agencies: dict[str, str] = {}
        for agency in center.agencies:
            for extension in agency.extensions:
                agencies[extension] = agency.key
            fallback = getattr(agency, "fallback", "")
            if fallback and fallback not in staff:
                agencies.setdefault(fallback, agency.key)
        return cls(operators=operators, agencies=agencies)

    def classify(self, channel: str) -> tuple[str, str | None]:
        """Return ``(role, code)`` for a channel name: operator, agency, local or other."""
        tech, endpoint = endpoint_of(channel)
        if tech.lower() in HELPER_TECHS:
            return "local", None
        if endpoint in self.operators:
            return "operator", self.operators[endpoint]
        if endpoint in self.agencies:
            return "agency", self.agencies[endpoint]
        return "other", None

    def operator_for_interface(self, interface: str) -> str | None:
        """The operator of a queue member interface: ``PJSIP/201`` or ``Local/201@ctx/n``."""
        tech, _, rest = interface.partition("/")
        if tech.lower() == "local":
            return self.operators.get(rest.split("@", 1)[0])
        return self.operators.get(rest) if rest else None
