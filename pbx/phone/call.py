"""One call of a phone: its SIP dialog, its state, and the waits on it.

A :class:`Call` asks of its phone only what :class:`CallOwner` names (a
:class:`pbx.phone.phone.Phone` is one); its audio is a :class:`pbx.phone.media.CallAudio`.
pjsua2 calls back into :class:`_PjCall` on the stack's thread, never raising into it
(:func:`pbx.phone.stack.guarded`).
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import pjsua2 as pj

from pbx.phone.dialing import BodyPart, check_dtmf, check_parts, target_uri
from pbx.phone.errors import CallFailed, PhoneError
from pbx.phone.events import CallState
from pbx.phone.limits import MAX_CALLS
from pbx.phone.media import BYTES_PER_SECOND, FLUSH_BLOCK, CallAudio, tone_generator, wav_player
from pbx.phone.stack import SipStack, guarded


class CallOwner(Protocol):
    """What a :class:`Call` needs of its phone: its name (for messages), its server (bare
    destinations are dialled there), its stack (to wait on), and the two methods below."""

    name: str
    server: str | None
    stack: SipStack

    def note_event(self, kind: str, detail: str = "", call: Call | None = None) -> None:
        """Record something that happened to the phone or to one of its calls."""

    def new_call(self, call_id: int, direction: str) -> Call:
        """A new call of the phone for pjsua's ``call_id`` (a transfer target, a Replaces)."""


class _PjCall(pj.Call):
    """pjsua2's call; forwards callbacks to its :class:`Call` (held weakly: no cycle)."""

    def __init__(self, call: Call, account: pj.Account, call_id: int) -> None:
        super().__init__(account, call_id)
        self._call_ref = weakref.ref(call)

    def owner_stack(self) -> SipStack | None:
        """The stack of the call this object forwards to (None once it is gone)."""
        call = self._call_ref()
        return call.phone.stack if call is not None else None

    @guarded
    def onCallState(self, prm: pj.OnCallStateParam) -> None:  # noqa: N802
        call = self._call_ref()
        if call is not None:
            call._on_state()

    @guarded
    def onCallMediaState(self, prm: pj.OnCallMediaStateParam) -> None:  # noqa: N802
        call = self._call_ref()
        if call is not None:
            call._on_media()

    @guarded
    def onDtmfDigit(self, prm: pj.OnDtmfDigitParam) -> None:  # noqa: N802
        call = self._call_ref()
        if call is not None:
            call._on_dtmf(prm.digit)

    @guarded
    def onCallTransferRequest(self, prm: pj.OnCallTransferRequestParam) -> None:  # noqa: N802
        call = self._call_ref()
        if call is not None:
            new = call.phone.new_call(pj.PJSUA_INVALID_ID, direction="transfer")
            call.phone.note_event("transfer-request", prm.dstUri, call)
            prm.newCall = new._pj

    @guarded
    def onCallTransferStatus(self, prm: pj.OnCallTransferStatusParam) -> None:  # noqa: N802
        call = self._call_ref()
        if call is not None:
            call._on_transfer_status(int(prm.statusCode), prm.reason, bool(prm.finalNotify))

    @guarded
    def onCallReplaced(self, prm: pj.OnCallReplacedParam) -> None:  # noqa: N802
        call = self._call_ref()
        if call is not None:
            new = call.phone.new_call(prm.newCallId, direction="replacing")
            call.replaced_by = new
            call.phone.note_event("replaced", f"by call#{prm.newCallId}", call)
            prm.newCall = new._pj


