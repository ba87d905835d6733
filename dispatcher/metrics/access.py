"""Who may read the center's metrics: configured addresses, or the bearer token (pure).

The client's address is the TCP peer's: a ``X-Forwarded-For`` header is not believed (anyone
could send one).
"""

from __future__ import annotations

import hmac
import ipaddress

from dispatcher.config.model import MetricsAccess

__all__ = ["refusal"]


def refusal(access: MetricsAccess, host: str | None, authorization: bytes | None
            ) -> str | None:
    """Why a scrape from ``host`` with this ``Authorization`` header is refused, or None."""
    if access.token is not None and authorization is not None:
        scheme, _, given = authorization.partition(b" ")
        if scheme.lower() == b"bearer" and hmac.compare_digest(
                given.strip(), access.token.encode()):
            return None
    try:
        address = ipaddress.ip_address((host or "").split("%")[0])
    except ValueError:
        address = None
    if address is not None:
        if getattr(address, "ipv4_mapped", None) is not None:
            address = address.ipv4_mapped  # type: ignore[union-attr]
        if any(address in net for net in access.allow):
            return None
    if access.token is not None:
        return "metrics are served to configured addresses or with the bearer token"
    return "metrics are served to configured addresses only"
