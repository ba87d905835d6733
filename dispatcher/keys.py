"""Per-purpose keys derived from the center's one master key (HKDF-SHA256, RFC 5869).

A key the server must hold itself (it signs or checks HMACs with it) cannot be stored as a
hash. Instead of storing each such key, the center keeps one random master key in its
secrets file (0600, root's) and derives every purpose's key from it with a distinct label:
the console's session-signing key, each panic-button device's HMAC key. A derived key that
leaks (a device's key read off the phone it was given to) reveals neither the master key nor
any other key, and a stolen database holds only labels, no device key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

__all__ = ["DERIVED_PREFIX", "derive", "device_key", "is_derived", "new_device_label"]

# How a device's stored HMAC key field says "derived; this is the label", not the key.
DERIVED_PREFIX = "hkdf$"
_HASH_LEN = 32


def derive(master: bytes, purpose: str, length: int = 32) -> bytes:
    """HKDF-SHA256 of ``master`` for ``purpose`` (the ``info``; no salt: the master key is
    already uniformly random)."""
    if not master:
        raise ValueError("no master key")
    if not 0 < length <= 255 * _HASH_LEN:
        raise ValueError(f"cannot derive {length} bytes")
    prk = hmac.new(b"\0" * _HASH_LEN, master, hashlib.sha256).digest()
    out, block, counter = b"", b"", 1
    while len(out) < length:
        block = hmac.new(prk, block + purpose.encode("utf-8") + bytes([counter]),
                         hashlib.sha256).digest()
        out += block
        counter += 1
    return out[:length]


def new_device_label() -> str:
    """What a device's HMAC key field stores: a random label, never the key."""
    return DERIVED_PREFIX + secrets.token_urlsafe(12)


def is_derived(stored: str | None) -> bool:
    """True when a device's stored key field is a derivation label."""
    return stored is not None and stored.startswith(DERIVED_PREFIX)


def device_key(master: bytes, device_id: str, label: str) -> str:
    """The HMAC key of device ``device_id`` enrolled with ``label`` (what the device is
    given, URL-safe base64). Re-enrolling a device gives it a new label, so a new key."""
    raw = derive(master, f"siaga device hmac v1\0{device_id}\0{label}")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")
