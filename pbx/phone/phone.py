"""Scriptable SIP phones on the process's :class:`~pbx.phone.stack.SipStack`.

A :class:`Phone` is one pjsua2 account on its own UDP (or TLS) port: an extension registered
to a registrar with a username and password, or an anonymous caller (a citizen) that registers
nowhere. A :class:`Call` is one of its calls. Every method is synchronous: the waits pump the
stack until a condition holds or a deadline passes, so scripts and tests read top to bottom.

pjsua2 objects are created and destroyed on the stack's thread only. Python callbacks from
pjsua2 never raise into it (that aborts the process): they hand exceptions to the stack, which
re-raises them from the next pump.
"""

from __future__ import annotations

import enum
import functools
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pjsua2 as pj

from pbx.phone.stack import CLOCK_RATE, MAX_CALLS, PhoneError, PhoneTimeout, SipStack

DTMF_DIGITS = frozenset("0123456789*#ABCDabcd")
# A phone's SRTP setting and pjsua's for it.
SRTP_USE = {"off": pj.PJMEDIA_SRTP_DISABLED, "optional": pj.PJMEDIA_SRTP_OPTIONAL,
            "mandatory": pj.PJMEDIA_SRTP_MANDATORY}


class CallState(enum.IntEnum):
    """INVITE session states, as pjsip numbers them."""

    NULL = 0
    CALLING = 1
    INCOMING = 2
    EARLY = 3
    CONNECTING = 4
    CONFIRMED = 5
    DISCONNECTED = 6


@dataclass(frozen=True)
class PhoneEvent:
    """Something that happened to a phone: ``kind`` is a short word, ``detail`` free text."""

    at: float
    phone: str
    kind: str
    detail: str = ""
    call: int | None = None

    def __str__(self) -> str:
        where = f" call#{self.call}" if self.call is not None else ""
        return f"{self.phone}{where} {self.kind} {self.detail}".rstrip()


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


def _guarded(method: Callable[..., None]) -> Callable[..., None]:
    """Run a pjsua2 callback, handing any exception to the stack instead of raising into C."""

    @functools.wraps(method)
    def wrapper(self: Any, prm: Any) -> None:
        try:
            method(self, prm)
        except BaseException as exc:  # noqa: B036 - must never propagate into pjsua's C code
            stack = self._stack()
            if stack is None:
                raise
            stack.report_callback_error(exc)

    return wrapper


class _PjAccount(pj.Account):
    """pjsua2's account; forwards callbacks to its :class:`Phone` (held weakly: no cycle)."""

    def __init__(self, phone: Phone) -> None:
        super().__init__()
        self._phone_ref = weakref.ref(phone)

    def _stack(self) -> SipStack | None:
        phone = self._phone_ref()
        return phone.stack if phone is not None else None

    @_guarded
    def onRegState(self, prm: pj.OnRegStateParam) -> None:  # noqa: N802 - pjsua2 name
        phone = self._phone_ref()
        if phone is not None:
            phone._on_reg_state(int(prm.code), prm.reason, int(prm.expiration))

    @_guarded
    def onIncomingCall(self, prm: pj.OnIncomingCallParam) -> None:  # noqa: N802
        phone = self._phone_ref()
        if phone is not None:
            phone._on_incoming(prm.callId)


