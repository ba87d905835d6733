"""Phones in a child process: past the pjsua build's per-process limits, and crash-isolated.

The pjsua2 wheel allows 8 phones and 4 calls per process. A :class:`PhoneHost` starts a child
Python process with its own :class:`~pbx.phone.stack.SipStack` and drives phones there over a
socket pair; :class:`RemotePhone` and :class:`RemoteCall` mirror :class:`Phone` and
:class:`Call` (same method names and arguments; attributes are read from the child). A
blocking method (``wait_incoming``, ``wait_heard`` ...) waits in the child, which pumps its
own pjsua2; meanwhile the calling thread keeps pumping this process's stack (when it owns
one), so local and remote phones can wait on each other.

Errors come back as :class:`PhoneError` / :class:`PhoneTimeout` (``CallFailed`` arrives as a
PhoneError with the same message), ``ValueError`` as ``ValueError``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import traceback
from multiprocessing.connection import Connection
from typing import Any

from pbx.phone.errors import CallbackError, PhoneError, PhoneTimeout
from pbx.phone.stack import SipStack

# What the child may run: the public, picklable-result methods of Phone and Call.
PHONE_METHODS = frozenset(
    {"call", "wait_incoming", "answer", "hangup_all", "wait_registered", "unregister", "close"}
)
CALL_METHODS = frozenset(
    {
        "ring", "answer", "hangup", "wait_state", "wait_confirmed", "wait_disconnected",
        "wait_dtmf", "wait_transfer", "send_dtmf", "hold", "unhold", "transfer_blind",
        "transfer_attended", "play_tone", "play_wav", "stop_audio", "start_recording",
        "stop_recording", "heard_seconds", "wait_heard",
    }
)
_ERRORS: dict[str, type[Exception]] = {
    "PhoneTimeout": PhoneTimeout,
    "CallbackError": CallbackError,
    "ValueError": ValueError,
    "AttributeError": AttributeError,
    "LookupError": LookupError,
}


_CHILD = "import sys; from pbx.phone.host import main; sys.exit(main(sys.argv[1:]))"


class _Ref:
    """A phone or call living in the child, by number."""

    def __init__(self, kind: str, number: int) -> None:
        self.kind = kind
        self.number = number


class PhoneHost:
    """A child process owning a pjsua2 stack, with phones made through :meth:`phone`.

    Close it (or use ``with``): its phones are hung up and closed, then the child exits.
    """

    def __init__(self, log_level: int = 0, timeout: float = 30.0) -> None:
        parent, child = socket.socketpair()
        self._sock = parent
        self._timeout = timeout
        self._proc = subprocess.Popen(
            # Not "-m pbx.phone.host": the child must see this module under its own name so
            # that the references it pickles resolve to the same classes here.
            [sys.executable, "-c", _CHILD, str(child.fileno()), str(log_level)],
            pass_fds=(child.fileno(),),
            stdin=subprocess.DEVNULL,
        )
        child.close()
        self._conn = Connection(os.dup(parent.fileno()))
        parent.close()
        self._closed = False
        self._request("ping")

    def _request(self, op: str, *payload: Any) -> Any:
        if self._closed:
            raise PhoneError("the phone host is closed")
        local = SipStack.live_here()
        local_error: PhoneError | None = None
        try:
            self._conn.send((op, *payload))
            # The child answers every request; a long wait there is bounded by its own
            # deadline, so only a dead child leaves us without an answer. Meanwhile this
            # process's own phones keep running: a remote phone waiting for a call from a
            # local one needs the local stack to answer Asterisk's auth challenge.
            idle_since = time.monotonic()
            while True:
                if local is not None and local_error is None:
                    if self._conn.poll(0):
                        break
                    try:
                        local.pump()  # waits up to 10 ms for SIP/RTP events here
                    except PhoneError as exc:  # raised once the child has answered
                        local_error = exc
                elif self._conn.poll(0.01):
                    break
                if time.monotonic() - idle_since > 1.0:
                    idle_since = time.monotonic()
                    if self._proc.poll() is not None:
                        raise EOFError("the phone host exited")
            status, value = self._conn.recv()
        except (OSError, EOFError) as exc:
            self._closed = True
            try:
                self._proc.wait(self._timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            raise PhoneError(
                f"the phone host died with status {self._proc.returncode}"
            ) from exc
        if local_error is not None:
            raise local_error
        if status == "ok":
            return self._wrap(value)
        kind, message = value
        raise _ERRORS.get(kind, PhoneError)(message)

    def _wrap(self, value: Any) -> Any:
        if isinstance(value, _Ref):
            cls = RemotePhone if value.kind == "phone" else RemoteCall
            return cls(self, value.number)
        if isinstance(value, list):
            return [self._wrap(v) for v in value]
        return value

    def phone(self, user: str, **kwargs: Any) -> RemotePhone:
        """A :class:`Phone` in the child: same arguments as ``Phone(stack, user, ...)``."""
        return self._request("phone", user, kwargs)

    def close(self) -> None:
        """Close every phone in the child and wait for it to exit. Idempotent."""
        if self._closed:
            return
        try:
            self._request("quit")
        finally:
            self._closed = True
            self._conn.close()
            try:
                self._proc.wait(self._timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self._proc.returncode != 0:
            raise PhoneError(f"the phone host exited with status {self._proc.returncode}")

    @property
    def closed(self) -> bool:
        """True once closed, or once the child was found dead."""
        return self._closed

    @property
    def pid(self) -> int:
        """The child's process id."""
        return self._proc.pid

    def __enter__(self) -> PhoneHost:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class _RemoteObject:
    _methods: frozenset[str] = frozenset()
    _kind = ""

    def __init__(self, host: PhoneHost, number: int) -> None:
        self._host = host
        self._number = number

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        if name == "close" and self._host.closed:
            # The host is gone (closed, or died and said so): its phones went with it.
            return lambda *args, **kwargs: None
        if name in self._methods:

            def method(*args: Any, **kwargs: Any) -> Any:
                args = tuple(_unwrap(a) for a in args)
                return self._host._request("call", self._kind, self._number, name, args, kwargs)

            method.__name__ = name
            return method
        return self._host._request("get", self._kind, self._number, name)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _RemoteObject) and (
            (self._host, self._kind, self._number) == (other._host, other._kind, other._number)
        )

    def __hash__(self) -> int:
        return hash((id(self._host), self._kind, self._number))


