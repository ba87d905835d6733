"""The process's one pjsua2 endpoint, driven from one thread.

pjsua2 is only dependable here when a single thread owns it: ``threadCnt = 0``,
``mainThreadOnly = True`` and the owner calling ``libHandleEvents`` (see ASTERISK.md). So one
:class:`SipStack` per process owns the ``Endpoint``; every phone lives on it and every blocking
wait in this package pumps it with :meth:`SipStack.wait_until`, a condition and a deadline.

pjsua2 objects (accounts, calls, players, recorders) must be destroyed on the owner thread and
before ``libDestroy``: a call object still bound when the library goes away aborts the process.
The stack therefore keeps every live phone, and :meth:`SipStack.close` hangs up, drains, drops
the references and collects garbage before destroying the library.
"""

from __future__ import annotations

import atexit
import functools
import gc
import os
import random
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

import pjsua2 as pj

# The errors and limits live in their own modules; they stay importable from here too.
from pbx.phone.errors import CallbackError, PhoneError, PhoneTimeout
from pbx.phone.limits import CLOCK_RATE, MAX_CALLS, MAX_PHONES

__all__ = [
    "CLOCK_RATE", "MAX_CALLS", "MAX_PHONES", "POLL_MS", "CallbackError", "PhoneError",
    "PhoneTimeout", "SipStack", "StackPhone", "T", "guarded",
]

T = TypeVar("T")

# How long one pump lets pjsua2 run before the waiting condition is checked again.
POLL_MS = 10


class StackPhone(Protocol):
    """What the stack needs of a phone living on it (:class:`pbx.phone.phone.Phone` has it)."""

    def reap(self) -> None:
        """Free the pjsua2 objects of calls that are over (called between pumps)."""

    def close(self, timeout: float = 3.0) -> None:
        """Hang up, drain and free everything of the phone; raise PhoneError on trouble."""


def guarded(method: Callable[[Any, Any], None]) -> Callable[[Any, Any], None]:
    """Run a pjsua2 callback, handing any exception to the stack instead of raising into C.

    The wrapped method's object names its stack with ``owner_stack()`` (None once the phone or
    call it forwards to is gone; the exception is then raised as is).
    """

    @functools.wraps(method)
    def wrapper(self: Any, prm: Any) -> None:
        try:
            method(self, prm)
        except BaseException as exc:  # noqa: B036 - must never propagate into pjsua's C code
            stack = self.owner_stack()
            if stack is None:
                raise
            stack.report_callback_error(exc)

    return wrapper


def _quietly(create: Callable[[], None]) -> None:
    """Run ``create`` with the process's stdout pointed at stderr.

    pjlib logs its start-up lines to stdout before any log level can be set, and a command
    that prints JSON on stdout (``siaga probe``) must not have them mixed in.
    """
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        create()
    finally:
        os.dup2(saved, 1)
        os.close(saved)


