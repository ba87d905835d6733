"""What the phone library raises.

Every failure of a phone, a call or the stack is a :class:`PhoneError`, so a script catches one
type; the subclasses say what kind. Nothing here imports pjsua2: a caller can name the errors
without loading the SIP stack.
"""

from __future__ import annotations

from typing import Protocol


class PhoneError(RuntimeError):
    """A phone operation failed (pjsua2 refused it, or the call is in the wrong state)."""


class PhoneTimeout(PhoneError, TimeoutError):
    """A wait ran past its deadline; the message says what was awaited."""


class CallbackError(PhoneError):
    """Code run from a pjsua2 callback raised; re-raised on the next pump of the owner thread."""


class _EndedCall(Protocol):
    """What :class:`CallFailed` reports of a call (a :class:`pbx.phone.call.Call` has it)."""

    @property
    def status_code(self) -> int | None: ...

    @property
    def reason(self) -> str: ...


class CallFailed(PhoneError):
    """A call ended while something else was awaited."""

    def __init__(self, call: _EndedCall, message: str) -> None:
        super().__init__(f"{call!r}: {message} (last status {call.status_code} {call.reason})")
        self.call = call
