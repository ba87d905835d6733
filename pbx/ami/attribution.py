"""Which AMI events the server may believe: its own dialplan's user events, signed per boot.

Asterisk writes a caller's From user (percent-escapes decoded) unescaped into every event of
the caller's channel (``CallerIDNum``), so a caller ID holding CR LF can end one event early
and make the rest of it, or text of the caller's choosing, look like another event: a
``UserEvent: SiagaCallbackResult`` that closes a callback, say. The parser cannot tell such
an event from a real one; only something the caller cannot know can.

So the server makes a random key when it starts (:class:`EventKey`) and, after every AMI
login and every reload, sets it as the Asterisk global ``SIAGA_EVENT_KEY``. The dialplan's
user events that change the server's state (:func:`dialplan_user_event` renders them) carry
``Signed`` (the names of their headers, in order) and ``Mac``: the SHA-1 of the key, the
event's name and each signed header's ``name=value``, joined by ``|`` (Asterisk's ``SHA1()``
computes it in the dialplan). :meth:`EventKey.verify` recomputes it. An event is refused when
its Mac is wrong or missing, when a header the server reads is not signed, or when any header
repeats or a line is not ``Key: Value``: text injected in front of a real signed event (whose
headers then follow it) shows up as repeated headers. The caller never sees the key: it lives
in the server's memory and in an Asterisk global, and reaches no SIP message.

Pure: no reactor, no I/O besides the one ``Setvar`` :meth:`EventKey.install` sends.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable, Sequence
from typing import Any

from twisted.logger import Logger

from dialplans.contract import MAC_HEADER, SIGNED_HEADER, VAR_EVENT_KEY, dialplan_user_event

__all__ = ["KEY_VARIABLE", "EventKey", "dialplan_user_event"]

log = Logger(namespace="pbx.ami.attribution")

#: The Asterisk global variable that holds the key (set by the server over AMI).
KEY_VARIABLE = VAR_EVENT_KEY


class EventKey:
    """The per-boot secret the dialplan signs the server's user events with."""

    def __init__(self, key: str | None = None) -> None:
        self.key = key if key is not None else secrets.token_hex(16)
        if not re.match(r"^[0-9A-Za-z]{16,128}$", self.key):
            raise ValueError("an event key is 16-128 letters and digits")
        self.refused = 0  # events refused so far (tests and the logs read it)

    def __repr__(self) -> str:  # the key never reaches a log line
        return "<EventKey>"

    def install(self, ami: Any) -> Any:
        """Set the key as Asterisk's global ``SIAGA_EVENT_KEY`` (``ami.setvar``); a Deferred."""
        return ami.setvar(KEY_VARIABLE, self.key)

    def mac(self, name: str, fields: Sequence[tuple[str, str]]) -> str:
        """The Mac the dialplan computes for event ``name`` with these header values."""
        material = "|".join([self.key, name, *(f"{h}={v}" for h, v in fields)])
        return hashlib.sha1(material.encode("utf-8")).hexdigest()  # noqa: S324 (Asterisk's SHA1)

    def sign(self, name: str, fields: Sequence[tuple[str, str]]) -> dict[str, str]:
        """The headers the dialplan sends for a signed event (tests build events with it)."""
        return {"Event": "UserEvent", "UserEvent": name, **dict(fields),
                SIGNED_HEADER: " ".join(h for h, _ in fields), MAC_HEADER: self.mac(name, fields)}

    def verify(self, event: Any, reads: Iterable[str]) -> bool:
        """True when ``event`` (a ``pbx.ami.protocol.Message``) is the dialplan's own signed
        user event and every header in ``reads`` is among the signed ones; else False, logged.
        """
        fields = getattr(event, "fields", event)
        name = fields.get("UserEvent", "")
        why = self._problem(event, fields, name, tuple(reads))
        if why is None:
            return True
        self.refused += 1
        log.warn("Refused an unattributable AMI user event {name!r} ({why}); it may be forged "
                 "through a caller ID: {fields!r}", name=name[:40], why=why,
                 fields={k: v[:80] for k, v in list(fields.items())[:30]})
        return False

    def _problem(self, event: Any, fields: Any, name: str, reads: tuple[str, ...]) -> str | None:
        if getattr(event, "multi", None):
            return f"repeated headers {sorted(event.multi)}"
        if getattr(event, "unparsed", ()):
            return "lines that are not 'Key: Value'"
        signed_text = fields.get(SIGNED_HEADER, "")
        mac = fields.get(MAC_HEADER, "")
        if not signed_text or not mac:
            return "not signed"
        signed = signed_text.split(" ")
        if len(set(signed)) != len(signed) or {SIGNED_HEADER, MAC_HEADER} & set(signed):
            return "bad Signed list"
        missing = [h for h in reads if h not in signed]
        if missing:
            return f"headers read but not signed: {missing}"
        values = [(h, fields.get(h, "")) for h in signed]
        if not hmac.compare_digest(self.mac(name, values), mac.strip().lower()):
            return "wrong Mac"
        return None


def key_of(ami: Any) -> EventKey | None:
    """The :class:`EventKey` an AMI service carries (``ami.event_key``), if any."""
    key = getattr(ami, "event_key", None)
    return key if isinstance(key, EventKey) else None