class SipStack:
    """The pjsua2 ``Endpoint`` of this process and the loop that drives it.

    Create it once (a test session, a command) on the thread that will use it; phones are
    created and closed on it as often as needed. Use it as a context manager, or call
    :meth:`close`. ``log_level`` is pjsip's console verbosity (0 silent .. 6), ``log_file``
    receives the same log at level 5 for post-mortems.
    """

    _live: SipStack | None = None

    def __init__(
        self,
        *,
        bind: str = "127.0.0.1",
        log_level: int = 0,
        log_file: str | None = None,
        rtp_port: int | None = None,
    ) -> None:
        if SipStack._live is not None:
            raise PhoneError("a SipStack already runs in this process; reuse it")
        self.bind = bind
        self._thread = threading.get_ident()
        self._phones: list[StackPhone] = []
        self._errors: list[BaseException] = []
        self._closed = False
        self._transports: list[int] = []
        started = time.monotonic()
        ep = pj.Endpoint()
        _quietly(ep.libCreate)
        try:
            cfg = pj.EpConfig()
            cfg.uaConfig.threadCnt = 0
            cfg.uaConfig.mainThreadOnly = True
            cfg.uaConfig.maxCalls = MAX_CALLS
            cfg.uaConfig.userAgent = "siaga-phone"
            cfg.logConfig.level = 5 if log_file else log_level
            cfg.logConfig.consoleLevel = log_level
            if log_file:
                cfg.logConfig.filename = log_file
            # The null sound device clocks the conference bridge; if pjsua closes it when idle
            # nothing is clocked and recorders capture nothing.
            cfg.medConfig.sndAutoCloseTime = -1
            cfg.medConfig.clockRate = CLOCK_RATE
            cfg.medConfig.sndClockRate = CLOCK_RATE
            cfg.medConfig.noVad = True
            cfg.medConfig.ecTailLen = 0
            ep.libInit(cfg)
            ep.audDevManager().setNullDev()
            self._only_g711(ep)
            ep.libStart()
        except pj.Error as exc:
            ep.libDestroy()
            raise PhoneError(f"pjsua2 did not start: {exc.info()}") from exc
        self.ep = ep
        # A random RTP base keeps parallel test processes of other developers from colliding
        # on pjsua's default 4000; pjsua still steps on to the next free pair on EADDRINUSE.
        self.rtp_port = rtp_port or random.randrange(20000, 30000, 2)
        self.started_in = time.monotonic() - started
        SipStack._live = self
        # A script or test run that ends without closing the stack would destroy pjsua2 with
        # calls still bound during interpreter teardown, which aborts: close it first.
        atexit.register(self._close_at_exit)

    @staticmethod
    def _only_g711(ep: pj.Endpoint) -> None:
        # Asterisk, the recorder and the tone checks all work at 8 kHz: keep the offer to G.711.
        for codec in ep.codecEnum2():
            name = codec.codecId
            if name.startswith("PCMU/"):
                prio = 255
            elif name.startswith("PCMA/"):
                prio = 254
            else:
                prio = 0
            ep.codecSetPriority(name, prio)

    # -- the owner thread and the loop --------------------------------------------------------

    def check_thread(self) -> None:
        """Raise unless called on the thread that created the stack, while it is open."""
        if self._closed:
            raise PhoneError("the SipStack is closed")
        if threading.get_ident() != self._thread:
            raise PhoneError("pjsua2 is driven from the thread that created the SipStack only")

    @classmethod
    def live_here(cls) -> SipStack | None:
        """The open stack of this process if the calling thread owns it, else None."""
        stack = cls._live
        if stack is None or stack._closed or threading.get_ident() != stack._thread:
            return None
        return stack

    def report_callback_error(self, exc: BaseException) -> None:
        """Keep an exception raised inside a pjsua2 callback for the next :meth:`pump`.

        An exception must not cross back into pjsua's C code (it would abort the process),
        so callbacks catch everything and hand it here; the owner thread re-raises it.
        """
        self._errors.append(exc)

    def pump(self, ms: int = POLL_MS) -> int:
        """Run pjsua2's events for up to ``ms`` milliseconds; re-raise any callback error."""
        self.check_thread()
        n = self.ep.libHandleEvents(ms)
        for phone in list(self._phones):
            phone.reap()
        if self._errors:
            first = self._errors.pop(0)
            self._errors.clear()
            raise CallbackError(f"error in a pjsua2 callback: {first!r}") from first
        return n

    def wait_until(self, predicate: Callable[[], T], timeout: float, what: str) -> T:
        """Pump events until ``predicate()`` is truthy and return its value.

        Raises :class:`PhoneTimeout` naming ``what`` when ``timeout`` seconds pass first.
        """
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise PhoneTimeout(f"timed out after {timeout:g}s waiting for {what}")
            self.pump(max(1, min(POLL_MS, int(remaining * 1000))))

    def run_for(self, seconds: float) -> None:
        """Keep the stack running for ``seconds`` (lets media flow while nothing is awaited)."""
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            self.pump(max(1, min(POLL_MS, int(remaining * 1000))))

    # -- phones ---------------------------------------------------------------------------------

    def create_transport(self, tls: bool = False, tls_ca: str | None = None) -> tuple[int, int]:
        """A new transport on ``bind`` with an ephemeral port: ``(transport id, port)``.

        UDP by default; ``tls=True`` makes a TLS 1.2 one, which checks the server's
        certificate against the CA file ``tls_ca`` when given (and trusts any without).
        """
        self.check_thread()
        if len(self._transports) >= MAX_PHONES:
            raise PhoneError(f"at most {MAX_PHONES} phones can live on one SipStack at a time")
        tc = pj.TransportConfig()
        tc.port = 0
        tc.boundAddress = self.bind
        tc.publicAddress = self.bind
        if tls:
            tc.tlsConfig.method = pj.PJSIP_TLSV1_2_METHOD
            tc.tlsConfig.verifyServer = tls_ca is not None
            if tls_ca is not None:
                tc.tlsConfig.CaListFile = tls_ca
        try:
            kind = pj.PJSIP_TRANSPORT_TLS if tls else pj.PJSIP_TRANSPORT_UDP
            tid = self.ep.transportCreate(kind, tc)
        except pj.Error as exc:
            raise PhoneError(f"cannot open a SIP transport: {exc.info()}") from exc
        self._transports.append(tid)
        port = int(self.ep.transportGetInfo(tid).localName.rsplit(":", 1)[1])
        return tid, port

    def close_transport(self, tid: int) -> None:
        """Close a transport made by :meth:`create_transport` (its phone is gone)."""
        if tid in self._transports:
            self._transports.remove(tid)
            try:
                self.ep.transportClose(tid)
            except pj.Error as exc:
                raise PhoneError(f"cannot close SIP transport {tid}: {exc.info()}") from exc

    def attach(self, phone: StackPhone) -> None:
        """Record a phone living on this stack (called by :class:`~pbx.phone.phone.Phone`)."""
        if len(self._phones) >= MAX_PHONES:
            raise PhoneError(f"at most {MAX_PHONES} phones can live on one SipStack at a time")
        self._phones.append(phone)

    def detach(self, phone: StackPhone) -> None:
        """Forget a closed phone."""
        if phone in self._phones:
            self._phones.remove(phone)

    @property
    def phones(self) -> list[StackPhone]:
        """The phones open on this stack."""
        return list(self._phones)

    # -- shutdown -------------------------------------------------------------------------------

    def close(self, timeout: float = 3.0) -> None:
        """Close every phone (hang up, drain), then destroy the library. Idempotent."""
        if self._closed:
            return
        self.check_thread()
        problems: list[BaseException] = []
        for phone in list(self._phones):
            try:
                phone.close(timeout=timeout)
            except Exception as exc:  # keep closing the others; reported below
                problems.append(exc)
        self._phones.clear()
        self._errors.clear()
        # Every pjsua2 object must be gone before libDestroy, and collected on this thread.
        gc.collect()
        self._closed = True
        SipStack._live = None
        atexit.unregister(self._close_at_exit)
        try:
            self.ep.libDestroy()
        except pj.Error as exc:
            problems.append(PhoneError(f"libDestroy failed: {exc.info()}"))
        del self.ep
        gc.collect()
        if problems:
            raise PhoneError(f"closing the SipStack: {problems[0]}") from problems[0]

    def _close_at_exit(self) -> None:
        if self._closed:
            return
        try:
            self.close(timeout=1.0)
        except PhoneError as exc:
            print(f"siaga phone stack: closing at exit: {exc}", file=sys.stderr)

    @property
    def closed(self) -> bool:
        """True once :meth:`close` ran."""
        return self._closed

    def __enter__(self) -> SipStack:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
