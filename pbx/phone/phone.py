"""Scriptable SIP phones on the process's :class:`~pbx.phone.stack.SipStack`.

A :class:`Phone` is one pjsua2 account on its own UDP (or TLS) port: an extension registered
to a registrar with a username and password, or an anonymous caller (a citizen) that registers
nowhere. A :class:`~pbx.phone.call.Call` is one of its calls. Every method is synchronous: the
waits pump the stack until a condition holds or a deadline passes, so scripts and tests read
top to bottom.

pjsua2 objects are created and destroyed on the stack's thread only. Python callbacks from
pjsua2 never raise into it (that aborts the process): they hand exceptions to the stack, which
re-raises them from the next pump.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable, Sequence

import pjsua2 as pj

from pbx.phone.call import Call
from pbx.phone.dialing import DTMF_DIGITS, BodyPart, check_dtmf, split_hostport, target_uri
from pbx.phone.errors import CallFailed, PhoneError, PhoneTimeout
from pbx.phone.events import CallState, PhoneEvent
from pbx.phone.limits import CLOCK_RATE, MAX_CALLS
from pbx.phone.stack import SipStack, guarded

# Call, CallState, the errors, the limits and the dialing checks have homes of their own;
# scripts written before they moved import them from here, so they stay importable.
__all__ = [
    "CLOCK_RATE", "DTMF_DIGITS", "MAX_CALLS", "SRTP_USE", "Call", "CallFailed", "CallState",
    "Phone", "PhoneError", "PhoneEvent", "PhoneTimeout", "SipStack", "check_dtmf",
    "split_hostport", "target_uri",
]

# A phone's SRTP setting and pjsua's for it.
SRTP_USE = {"off": pj.PJMEDIA_SRTP_DISABLED, "optional": pj.PJMEDIA_SRTP_OPTIONAL,
            "mandatory": pj.PJMEDIA_SRTP_MANDATORY}


class _PjAccount(pj.Account):
    """pjsua2's account; forwards callbacks to its :class:`Phone` (held weakly: no cycle)."""

    def __init__(self, phone: Phone) -> None:
        super().__init__()
        self._phone_ref = weakref.ref(phone)

    def owner_stack(self) -> SipStack | None:
        """The stack of the phone this object forwards to (None once it is gone)."""
        phone = self._phone_ref()
        return phone.stack if phone is not None else None

    @guarded
    def onRegState(self, prm: pj.OnRegStateParam) -> None:  # noqa: N802 - pjsua2 name
        phone = self._phone_ref()
        if phone is not None:
            phone._on_reg_state(int(prm.code), prm.reason, int(prm.expiration))

    @guarded
    def onIncomingCall(self, prm: pj.OnIncomingCallParam) -> None:  # noqa: N802
        phone = self._phone_ref()
        if phone is not None:
            phone._on_incoming(prm.callId)