class _PjCall(pj.Call):
    """pjsua2's call; forwards callbacks to its :class:`Call` (held weakly: no cycle)."""

    def __init__(self, call: Call, account: pj.Account, call_id: int) -> None:
        super().__init__(account, call_id)
        self._call_ref = weakref.ref(call)

    def _stack(self) -> SipStack | None:
        call = self._call_ref()
        return call.phone.stack if call is not None else None

    @_guarded
    def onCallState(self, prm: pj.OnCallStateParam) -> None:  # noqa: N802
        call = self._call_ref()
        if call is not None:
            call._on_state()

    @_guarded
    def onCallMediaState(self, prm: pj.OnCallMediaStateParam) -> None:  # noqa: N802
        call = self._call_ref()
        if call is not None:
            call._on_media()

    @_guarded
    def onDtmfDigit(self, prm: pj.OnDtmfDigitParam) -> None:  # noqa: N802
        call = self._call_ref()
        if call is not None:
            call._on_dtmf(prm.digit)

    @_guarded
    def onCallTransferRequest(self, prm: pj.OnCallTransferRequestParam) -> None:  # noqa: N802
        call = self._call_ref()
        if call is not None:
            new = call.phone._new_call(pj.PJSUA_INVALID_ID, direction="transfer")
            call.phone._event("transfer-request", prm.dstUri, call)
            prm.newCall = new._pj

    @_guarded
    def onCallTransferStatus(self, prm: pj.OnCallTransferStatusParam) -> None:  # noqa: N802
        call = self._call_ref()
        if call is not None:
            call._on_transfer_status(int(prm.statusCode), prm.reason, bool(prm.finalNotify))

    @_guarded
    def onCallReplaced(self, prm: pj.OnCallReplacedParam) -> None:  # noqa: N802
        call = self._call_ref()
        if call is not None:
            new = call.phone._new_call(prm.newCallId, direction="replacing")
            call.replaced_by = new
            call.phone._event("replaced", f"by call#{prm.newCallId}", call)
            prm.newCall = new._pj