class Call:
    """One call of a phone. Methods act on it; ``wait_*`` methods block with deadlines.

    ``dtmf_received`` lists the digits heard (RFC 4733), ``status_code``/``reason`` the last
    SIP status, ``recording`` the WAV file being written, if any.
    """

    def __init__(
        self, phone: CallOwner, account: pj.Account, call_id: int, direction: str
    ) -> None:
        """Call ``call_id`` of ``account`` (``pj.PJSUA_INVALID_ID`` for one not made yet)."""
        self.phone = phone
        self.direction = direction
        self._pj: _PjCall | None = _PjCall(self, account, call_id)
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
        self.created_at = time.monotonic()
        self.confirmed_at: float | None = None
        self.disconnected_at: float | None = None
        self.media_at: float | None = None
        self._audio = CallAudio(self)

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
            self._audio.connect(None)
        detail = self.state.name
        if self.status_code:
            detail += f" {self.status_code} {self.reason}"
        self.phone.note_event("state", detail, self)

    def _on_media(self) -> None:
        assert self._pj is not None
        info = self._pj.getInfo()
        active = False
        port: pj.AudioMedia | None = None
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
                port = self._pj.getAudioMedia(index)
            break
        self._audio.connect(port)
        self.media_active = active
        if active and self.media_at is None:
            self.media_at = time.monotonic()
        self.phone.note_event("media", "active" if active else "inactive", self)

    def _on_dtmf(self, digit: str) -> None:
        self.dtmf_received.append(digit)
        self.phone.note_event("dtmf", digit, self)

    def _on_transfer_status(self, code: int, reason: str, final: bool) -> None:
        self.transfer_status = code
        self.transfer_final = self.transfer_final or final
        final_word = " final" if final else ""
        self.phone.note_event("transfer-status", f"{code} {reason}{final_word}", self)

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
            self.phone.note_event("dtmf-sent", digit, self)
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
        self.phone.note_event("transfer", f"blind to {uri}", self)
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
        self.phone.note_event("transfer", f"attended to call#{other.id}", self)
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
        self._audio.send(tone_generator(freq_hz, volume))
        self.phone.note_event("play", f"tone {freq_hz:g} Hz", self)

    def play_wav(self, path: str | Path, loop: bool = True) -> None:
        """Send a WAV file (8 kHz 16-bit mono is best) into the call."""
        self.stack.check_thread()
        self._audio.send(wav_player(path, loop))
        self.phone.note_event("play", f"wav {path}", self)

    def stop_audio(self) -> None:
        """Stop sending the tone or WAV: the call then carries silence from us."""
        self.stack.check_thread()
        self._audio.send(None)

    def start_recording(self, path: str | Path) -> Path:
        """Record what this call hears into a WAV file (8 kHz, 16-bit, mono); return its path.

        The samples are on disk while recording goes on, after a 44-byte header whose sizes
        are only written by :meth:`stop_recording` (:mod:`pbx.phone.tones` reads either way).
        """
        self.stack.check_thread()
        return self._audio.start_recording(path)

    def stop_recording(self) -> Path | None:
        """Stop recording and finish the WAV header; return the file, if one was recorded."""
        self.stack.check_thread()
        return self._audio.stop_recording()

    @property
    def recording(self) -> Path | None:
        """The WAV file this call is (or was last) recorded into."""
        return self._audio.recording

    @property
    def recording_started_at(self) -> float | None:
        """When the last recording started (``time.monotonic``)."""
        return self._audio.recording_started_at

    def heard_seconds(self) -> float:
        """Seconds of audio recorded so far (0 without a recording)."""
        return self._audio.heard_seconds()

    def wait_heard(self, seconds: float, timeout: float = 10.0) -> Path:
        """Wait until the recording holds ``seconds`` of audio; return its path."""
        recording = self.recording
        if recording is None:
            raise PhoneError(f"{self!r} is not recording")
        # pjmedia flushes in 4 KiB blocks: ask for at least one block more than needed.
        want = seconds + FLUSH_BLOCK / BYTES_PER_SECOND
        self.stack.wait_until(
            lambda: self.heard_seconds() >= want, timeout, f"{seconds:g}s of audio on {self!r}"
        )
        return recording

    # -- with the phone -------------------------------------------------------------------------

    def place(self, uri: str, headers: dict[str, str] | None = None,
              parts: Sequence[BodyPart] = ()) -> None:
        """Send the INVITE of an outgoing call to ``uri`` with the extra SIP ``headers``;
        with ``parts``, its body is ``multipart/mixed``: those parts, then the SDP.

        A header with a line break or NUL, or a part that is not well formed, is refused
        (ValueError) before anything is sent; on any failure the call is released and never
        made.
        """
        self.stack.check_thread()
        if self._pj is None:
            raise PhoneError(f"{self!r} is released")
        prm = pj.CallOpParam(True)
        try:
            types = check_parts(parts)
        except ValueError:
            self._pj = None
            raise
        for name, value in (headers or {}).items():
            if any(c in name + value for c in "\r\n\0"):
                self._pj = None
                raise ValueError(f"bad SIP header {name!r}")
            prm.txOption.headers.append(_header(name, value))
        if parts:
            # pjsua adds the SDP offer as one more part of this multipart body.
            prm.txOption.multipartContentType.type = "multipart"
            prm.txOption.multipartContentType.subType = "mixed"
            for part, (kind, sub) in zip(parts, types, strict=True):
                pj_part = pj.SipMultipartPart()
                pj_part.contentType.type = kind
                pj_part.contentType.subType = sub
                pj_part.body = part.body
                for name, value in part.headers:
                    pj_part.headers.append(_header(name, value))
                prm.txOption.multipartParts.append(pj_part)
        try:
            self._pj.makeCall(uri, prm)
        except pj.Error as exc:
            self._pj = None
            hint = ""
            if exc.status == 70010:  # PJ_ETOOMANY
                hint = f" (pjsua allows {MAX_CALLS} calls at a time in one process)"
            raise PhoneError(f"cannot call {uri}{hint}: {exc.info()}") from exc
        self.remote_uri = uri

    def refresh(self) -> None:
        """Read the state and the far end's URI from pjsua (an incoming call, before its first
        state callback)."""
        if self._pj is not None:
            info = self._pj.getInfo()
            self.remote_uri = info.remoteUri
            self.state = CallState(int(info.state))

    # -- teardown -------------------------------------------------------------------------------

    def release(self) -> None:
        """Drop every pjsua2 object of this call (owner thread, call over or library closing)."""
        self.stack.check_thread()
        self._audio.release()
        self._pj = None

    @property
    def released(self) -> bool:
        """True once the call's pjsua2 objects are gone."""
        return self._pj is None


def _header(name: str, value: str) -> pj.SipHeader:
    hdr = pj.SipHeader()
    hdr.hName = name
    hdr.hValue = value
    return hdr
