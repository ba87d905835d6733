"""Which files to delete: pure rules over a list of files, plus the blocking helpers that
list a folder, read which recordings must be kept, and delete.

Rules, in order:

1. A protected file (a recording of an open incident, of a callback still owed, of a call
   in progress) is never deleted, whatever its age or the cap. It still counts in the total.
2. A file changed less than :data:`MIN_AGE` ago is never deleted: it may be a recording
   being written, or one of a call the log does not know yet (the server was down and CEL
   has not been reconciled).
3. Files older than the age limit go.
4. While the total is above the size cap, the oldest remaining files go, oldest first.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from dispatcher.alerts.incident import FINAL_STATES
from dispatcher.callbacks.states import OPEN_STATES
from dispatcher.calllog.models import Call, Callback, Incident, Recording

__all__ = ["MIN_AGE", "FileInfo", "Pass", "choose", "delete", "protected_recordings", "scan"]

MIN_AGE = 3600.0  # seconds: younger files are never deleted (rule 2)


@dataclass(frozen=True, slots=True)
class FileInfo:
    """A file as listed: its path, size in bytes, last change (seconds since the epoch)."""

    path: Path
    size: int
    mtime: float


@dataclass
class Pass:
    """What one pass over a folder did."""

    deleted: list[Path] = field(default_factory=list)
    freed: int = 0
    kept_protected: int = 0
    total_after: int = 0
    over_cap: bool = False  # protected or young files alone exceed the cap
    errors: list[str] = field(default_factory=list)


def choose(files: Iterable[FileInfo], now: float, max_age: float = 0.0, max_total: int = 0,
           protected: frozenset[str] | set[str] = frozenset()) -> tuple[list[FileInfo], Pass]:
    """The files to delete (oldest first) under the module's rules, and the pass's figures.

    ``max_age`` in seconds and ``max_total`` in bytes; 0 means no limit of that kind.
    ``protected`` holds file names (not paths).
    """
    result = Pass()
    ordered = sorted(files, key=lambda f: (f.mtime, f.path.name))
    deletable = []
    for f in ordered:
        if f.path.name in protected:
            result.kept_protected += 1
        elif now - f.mtime >= MIN_AGE:
            deletable.append(f)
    total = sum(f.size for f in ordered)
    doomed: list[FileInfo] = []
    if max_age > 0:
        doomed = [f for f in deletable if now - f.mtime > max_age]
        total -= sum(f.size for f in doomed)
    if max_total > 0:
        chosen = set(doomed)
        for f in deletable:
            if total <= max_total:
                break
            if f not in chosen:
                doomed.append(f)
                total -= f.size
        result.over_cap = total > max_total
    doomed.sort(key=lambda f: (f.mtime, f.path.name))
    result.total_after = total
    return doomed, result


def scan(folder: Path, suffixes: tuple[str, ...] = (), exclude: tuple[str, ...] = ()
         ) -> list[FileInfo]:
    """The regular files directly in ``folder`` (symbolic links are not followed, so a link
    never makes the pass delete something elsewhere). Blocking."""
    out = []
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return []
    for entry in entries:
        if not entry.is_file(follow_symlinks=False) or entry.name in exclude:
            continue
        if suffixes and not entry.name.endswith(suffixes):
            continue
        try:
            st = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue  # gone meanwhile
        out.append(FileInfo(Path(entry.path), st.st_size, st.st_mtime))
    return out


def delete(doomed: list[FileInfo], result: Pass) -> Pass:
    """Delete the chosen files (blocking); a file that cannot be deleted is noted, and the
    rest go on."""
    for f in doomed:
        try:
            f.path.unlink()
        except FileNotFoundError:
            continue
        except OSError as exc:
            result.errors.append(f"{f.path.name}: {exc.strerror}")
            result.total_after += f.size
            continue
        result.deleted.append(f.path)
        result.freed += f.size
    return result


def protected_recordings(session: Session) -> set[str]:
    """File names of the recordings that must be kept: those of calls in progress, of calls
    of an incident that is not closed or cancelled, and of calls whose callback is still owed
    (the file a recording is written to is named after the call's linked id)."""
    open_incidents = select(Incident.id).where(Incident.state.not_in(list(FINAL_STATES)))
    owed = select(Callback.origin_call_id).where(Callback.state.in_(OPEN_STATES),
                                                  Callback.origin_call_id.is_not(None))
    owed_incidents = select(Callback.incident_id).where(Callback.state.in_(OPEN_STATES),
                                                        Callback.incident_id.is_not(None))
    calls = session.execute(select(Call.id, Call.linkedid).where(or_(
        Call.outcome == "in_progress",
        Call.incident_id.in_(open_incidents),
        Call.incident_id.in_(owed_incidents),
        Call.id.in_(owed),
    ))).all()
    names = {f"{linkedid}.wav" for _id, linkedid in calls}
    names.update(f"{linkedid}.wav" for linkedid in session.scalars(
        select(Callback.result_linkedid).where(Callback.state.in_(OPEN_STATES),
                                               Callback.result_linkedid.is_not(None))))
    ids = [call_id for call_id, _ in calls]
    for start in range(0, len(ids), 500):  # bounded IN lists
        names.update(os.path.basename(p) for p in session.scalars(
            select(Recording.path).where(Recording.call_id.in_(ids[start:start + 500]))))
    return names
