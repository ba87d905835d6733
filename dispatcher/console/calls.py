"""Which calls belong to which desk, read from the AMI live model.

An operator may act only on their own calls: a call (a linkedid) is theirs while one of its
channels is on their phone's endpoint (``PJSIP/<extension>-...``). Every console action
asks :func:`owns_call` or :func:`owns_channel` with the session's extension first; a channel
or linkedid sent by a page is never trusted for more than the lookup.
"""

from __future__ import annotations

from pbx.ami.entities import Channel, uniqueid_order
from pbx.ami.model import LiveModel

__all__ = ["ConsoleError", "NotYourCall", "desk_channels", "desk_of", "owns_call",
           "owns_channel", "require_call"]


class ConsoleError(Exception):
    """A console request that cannot be carried out (a refusal, with its reason)."""


class NotYourCall(ConsoleError):
    """The call or channel is not on the asking operator's phone."""


def desk_of(channel_name: str) -> str | None:
    """The endpoint a ``PJSIP/<endpoint>-<seq>`` channel is on (None for other channels)."""
    if not channel_name.startswith("PJSIP/"):
        return None
    rest = channel_name[len("PJSIP/"):]
    endpoint, sep, _seq = rest.rpartition("-")
    return endpoint if sep and endpoint else None


def desk_channels(model: LiveModel, extension: str) -> list[Channel]:
    """The live channels on ``extension``'s phone, oldest first."""
    return sorted((c for c in model.channels.values() if desk_of(c.name) == extension),
                  key=lambda c: uniqueid_order(c.uniqueid))


def owns_channel(model: LiveModel, extension: str, channel_name: str) -> bool:
    """True when ``channel_name`` is live and on ``extension``'s phone, or is another channel
    of a call that has a channel on it (the citizen's leg of the operator's call)."""
    channel = next((c for c in model.channels.values() if c.name == channel_name), None)
    if channel is None:
        return False
    if desk_of(channel.name) == extension:
        return True
    return owns_call(model, extension, channel.linkedid)


def owns_call(model: LiveModel, extension: str, linkedid: str) -> bool:
    """True when the call ``linkedid`` has a live channel on ``extension``'s phone."""
    if not linkedid:
        return False
    return any(desk_of(c.name) == extension for c in model.channels_of(linkedid))


def require_call(model: LiveModel, extension: str, linkedid: str) -> None:
    """Raise :class:`NotYourCall` unless ``linkedid`` is on ``extension``'s phone."""
    if not owns_call(model, extension, linkedid):
        raise NotYourCall(f"call {linkedid[:40]!r} is not on desk {extension}'s phone")
