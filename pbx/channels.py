"""What an Asterisk channel's name says about who it belongs to (pure, no I/O)."""

from __future__ import annotations

__all__ = ["endpoint_of"]


def endpoint_of(channel: str) -> str:
    """The PJSIP endpoint a channel belongs to: ``PJSIP/my-trunk-0000001f`` -> ``my-trunk``
    (the last ``-`` parts the endpoint from Asterisk's counter); '' for any other technology
    (``Local/...``), which names no endpoint a citizen or a phone could be reached on."""
    if not channel.startswith("PJSIP/"):
        return ""
    return channel[len("PJSIP/"):].rsplit("-", 1)[0]
