"""What a script hands a phone to dial: a server address, a destination, DTMF keys.

Pure checks, no pjsua2: everything here is hostile input until it passes, and is refused with
a ValueError that names it.
"""

from __future__ import annotations

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