class Call:
    """One call of a :class:`Phone`. Methods act on it; ``wait_*`` methods block with deadlines.

    ``dtmf_received`` lists the digits heard (RFC 4733), ``status_code``/``reason`` the last
    SIP status, ``recording`` the WAV file being written, if any.
    """

    def __init__(self, phone: Phone, call_id: int, direction: str) -> None:
        self.phone = phone
        self.direction = direction
        self._pj: _PjCall | None = _PjCall(self, phone._account, call_id)
        self.state = CallState.NULL
        self.status_code: int | None = None
        self.reason = ""
        self.remote_uri = ""
        self.dtmf_received: list[str] = []
        self.media_active = False
        self.on_hold = False  # our side put the call on hold
        self.remote_hold = False
        self.transfer_status: int | None = None
        self.transfer_final = False
        self.replaced_by: Call | None = None
        self.recording: Path | None = None
        self.created_at = time.monotonic()
        self.confirmed_at: float | None = None
        self.disconnected_at: float | None = None
        self.media_at: float | None = None
        self.recording_started_at: float | None = None
        self._aud: pj.AudioMedia | None = None
        self._source: pj.AudioMedia | None = None  # tone generator or player
        self._recorder: pj.AudioMediaRecorder | None = None

    # -- identity -------------------------------------------------------------------------------

    @property
    def id(self) -> int:
        """pjsua's call id (-1 before the call exists)."""
        return self._pj.getId() if self._pj is not None else -1

    def __repr__(self) -> str:
        return f"<Call #{self.id} of {self.phone.name} {self.state.name} {self.remote_uri}>"

    # -- callbacks (owner thread, inside libHandleEvents) -----------------------------------------

    def _on_state(self) -> None:
        assert self._pj is not None
        info = self._pj.getInfo()
        self.state = CallState(int(info.state))
        self.remote_uri = info.remoteUri
        if info.lastStatusCode:
            self.status_code = int(info.lastStatusCode)
            self.reason = info.lastReason
        now = time.monotonic()
        if self.state == CallState.CONFIRMED and self.confirmed_at is None:
            self.confirmed_at = now
        if self.state == CallState.DISCONNECTED:
            self.disconnected_at = now
            self.media_active = False
            self._aud = None
        detail = self.state.name
        if self.status_code:
            detail += f" {self.status_code} {self.reason}"
        self.phone._event("state", detail, self)

    def _on_media(self) -> None:
        assert self._pj is not None
        info = self._pj.getInfo()
        active = False
        self._aud = None
        for index, media in enumerate(info.media):
            if media.type != pj.PJMEDIA_TYPE_AUDIO:
                continue
            status = media.status
            self.remote_hold = status == pj.PJSUA_CALL_MEDIA_REMOTE_HOLD
            active = status == pj.PJSUA_CALL_MEDIA_ACTIVE
            if status in (
                pj.PJSUA_CALL_MEDIA_ACTIVE,
                pj.PJSUA_CALL_MEDIA_REMOTE_HOLD,
                pj.PJSUA_CALL_MEDIA_LOCAL_HOLD,
            ):
                # The conference slot can change on re-INVITE: re-wire the source and sink.
                self._aud = self._pj.getAudioMedia(index)
                self._wire()
            break
        self.media_active = active
        if active and self.media_at is None:
            self.media_at = time.monotonic()
        self.phone._event("media", "active" if active else "inactive", self)

    def _on_dtmf(self, digit: str) -> None:
        self.dtmf_received.append(digit)
        self.phone._event("dtmf", digit, self)

    def _on_transfer_status(self, code: int, reason: str, final: bool) -> None:
        self.transfer_status = code
        self.transfer_final = self.transfer_final or final
        self.phone._event("transfer-status", f"{code} {reason}{' final' if final else ''}", self)

    def _wire(self) -> None:
        if self._aud is None:
            return
        if self._source is not None:
            self._source.startTransmit(self._aud)
        if self._recorder is not None:
            self._aud.startTransmit(self._recorder)

    # -- waits ----------------------------------------------------------------------------------

    @property
    def stack(self) -> SipStack:
        """The stack this call lives on."""
        return self.phone.stack

    def wait_state(self, state: CallState, timeout: float = 5.0) -> Call:
        """Wait until the call reaches ``state`` (or a later one); return the call.

        Raises :class:`CallFailed` if it is disconnected first (unless DISCONNECTED was awaited).
        """

        def reached() -> bool:
            if self.state == CallState.DISCONNECTED and state != CallState.DISCONNECTED:
                raise CallFailed(self, f"disconnected while waiting for {state.name}")
            return self.state >= state

        self.stack.wait_until(reached, timeout, f"{self!r} to reach {state.name}")
        return self

    def wait_confirmed(self, timeout: float = 5.0) -> Call:
        """Wait until the call is answered and acknowledged (CONFIRMED) with media running."""
        self.wait_state(CallState.CONFIRMED, timeout)
        self.stack.wait_until(lambda: self.media_active, timeout, f"media of {self!r}")
        return self

    def wait_disconnected(self, timeout: float = 5.0) -> Call:
        """Wait until the call is over."""
        return self.wait_state(CallState.DISCONNECTED, timeout)

    def wait_dtmf(self, digits: str, timeout: float = 5.0) -> str:
        """Wait until the received digits end with ``digits``; return all received so far."""
        self.stack.wait_until(
            lambda: "".join(self.dtmf_received).endswith(digits),
            timeout,
            f"DTMF {digits!r} on {self!r} (got {''.join(self.dtmf_received)!r})",
        )
        return "".join(self.dtmf_received)

    def wait_transfer(self, timeout: float = 5.0) -> int:
        """Wait for the final NOTIFY of a transfer we asked for; return its status code.

        Returns 0 if the call ended first without a final NOTIFY.
        """
        self.stack.wait_until(
            lambda: self.transfer_final or self.state == CallState.DISCONNECTED,
            timeout,
            f"transfer result on {self!r}",
        )
        return self.transfer_status or 0

    # -- call control ---------------------------------------------------------------------------

    def _require(self) -> _PjCall:
        self.stack.check_thread()
        if self._pj is None or self.state == CallState.DISCONNECTED:
            raise PhoneError(f"{self!r} is over")
        return self._pj

    def ring(self) -> None:
        """Send 180 Ringing for an incoming call."""
        self._answer_code(180)

    def answer(self, code: int = 200) -> Call:
        """Answer an incoming call (200 by default; 180/183 for ringing/progress)."""
        return self._answer_code(code)

    def _answer_code(self, code: int) -> Call:
        pjcall = self._require()
        prm = pj.CallOpParam(True)
        prm.statusCode = code
        try:
            pjcall.answer(prm)
        except pj.Error as exc:
            raise PhoneError(f"cannot answer {self!r} with {code}: {exc.info()}") from exc
        return self

    def hangup(self, code: int = 0) -> None:
        """Hang up (or reject with ``code`` if still ringing). A call already over is left."""
        self.stack.check_thread()
        if self._pj is None or self.state == CallState.DISCONNECTED or self.id < 0:
            return
        prm = pj.CallOpParam(True)
        if code:
            prm.statusCode = code
        try:
            self._pj.hangup(prm)
        except pj.Error as exc:
            # Hanging up a call pjsua already ended is no failure of ours.
            if self._pj.isActive():
                raise PhoneError(f"cannot hang up {self!r}: {exc.info()}") from exc

    def send_dtmf(self, digits: str, duration_ms: int = 160, gap_ms: int = 100) -> None:
        """Send ``digits`` as RFC 4733 telephone-events, one key press at a time.

        Returns when the last digit has been sent. Keys are spaced by ``gap_ms`` like a
        person's presses: pjmedia sends queued digits back to back, and Asterisk turns a
        digit that starts under 45 ms after the previous one into an emulated digit with no
        DTMFBegin, which is not what a phone does.
        """
        check_dtmf(digits)
        for index, digit in enumerate(digits):
            pjcall = self._require()
            prm = pj.CallSendDtmfParam()
            prm.method = pj.PJSUA_DTMF_METHOD_RFC2833
            prm.digits = digit
            prm.duration = duration_ms
            try:
                pjcall.sendDtmf(prm)
            except pj.Error as exc:
                raise PhoneError(f"cannot send DTMF on {self!r}: {exc.info()}") from exc
            self.phone._event("dtmf-sent", digit, self)
            if index < len(digits) - 1 or gap_ms:
                self.stack.run_for((duration_ms + gap_ms) / 1000)

    def hold(self, timeout: float = 5.0) -> None:
        """Put the call on hold (re-INVITE with sendonly) and wait until it is done."""
        pjcall = self._require()
        try:
            pjcall.setHold(pj.CallOpParam(True))
        except pj.Error as exc:
            raise PhoneError(f"cannot hold {self!r}: {exc.info()}") from exc
        self.on_hold = True
        self.stack.wait_until(self._media_settled, timeout, f"hold of {self!r}")

    def unhold(self, timeout: float = 5.0) -> None:
        """Take the call off hold (re-INVITE with sendrecv) and wait until media runs again."""
        pjcall = self._require()
        prm = pj.CallOpParam(True)
        prm.opt.flag = pj.PJSUA_CALL_UNHOLD
        try:
            pjcall.reinvite(prm)
        except pj.Error as exc:
            raise PhoneError(f"cannot unhold {self!r}: {exc.info()}") from exc
        self.on_hold = False
        self.stack.wait_until(self._media_settled, timeout, f"unhold of {self!r}")

    def _media_settled(self) -> bool:
        if self._pj is None or self.state == CallState.DISCONNECTED:
            raise CallFailed(self, "disconnected during re-INVITE")
        info = self._pj.getInfo()
        for media in info.media:
            if media.type == pj.PJMEDIA_TYPE_AUDIO:
                status = media.status
                if self.on_hold:
                    return status in (pj.PJSUA_CALL_MEDIA_LOCAL_HOLD, pj.PJSUA_CALL_MEDIA_NONE)
                return status == pj.PJSUA_CALL_MEDIA_ACTIVE
        return False

    def transfer_blind(
        self, dest: str, *, timeout: float = 10.0, wait: bool = True, hangup: bool = True
    ) -> int:
        """Ask the other side to call ``dest`` instead of us (REFER); return the final status.

        Like a desk phone, it waits for the transfer's final NOTIFY and then hangs up its own
        leg when the transfer succeeded (``hangup=False`` keeps it). ``wait=False`` returns
        at once with 0. Raises :class:`PhoneError` if the transfer fails.
        """
        pjcall = self._require()
        uri = target_uri(dest, self.phone.server)
        self.transfer_status, self.transfer_final = None, False
        try:
            pjcall.xfer(uri, pj.CallOpParam(True))
        except pj.Error as exc:
            raise PhoneError(f"cannot transfer {self!r} to {uri}: {exc.info()}") from exc
        self.phone._event("transfer", f"blind to {uri}", self)
        return self._finish_transfer(timeout, wait, hangup, [])

    def transfer_attended(
        self, other: Call, *, timeout: float = 10.0, wait: bool = True, hangup: bool = True
    ) -> int:
        """Join the other side of this call with the other side of ``other`` (REFER/Replaces).

        Waits for the final NOTIFY and, on success, hangs up both of our legs (as a phone
        does; with ``hangup=False`` they stay). Returns the final status (0 with ``wait=False``).
        """
        pjcall = self._require()
        other_pj = other._require()
        self.transfer_status, self.transfer_final = None, False
        try:
            pjcall.xferReplaces(other_pj, pj.CallOpParam(True))
        except pj.Error as exc:
            raise PhoneError(f"cannot transfer {self!r} to {other!r}: {exc.info()}") from exc
        self.phone._event("transfer", f"attended to call#{other.id}", self)
        return self._finish_transfer(timeout, wait, hangup, [other])

    def _finish_transfer(self, timeout: float, wait: bool, hangup: bool, also: list[Call]) -> int:
        if not wait:
            return 0
        status = self.wait_transfer(timeout)
        if self.state == CallState.DISCONNECTED and not self.transfer_final:
            # The far end hung us up as it took the transfer: that is a success too.
            return status or 200
        if not 200 <= status < 300:
            raise PhoneError(f"transfer on {self!r} failed: {status}")
        if hangup:
            for call in [self, *also]:
                call.hangup()
        return status

    # -- audio ----------------------------------------------------------------------------------

    def play_tone(self, freq_hz: float, volume: int = 0) -> None:
        """Send a continuous sine tone of ``freq_hz`` into the call (replaces any other source)."""
        self.stack.check_thread()
        if not 0 < freq_hz < CLOCK_RATE / 2:
            raise ValueError(f"tone frequency must be below {CLOCK_RATE // 2} Hz: {freq_hz}")
        gen = pj.ToneGenerator()
        gen.createToneGenerator(CLOCK_RATE, 1)
        desc = pj.ToneDesc()
        # Two equal frequencies make one pure sine (pjmedia's tone generator is dual-tone).
        desc.freq1 = int(freq_hz)
        desc.freq2 = int(freq_hz)
        desc.on_msec = 1000
        desc.off_msec = 0
        desc.volume = volume
        tones = pj.ToneDescVector()
        tones.append(desc)
        gen.play(tones, True)
        self._set_source(gen)
        self.phone._event("play", f"tone {freq_hz:g} Hz", self)

    def play_wav(self, path: str | Path, loop: bool = True) -> None:
        """Send a WAV file (8 kHz 16-bit mono is best) into the call."""
        self.stack.check_thread()
        player = pj.AudioMediaPlayer()
        try:
            player.createPlayer(str(path), 0 if loop else pj.PJMEDIA_FILE_NO_LOOP)
        except pj.Error as exc:
            raise PhoneError(f"cannot play {path}: {exc.info()}") from exc
        self._set_source(player)
        self.phone._event("play", f"wav {path}", self)

    def stop_audio(self) -> None:
        """Stop sending the tone or WAV: the call then carries silence from us."""
        self.stack.check_thread()
        self._set_source(None)

    def _set_source(self, source: pj.AudioMedia | None) -> None:
        old, self._source = self._source, source
        if old is not None and self._aud is not None:
            try:
                old.stopTransmit(self._aud)
            except pj.Error as exc:
                raise PhoneError(f"cannot stop audio on {self!r}: {exc.info()}") from exc
        del old  # destroyed here, on the owner thread
        self._wire()

    def start_recording(self, path: str | Path) -> Path:
        """Record what this call hears into a WAV file (8 kHz, 16-bit, mono); return its path.

        The samples are on disk while recording goes on, after a 44-byte header whose sizes
        are only written by :meth:`stop_recording` (:mod:`pbx.phone.tones` reads either way).
        """
        self.stack.check_thread()
        self.stop_recording()
        path = Path(path)
        recorder = pj.AudioMediaRecorder()
        try:
            recorder.createRecorder(str(path))
        except pj.Error as exc:
            raise PhoneError(f"cannot record to {path}: {exc.info()}") from exc
        self._recorder = recorder
        self.recording = path
        self.recording_started_at = time.monotonic()
        self._wire()
        return path

    def stop_recording(self) -> Path | None:
        """Stop recording and finish the WAV header; return the file, if one was recorded."""
        self.stack.check_thread()
        recorder, self._recorder = self._recorder, None
        if recorder is not None and self._aud is not None:
            try:
                self._aud.stopTransmit(recorder)
            except pj.Error as exc:
                raise PhoneError(f"cannot stop recording {self!r}: {exc.info()}") from exc
        del recorder  # pjmedia writes the header sizes when the recorder is destroyed
        return self.recording

    def heard_seconds(self) -> float:
        """Seconds of audio recorded so far (0 without a recording)."""
        if self.recording is None or not self.recording.exists():
            return 0.0
        return max(0, self.recording.stat().st_size - 44) / (2 * CLOCK_RATE)

    def wait_heard(self, seconds: float, timeout: float = 10.0) -> Path:
        """Wait until the recording holds ``seconds`` of audio; return its path."""
        if self.recording is None:
            raise PhoneError(f"{self!r} is not recording")
        # pjmedia flushes in 4 KiB blocks: ask for at least one block more than needed.
        want = seconds + 4096 / (2 * CLOCK_RATE)
        self.stack.wait_until(
            lambda: self.heard_seconds() >= want, timeout, f"{seconds:g}s of audio on {self!r}"
        )
        return self.recording

    # -- teardown -------------------------------------------------------------------------------

    def _release(self) -> None:
        """Drop every pjsua2 object of this call (owner thread, call over or library closing)."""
        self._set_source(None)
        self.stop_recording()
        self._aud = None
        self._pj = None

    @property
    def released(self) -> bool:
        """True once the call's pjsua2 objects are gone."""
        return self._pj is None