class RemotePhone(_RemoteObject):
    """A :class:`~pbx.phone.phone.Phone` in a :class:`PhoneHost` (same methods)."""

    _methods = PHONE_METHODS
    _kind = "phone"

    def __repr__(self) -> str:
        return f"<RemotePhone {self._number} in pid {self._host.pid}>"


class RemoteCall(_RemoteObject):
    """A :class:`~pbx.phone.phone.Call` in a :class:`PhoneHost` (same methods)."""

    _methods = CALL_METHODS
    _kind = "call"

    def __repr__(self) -> str:
        return f"<RemoteCall {self._number} in pid {self._host.pid}>"


def _unwrap(value: Any) -> Any:
    if isinstance(value, _RemoteObject):
        return _Ref(value._kind, value._number)
    return value


# -- the child ----------------------------------------------------------------------------------


def _serve(conn: Connection, log_level: int) -> int:
    from pbx.phone.call import Call
    from pbx.phone.phone import Phone
    from pbx.phone.stack import SipStack

    objects: dict[tuple[str, int], Any] = {}
    numbers: dict[int, tuple[str, int]] = {}

    def ref(value: Any) -> Any:
        if isinstance(value, Phone | Call):
            key = numbers.get(id(value))
            if key is None:
                kind = "phone" if isinstance(value, Phone) else "call"
                key = (kind, len(objects) + 1)
                objects[key] = value
                numbers[id(value)] = key
            return _Ref(*key)
        if isinstance(value, list | tuple):
            return [ref(v) for v in value]
        return value

    def deref(value: Any) -> Any:
        if isinstance(value, _Ref):
            return objects[(value.kind, value.number)]
        return value

    with SipStack(log_level=log_level) as stack:
        while True:
            if not conn.poll(0):
                try:
                    stack.pump()
                except PhoneError as exc:  # a callback failed with no request to report it to
                    print(f"phone host: {exc}", file=sys.stderr, flush=True)
                continue
            op, *payload = conn.recv()
            try:
                if op == "ping":
                    result: Any = "pong"
                elif op == "quit":
                    conn.send(("ok", None))
                    return 0
                elif op == "phone":
                    user, kwargs = payload
                    result = ref(Phone(stack, user, **kwargs))
                elif op == "call":
                    kind, number, name, args, kwargs = payload
                    target = objects[(kind, number)]
                    allowed = PHONE_METHODS if kind == "phone" else CALL_METHODS
                    if name not in allowed:
                        raise PhoneError(f"{name} cannot be called remotely")
                    args = [deref(a) for a in args]
                    result = ref(getattr(target, name)(*args, **kwargs))
                elif op == "get":
                    kind, number, name = payload
                    result = ref(getattr(objects[(kind, number)], name))
                else:
                    raise PhoneError(f"unknown request {op!r}")
                conn.send(("ok", result))
            except (PhoneError, ValueError, AttributeError, LookupError) as exc:
                conn.send(("error", (type(exc).__name__, str(exc))))
            except Exception as exc:  # noqa: BLE001 - reported to the parent with its trace
                detail = "".join(traceback.format_exception(exc))
                conn.send(("error", ("PhoneError", f"phone host: {detail}")))


def main(argv: list[str]) -> int:
    """The child's entry: ``main([FD, LOG_LEVEL])``, FD being its end of the socket pair."""
    conn = Connection(int(argv[0]))
    return _serve(conn, int(argv[1]) if len(argv) > 1 else 0)