class Phone:
    """A SIP phone on a :class:`SipStack`: an extension, or an anonymous caller.

    ``server`` is the registrar/proxy as ``host:port``; with ``password`` the phone registers
    there as ``user``, without one it only places calls (``sip:user@127.0.0.1:port`` reaches it
    directly, with no registrar). Use it as a context manager or call :meth:`close`.
    """

    def __init__(
        self,
        stack: SipStack,
        user: str,
        *,
        server: str | None = None,
        password: str | None = None,
        display_name: str | None = None,
        register: bool | None = None,
        auto_ring: bool = True,
        on_event: Callable[[PhoneEvent], None] | None = None,
        name: str | None = None,
        tls: bool = False,
        tls_ca: str | None = None,
        srtp: str = "off",
    ) -> None:
        stack.check_thread()
        if not user or any(c in user for c in "@:;<> \r\n\0"):
            raise ValueError(f"bad SIP user {user!r}")
        if server is not None:
            split_hostport(server)
        self.stack = stack
        self.user = user
        self.server = server
        self.name = name or user
        self.password = password
        # SIP over TLS to ``server`` (checked against the CA file ``tls_ca`` if given), and
        # SRTP: "off", "optional" (offered and accepted, plain RTP too) or "mandatory" (a
        # call without it fails).
        if srtp not in SRTP_USE:
            raise ValueError(f"srtp must be one of {', '.join(SRTP_USE)}, not {srtp!r}")
        self.tls = tls
        self.srtp = srtp
        self.register = bool(password and server) if register is None else register
        if self.register and not server:
            raise ValueError("a registering phone needs a server")
        self.auto_ring = auto_ring
        self.on_event = on_event
        self.events: list[PhoneEvent] = []
        self.calls: list[Call] = []
        self._incoming: list[Call] = []
        self._closed = False
        self.reg_code: int | None = None
        self.reg_reason = ""
        self.reg_expires = 0
        started = time.monotonic()
        stack.attach(self)
        try:
            self._transport, self.port = stack.create_transport(tls, tls_ca)
            self._account = _PjAccount(self)
            self._account.create(self._config(display_name))
        except BaseException:
            self._account = None
            if hasattr(self, "_transport"):
                stack.close_transport(self._transport)
            stack.detach(self)
            raise
        self.created_in = time.monotonic() - started

    def _config(self, display_name: str | None) -> pj.AccountConfig:
        cfg = pj.AccountConfig()
        domain = split_hostport(self.server)[0] if self.server else self.stack.bind
        ident = f"sip:{self.user}@{domain}"
        cfg.idUri = f'"{display_name}" <{ident}>' if display_name else ident
        cfg.sipConfig.transportId = self._transport
        # The Contact names this phone's own port, so other phones can call it directly.
        cfg.sipConfig.contactForced = (
            f"<sip:{self.user}@{self.stack.bind}:{self.port}{self._uri_params}>")
        if self.register:
            cfg.regConfig.registrarUri = f"sip:{self.server}{self._uri_params}"
            cfg.regConfig.timeoutSec = 300
            cfg.regConfig.retryIntervalSec = 0  # a failed registration is a test failure
            cfg.regConfig.registerOnAdd = True
        else:
            cfg.regConfig.registerOnAdd = False
        if self.password:
            cfg.sipConfig.authCreds.append(
                pj.AuthCredInfo("digest", "*", self.user, 0, self.password)
            )
        nat = cfg.natConfig
        # Everything runs on 127.0.0.1: no NAT tricks, no ICE/STUN, no SIP outbound (RFC 5626).
        nat.iceEnabled = False
        nat.sipStunUse = pj.PJSUA_STUN_USE_DISABLED
        nat.mediaStunUse = pj.PJSUA_STUN_USE_DISABLED
        nat.contactRewriteUse = 0
        nat.viaRewriteUse = 0
        nat.sdpNatRewriteUse = 0
        nat.sipOutboundUse = 0
        nat.udpKaIntervalSec = 0
        cfg.mediaConfig.srtpUse = SRTP_USE[self.srtp]
        # SDES keys ride in the SDP; pjsua would otherwise insist on sips: URIs, which
        # Asterisk's contacts do not use. (Whether the SIP runs over TLS is ``tls``.)
        cfg.mediaConfig.srtpSecureSignaling = 0
        tp = cfg.mediaConfig.transportConfig
        tp.boundAddress = self.stack.bind
        tp.publicAddress = self.stack.bind
        tp.port = self.stack.rtp_port
        tp.portRange = 2000
        return cfg

    @property
    def _uri_params(self) -> str:
        return ";transport=tls" if self.tls else ""

    def __repr__(self) -> str:
        return f"<Phone {self.name} sip:{self.user}@{self.stack.bind}:{self.port}>"

    @property
    def uri(self) -> str:
        """The URI that reaches this phone directly, without a registrar."""
        return f"sip:{self.user}@{self.stack.bind}:{self.port}"

    # -- events ---------------------------------------------------------------------------------

    def note_event(self, kind: str, detail: str = "", call: Call | None = None) -> None:
        """Record something that happened to this phone or one of its calls (and tell
        ``on_event``)."""
        event = PhoneEvent(time.monotonic(), self.name, kind, detail, call.id if call else None)
        self.events.append(event)
        if self.on_event is not None:
            self.on_event(event)

    def _on_reg_state(self, code: int, reason: str, expires: int) -> None:
        self.reg_code = code
        self.reg_reason = reason
        self.reg_expires = expires
        self.note_event("registration", f"{code} {reason} expires={expires}")

    def new_call(self, call_id: int, direction: str) -> Call:
        """Track a new call of this phone: pjsua's ``call_id`` (``pj.PJSUA_INVALID_ID`` for
        one not placed yet); ``direction`` says how it came (incoming, outgoing, transfer...)."""
        call = Call(self, self._account, call_id, direction)
        self.calls.append(call)
        return call

    def _on_incoming(self, call_id: int) -> None:
        call = self.new_call(call_id, "incoming")
        call.refresh()
        self._incoming.append(call)
        self.note_event("incoming", call.remote_uri, call)
        if self.auto_ring:
            call.ring()

    def reap(self) -> None:
        """Free the pjsua2 objects of calls that are over (finishes their WAVs).

        The stack calls it between pumps, outside pjsua2's callbacks.
        """
        for call in self.calls:
            if call.state == CallState.DISCONNECTED and not call.released:
                call.release()

    # -- registration ---------------------------------------------------------------------------

    @property
    def registered(self) -> bool:
        """True while the registrar holds a binding for this phone."""
        return self.reg_code is not None and 200 <= self.reg_code < 300 and self.reg_expires > 0

    def wait_registered(self, timeout: float = 5.0) -> Phone:
        """Wait for the registrar to accept us; raise :class:`PhoneError` if it refuses."""

        def done() -> bool:
            if self.reg_code is not None and self.reg_code >= 300:
                raise PhoneError(
                    f"{self!r} registration refused: {self.reg_code} {self.reg_reason}"
                )
            return self.registered

        self.stack.wait_until(done, timeout, f"registration of {self!r}")
        return self

    def unregister(self, timeout: float = 2.0) -> None:
        """Remove our binding at the registrar and wait for its answer."""
        self.stack.check_thread()
        if not self.register or self._account is None or not self.registered:
            return
        self._account.setRegistration(False)
        self.stack.wait_until(
            lambda: not self.registered or self.reg_code is None,
            timeout,
            f"unregistration of {self!r}",
        )

    # -- calls ----------------------------------------------------------------------------------

    def call(self, dest: str, *, headers: dict[str, str] | None = None,
             parts: Sequence[BodyPart] = ()) -> Call:
        """Place a call to ``dest`` (an extension at our server, or a SIP URI); ``parts``
        go in a multipart body with the SDP (:meth:`Call.place`)."""
        self.stack.check_thread()
        uri = target_uri(dest, self.server)
        if self.tls and not dest.startswith(("sip:", "sips:")):
            uri += self._uri_params
        call = self.new_call(pj.PJSUA_INVALID_ID, "outgoing")
        try:
            call.place(uri, headers, parts)
        except (PhoneError, ValueError):
            self.calls.remove(call)
            raise
        self.note_event("calling", uri, call)
        return call

    @property
    def incoming_waiting(self) -> int:
        """How many incoming calls arrived and were not yet taken by :meth:`wait_incoming`."""
        return len(self._incoming)

    def wait_incoming(self, timeout: float = 5.0) -> Call:
        """Wait for the next incoming call not yet taken, and take it."""
        self.stack.wait_until(lambda: self._incoming, timeout, f"a call to {self!r}")
        return self._incoming.pop(0)

    def answer(self, timeout: float = 5.0) -> Call:
        """Wait for an incoming call, answer it and wait until it is confirmed."""
        call = self.wait_incoming(timeout)
        call.answer()
        return call.wait_confirmed(timeout)

    def hangup_all(self) -> None:
        """Hang up every call still up."""
        for call in self.calls:
            call.hangup()

    @property
    def active_calls(self) -> list[Call]:
        """Calls not yet disconnected."""
        return [c for c in self.calls if c.state != CallState.DISCONNECTED and not c.released]

    def wait_call(
        self, predicate: Callable[[Call], bool], timeout: float = 5.0, what: str = "a call"
    ) -> Call:
        """Wait until one of our calls satisfies ``predicate``; return it."""

        def find() -> Call | None:
            return next((c for c in self.calls if predicate(c)), None)

        found = self.stack.wait_until(find, timeout, f"{what} on {self!r}")
        assert found is not None
        return found

    # -- teardown -------------------------------------------------------------------------------

    def close(self, timeout: float = 3.0) -> None:
        """Hang up, wait for the calls to end, unregister, and free everything. Idempotent.

        Safe after a failed test: whatever fails here is raised only after all is freed.
        """
        if self._closed:
            return
        self.stack.check_thread()
        self._closed = True
        problem: BaseException | None = None
        try:
            self.hangup_all()
            self.stack.wait_until(
                lambda: not self.active_calls, timeout, f"calls of {self!r} to end"
            )
        except (PhoneError, PhoneTimeout) as exc:
            problem = exc
        try:
            self.unregister(timeout)
        except PhoneError as exc:
            problem = problem or exc
        for call in self.calls:
            call.release()
        self._incoming.clear()
        self.calls.clear()
        self._account = None  # pjsua_acc_del runs here, on the owner thread
        try:
            self.stack.close_transport(self._transport)
        except PhoneError as exc:
            problem = problem or exc
        self.stack.detach(self)
        if problem is not None:
            raise PhoneError(f"closing {self!r}: {problem}") from problem

    @property
    def closed(self) -> bool:
        """True once :meth:`close` ran."""
        return self._closed

    def __enter__(self) -> Phone:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
