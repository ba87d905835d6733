"""The supervisor's console endpoints: listen/whisper/barge, recent calls, recordings.

* ``POST /console/api/spy`` ``{"extension": "201", "mode": "listen"|"whisper"|"barge"}``:
  rings the supervisor's own phone into that mode on the desk's call
  (:mod:`dispatcher.console.spy`).
* ``GET /console/api/recordings``: the latest calls, each saying whether it has a recording.
* ``GET /console/api/recording?call=<id>``: the recording of that call (the call log's id),
  with HTTP range requests (206 + ``Content-Range``; 416 for a range past the end). The file
  is the one the call log names for that call, checked to be inside the recordings folder:
  nothing in the request is a path.

All three are for supervisors only (403 JSON for an operator's session); the action needs the
page's CSRF token (:mod:`dispatcher.web.console_api`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IPullProducer
from twisted.logger import Logger
from twisted.web.server import NOT_DONE_YET, Request
from zope.interface import implementer

from dispatcher.api.base import refusal, send_error
from dispatcher.api.errors import ApiError
from dispatcher.console.recordings import (
    RangeNotSatisfiable,
    byte_range,
    recent_calls,
    recording_file,
)
from dispatcher.console.spy import SpyRequest, SpyService
from dispatcher.web.console_api import ConsoleEndpoint, json_object, reply_later

__all__ = ["FileRange", "RecentCallsEndpoint", "RecordingEndpoint", "SpyEndpoint", "pool_reads",
           "supervisor_endpoints"]

log = Logger(namespace="dispatcher.web.console_supervisor")

#: Runs ``fn(session, *args)`` off the reactor, in a read transaction; a Deferred of its result.
Reads = Callable[..., defer.Deferred[Any]]

AUDIO_TYPES = {".wav": b"audio/wav", ".gsm": b"audio/x-gsm", ".sln": b"audio/x-sln"}
MAX_CALL_ID = 2**63 - 1


class SpyEndpoint(ConsoleEndpoint):
    """``POST /console/api/spy``: listen, whisper or barge from the supervisor's phone."""

    roles = ("supervisor",)

    def __init__(self, console: Any, spy: SpyService) -> None:  # noqa: ANN401
        super().__init__(console)
        self.spy = spy

    def render_POST(self, request: Request) -> Any:  # noqa: N802, ANN401
        """Check the request and originate; JSON with the channel spied on."""
        asked = SpyRequest.parse(request.staff.extension, json_object(request))
        return reply_later(request, self.spy.start(asked))


class RecentCallsEndpoint(ConsoleEndpoint):
    """``GET /console/api/recordings``: the latest calls to play a recording from."""

    roles = ("supervisor",)

    def __init__(self, console: Any, reads: Reads) -> None:  # noqa: ANN401
        super().__init__(console)
        self.reads = reads

    def render_GET(self, request: Request) -> Any:  # noqa: N802, ANN401
        """``{"calls": [...]}``, newest first."""
        d = self.reads(recent_calls)
        return reply_later(request, d.addCallback(lambda calls: {"calls": calls}))


def _open(session: Any, call_id: int, folder: Path) -> tuple[Path, Any, int]:  # noqa: ANN401
    # In a pool thread: the database row, then the file, opened without following a link
    # planted after the check, and its size from the open file itself.
    path = recording_file(session, call_id, folder)
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    handle = os.fdopen(fd, "rb")
    return path, handle, os.fstat(handle.fileno()).st_size


@implementer(IPullProducer)
class FileRange:
    """Writes ``length`` bytes of an open file from ``first`` to a request, a chunk each
    time the connection asks for more (a pull producer: a slow client holds no memory),
    then finishes the request and closes the file."""

    chunk = 64 * 1024

    def __init__(self, request: Request, handle: Any, first: int, length: int) -> None:  # noqa: ANN401
        self.request: Request | None = request
        self.handle = handle
        self.first = first
        self.left = length

    def start(self) -> None:
        """Register with the request; the connection pulls from here on."""
        assert self.request is not None
        self.handle.seek(self.first)
        self.request.registerProducer(self, False)

    def resumeProducing(self) -> None:  # noqa: N802 -- Twisted's name
        request = self.request
        if request is None:
            return
        data = self.handle.read(min(self.chunk, self.left))
        self.left -= len(data)
        if not data:
            self.left = 0  # the file shrank under us: end with what was sent
        if data:
            request.write(data)  # may re-enter resumeProducing: the state is already updated
        if self.left == 0 and self.request is not None:
            self.request = None
            request.unregisterProducer()
            request.finish()
            self.handle.close()

    def stopProducing(self) -> None:  # noqa: N802 -- Twisted's name
        """The client went away."""
        self.request = None
        self.handle.close()