class CallFailed(PhoneError):
    """A call ended while something else was awaited."""

    def __init__(self, call: Call, message: str) -> None:
        super().__init__(f"{call!r}: {message} (last status {call.status_code} {call.reason})")
        self.call = call


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

    def _event(self, kind: str, detail: str = "", call: Call | None = None) -> None:
        event = PhoneEvent(time.monotonic(), self.name, kind, detail, call.id if call else None)
        self.events.append(event)
        if self.on_event is not None:
            self.on_event(event)

    def _on_reg_state(self, code: int, reason: str, expires: int) -> None:
        self.reg_code = code
        self.reg_reason = reason
        self.reg_expires = expires
        self._event("registration", f"{code} {reason} expires={expires}")

    def _new_call(self, call_id: int, direction: str) -> Call:
        call = Call(self, call_id, direction)
        self.calls.append(call)
        return call

    def _on_incoming(self, call_id: int) -> None:
        call = self._new_call(call_id, "incoming")
        info = call._pj.getInfo() if call._pj is not None else None
        if info is not None:
            call.remote_uri = info.remoteUri
            call.state = CallState(int(info.state))
        self._incoming.append(call)
        self._event("incoming", call.remote_uri, call)
        if self.auto_ring:
            call.ring()

    def _reap(self) -> None:
        # Outside callbacks: free the pjsua2 objects of calls that are over (finishes WAVs).
        for call in self.calls:
            if call.state == CallState.DISCONNECTED and not call.released:
                call._release()

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

    def call(self, dest: str, *, headers: dict[str, str] | None = None) -> Call:
        """Place a call to ``dest`` (an extension at our server, or a SIP URI)."""
        self.stack.check_thread()
        uri = target_uri(dest, self.server)
        if self.tls and not dest.startswith(("sip:", "sips:")):
            uri += self._uri_params
        call = self._new_call(pj.PJSUA_INVALID_ID, "outgoing")
        prm = pj.CallOpParam(True)
        for name, value in (headers or {}).items():
            if any(c in name + value for c in "\r\n\0"):
                raise ValueError(f"bad SIP header {name!r}")
            hdr = pj.SipHeader()
            hdr.hName = name
            hdr.hValue = value
            prm.txOption.headers.append(hdr)
        assert call._pj is not None
        try:
            call._pj.makeCall(uri, prm)
        except pj.Error as exc:
            self.calls.remove(call)
            call._pj = None
            hint = ""
            if exc.status == 70010:  # PJ_ETOOMANY
                hint = f" (pjsua allows {MAX_CALLS} calls at a time in one process)"
            raise PhoneError(f"cannot call {uri}{hint}: {exc.info()}") from exc
        call.remote_uri = uri
        self._event("calling", uri, call)
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
            call._release()
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
