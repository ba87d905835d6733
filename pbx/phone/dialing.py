"""What a script hands a phone to dial: a server address, a destination, DTMF keys.

Pure checks, no pjsua2: everything here is hostile input until it passes, and is refused with
a ValueError that names it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

DTMF_DIGITS = frozenset("0123456789*#ABCDabcd")


def split_hostport(server: str) -> tuple[str, int]:
    """``"host:port"`` (or ``"host"``, port 5060) to ``(host, port)``; raises ValueError."""
    host, sep, port = server.rpartition(":")
    if not sep:
        host, port = server, "5060"
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"not host:port: {server!r}")
    return host, int(port)


def target_uri(dest: str, server: str | None) -> str:
    """The SIP URI to dial: ``dest`` as is if it is a URI, else ``sip:dest@server``."""
    if any(c in dest for c in "\r\n\0<> "):
        raise ValueError(f"bad destination {dest!r}")
    if dest.startswith(("sip:", "sips:")):
        return dest
    if server is None:
        raise ValueError(f"{dest!r} is not a SIP URI and the phone has no server")
    return f"sip:{dest}@{server}"


def check_dtmf(digits: str) -> str:
    """Return ``digits`` if every one is a DTMF key (0-9 * # A-D), else raise ValueError."""
    if not digits or any(d not in DTMF_DIGITS for d in digits):
        raise ValueError(f"not DTMF digits: {digits!r}")
    return digits


_TOKEN = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$&-^_.+")


@dataclass(frozen=True)
class BodyPart:
    """One part of a multipart INVITE body besides the SDP (a PIDF-LO location, say):
    its ``type/subtype``, text, and headers of its own (``Content-ID``)."""

    content_type: str
    body: str
    headers: tuple[tuple[str, str], ...] = ()

    def media_type(self) -> tuple[str, str]:
        """``(type, subtype)``; raises ValueError for anything but two RFC 3261 tokens, or a
        header or body with a NUL (a header with a line break too)."""
        kind, sep, sub = self.content_type.partition("/")
        if not sep or not kind or not sub or not set(kind + sub) <= _TOKEN:
            raise ValueError(f"bad content type {self.content_type!r}")
        for name, value in self.headers:
            if not name or not set(name) <= _TOKEN or any(c in value for c in "\r\n\0"):
                raise ValueError(f"bad body part header {name!r}")
        if "\0" in self.body:
            raise ValueError("a body part holds a NUL")
        return kind, sub


def check_parts(parts: Sequence[BodyPart]) -> list[tuple[str, str]]:
    """Each part's ``(type, subtype)``, all checked first (:meth:`BodyPart.media_type`)."""
    return [part.media_type() for part in parts]
