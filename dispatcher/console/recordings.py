"""Supervisors play a call's recording: which file, which bytes (pure, and one DB read).

The file is found from the call log alone: the recording rows of the call whose id the page
gives (a number, a lookup key and nothing more). The path in the row must resolve, links
followed, to a file inside the recordings directory; anything else is refused, so neither a
request nor a row that someone tampered with can make the server read another file.

Browsers fetch audio in pieces (``Range: bytes=...``); :func:`byte_range` reads that header
for a file of a given size (RFC 9110 section 14): one range, answered 206 with its bytes; a
range past the end, 416; a header it cannot read, or several ranges, the whole file (a
server may always ignore Range).
"""

from __future__ import annotations

import datetime as dt
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from dispatcher.console.calls import ConsoleError

__all__ = ["ByteRange", "NoRecording", "RangeNotSatisfiable", "byte_range", "recent_calls",
           "recording_file"]

_RANGE_RE = re.compile(r"^bytes=(\d{0,19})-(\d{0,19})$")


class NoRecording(ConsoleError):
    """The call has no recording the server may serve."""


class RangeNotSatisfiable(ConsoleError):
    """The asked range starts past the file's end (416, with the file's size)."""

    def __init__(self, size: int) -> None:
        super().__init__(f"the range is outside the recording's {size} bytes")
        self.size = size


@dataclass(frozen=True)
class ByteRange:
    """Bytes ``first`` to ``last`` (both included) of a file of ``size`` bytes."""

    first: int
    last: int
    size: int

    @property
    def length(self) -> int:
        """How many bytes."""
        return self.last - self.first + 1

    @property
    def content_range(self) -> str:
        """The ``Content-Range`` header's value."""
        return f"bytes {self.first}-{self.last}/{self.size}"


def byte_range(header: str | None, size: int) -> ByteRange | None:
    """The range a ``Range`` header asks of a file of ``size`` bytes; None: the whole file.

    ``bytes=a-b`` (b past the end is cut to it), ``bytes=a-``, ``bytes=-n`` (the last n).
    Raises :class:`RangeNotSatisfiable` when the range holds no byte of the file.
    """
    if header is None:
        return None
    found = _RANGE_RE.match(header.strip())
    if found is None:
        return None  # several ranges, another unit, garbage: ignored, the whole file
    first_text, last_text = found.groups()
    if not first_text and not last_text:
        return None
    if not first_text:  # a suffix: the last n bytes
        count = int(last_text)
        if count == 0 or size == 0:
            raise RangeNotSatisfiable(size)
        return ByteRange(max(0, size - count), size - 1, size)
    first = int(first_text)
    last = int(last_text) if last_text else size - 1
    if last_text and last < first:
        return None  # not a valid range: ignored
    if first >= size:
        raise RangeNotSatisfiable(size)
    return ByteRange(first, min(last, size - 1), size)


def recording_file(session: Session, call_id: int, folder: Path) -> Path:
    """The recording of call ``call_id`` (the call log's id), resolved inside ``folder``.

    The first of the call's recordings that exists there; raises :class:`NoRecording`
    when the call has none, or when a row's path leads out of the folder.
    """
    from dispatcher.calllog.models import Recording

    paths = session.scalars(select(Recording.path).where(Recording.call_id == call_id)
                            .order_by(Recording.started_at, Recording.id)).all()
    if not paths:
        raise NoRecording(f"call {call_id} has no recording")
    root = Path(os.path.realpath(folder))
    for stored in paths:
        resolved = Path(os.path.realpath(stored))
        if not resolved.is_relative_to(root) or resolved == root:
            raise NoRecording(f"call {call_id}'s recording is not in the recordings folder")
        if resolved.is_file():
            return resolved
    raise NoRecording(f"call {call_id}'s recording is gone (removed after its retention?)")


def recent_calls(session: Session, limit: int = 30) -> list[dict[str, Any]]:
    """The latest finished calls (not the center's own: self-test, spy calls), newest
    first, each with whether it has a recording: the supervisor's list to play from (a call
    in progress is on the desks; its recording is listed once the call log has it)."""
    from dispatcher.calllog.models import Call, Recording

    calls = session.scalars(select(Call).where(Call.test.is_(False),
                                               Call.outcome != "in_progress")
                            .order_by(Call.started_at.desc(), Call.id.desc())
                            .limit(limit)).all()
    ids = [c.id for c in calls]
    recorded = set(session.scalars(select(Recording.call_id)
                                   .where(Recording.call_id.in_(ids))).all()) if ids else set()
    return [{
        "id": c.id, "linkedid": c.linkedid, "caller": c.caller_number,
        "started_at": _epoch(c.started_at), "duration_s": c.duration_seconds,
        "outcome": c.outcome, "category": c.category or "",
        "recording": c.id in recorded,
    } for c in calls]


def _epoch(value: dt.datetime | None) -> float | None:
    return None if value is None else value.timestamp()