class RecordingEndpoint(ConsoleEndpoint):
    """``GET /console/api/recording?call=<id>``: a call's recording, with range requests."""

    roles = ("supervisor",)

    def __init__(self, console: Any, reads: Reads, folder: Path) -> None:  # noqa: ANN401
        super().__init__(console)
        self.reads = reads
        self.folder = Path(folder)

    def render_GET(self, request: Request) -> Any:  # noqa: N802, ANN401
        """The recording's bytes (200 whole, 206 a range), or a JSON refusal."""
        if request.postpath and request.postpath != [b""]:
            raise ApiError(404, "not_found", "ask for a recording by ?call=<id>")
        unknown = sorted(k.decode("ascii", "replace")[:20] for k in request.args
                         if k != b"call")
        if unknown:
            raise ApiError(400, "invalid_parameter",
                           f"only call=<id> is read, not {', '.join(unknown[:5])}")
        values = request.args.get(b"call") or []
        raw = values[0].decode("ascii", "replace") if len(values) == 1 else ""
        if not raw.isdigit() or len(raw) > 19 or not 1 <= int(raw) <= MAX_CALL_ID:
            raise ApiError(400, "invalid_parameter", "call must be one call log id (a number)")
        call_id = int(raw)
        staff = request.staff
        d = self.reads(_open, call_id, self.folder)
        gone: list[bool] = []
        request.notifyFinish().addErrback(lambda _: gone.append(True))

        def serve(opened: tuple[Path, Any, int]) -> None:
            path, handle, size = opened
            if gone:
                handle.close()
                return
            try:
                self._send(request, handle, path, size)
            except RangeNotSatisfiable as exc:
                handle.close()
                request.write(send_error(request, ApiError(
                    416, "range_not_satisfiable", str(exc),
                    {"Content-Range": f"bytes */{exc.size}"})))
                request.finish()
            except BaseException:
                handle.close()
                raise
            log.info("supervisor {sup} plays the recording of call {call}",
                     sup=staff.extension, call=call_id)

        def refused(failure: Any) -> None:  # noqa: ANN401 (Failure)
            if gone:
                return
            request.write(send_error(request, refusal(failure.value, request.method,
                                                      request.path, failure)))
            request.finish()

        d.addCallbacks(serve, refused)
        d.addErrback(lambda f: log.failure("recording of call {call} not served", f,
                                           call=call_id))
        return NOT_DONE_YET

    @staticmethod
    def _send(request: Request, handle: Any, path: Path, size: int) -> None:  # noqa: ANN401
        header = request.getHeader(b"range")
        wanted = byte_range(header.decode("latin-1") if isinstance(header, bytes)
                            else header, size)
        request.setHeader(b"Content-Type",
                          AUDIO_TYPES.get(path.suffix.lower(), b"application/octet-stream"))
        request.setHeader(b"Accept-Ranges", b"bytes")
        request.setHeader(b"Cache-Control", b"no-store")
        request.setHeader(b"X-Content-Type-Options", b"nosniff")
        if wanted is None:
            first, length = 0, size
            request.setResponseCode(200)
        else:
            first, length = wanted.first, wanted.length
            request.setResponseCode(206)
            request.setHeader(b"Content-Range", wanted.content_range.encode("ascii"))
        request.setHeader(b"Content-Length", str(length).encode("ascii"))
        if length == 0 or request.method == b"HEAD":
            handle.close()
            request.finish()
            return
        FileRange(request, handle, first, length).start()


def pool_reads(reactor: Any, pool: Any, sessions: Any) -> Reads:  # noqa: ANN401
    """Reads for the endpoints: ``fn(session, *args)`` in ``pool`` (a thread pool), in a
    transaction of ``sessions``: never on the reactor, never in the call log writer's way."""
    from twisted.internet.threads import deferToThreadPool

    from dispatcher.calllog.db import transaction

    def run(fn: Callable[..., Any], *args: Any) -> defer.Deferred[Any]:
        def work() -> Any:  # noqa: ANN401
            with transaction(sessions) as session:
                return fn(session, *args)

        return deferToThreadPool(reactor, pool, work)

    return run


def supervisor_endpoints(console: Any, spy: SpyService, reads: Reads,  # noqa: ANN401
                         recordings: Path) -> dict[str, ConsoleEndpoint]:
    """The supervisor's endpoints by name, for ``SiagaServer.console_endpoints``."""
    return {
        "spy": SpyEndpoint(console, spy),
        "recordings": RecentCallsEndpoint(console, reads),
        "recording": RecordingEndpoint(console, reads, recordings),
    }

