"""Reconciliation from Asterisk's own CEL records: calls made while the server was away.

Asterisk writes one CSV line per channel event with ``cel_custom`` (advanced mapping), into the
run directory, whether or not the siaga server is up. After a restart (or an AMI reconnect) the
server reads the lines it has not reconciled yet, rebuilds each finished journey with the same
state machine as the live tracker (:class:`dispatcher.calllog.machine.Journey`), and saves those
the log lacks or holds unfinished. Reconciling twice adds nothing: a finished call already in the
log is left alone, and a cursor remembers how far the file was read.

The CSV columns, in this order (``CEL_FIELDS``; cel_custom.conf ``fields =``)::

    eventtype,eventtime,cidnum,cidname,exten,context,channame,appname,appdata,
    uniqueid,linkedid,peer,extra

(the legacy mapping ``${CSV_QUOTE(${eventtype})},${CSV_QUOTE(${eventtime})},...`` in that
order gives them; its caller columns go through ``FILTER()``, see cel_custom.conf.j2). A field
may still hold a line break (CSV_QUOTE keeps them, and application arguments can carry one):
the file is read as one CSV stream (:func:`read_rows`), never split into lines first.
``eventtime`` is Asterisk's default ``<seconds>.<microseconds>``: cel.conf must not set
``dateformat`` (a formatted date would be in local time; ``%Y-%m-%d %H:%M:%S[.%f]`` is still read,
as UTC). cel.conf must track at least the
events CHAN_START, CHAN_END, ANSWER, HANGUP, BRIDGE_ENTER, BRIDGE_EXIT, BLINDTRANSFER,
ATTENDEDTRANSFER, USER_DEFINED, LINKEDID_END (``events = ALL`` does). Checked against a real
Asterisk 22.10: APP_START/APP_END never appear, so the queue is read from the dialplan's
``SIAGA_QUEUE``/``SIAGA_QUEUE_EXIT`` user events, or failing those from the ``appname`` column.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from dialplans import contract
from dispatcher.calllog import store_journeys
from dispatcher.calllog.directory import Directory
from dispatcher.calllog.machine import Journey
from dispatcher.calllog.marks import DIAL_APPS, mark_name, user_extra
from dispatcher.calllog.phases import Effect, JourneyEnded
from dispatcher.calllog.records import JourneyRecord

CEL_FIELDS = (
    "eventtype",
    "eventtime",
    "cidnum",
    "cidname",
    "exten",
    "context",
    "channame",
    "appname",
    "appdata",
    "uniqueid",
    "linkedid",
    "peer",
    "extra",
)

# What to put in cel_custom.conf for this reader (dialplans renders it into the run directory).
CEL_CUSTOM_FIELDS = ",".join(CEL_FIELDS)

# A journey whose LINKEDID_END never came (event not tracked, or Asterisk killed mid-call) is
# taken as finished when every channel ended and nothing happened to it for this long.
STALE_AFTER = 300.0


@dataclass(slots=True)
class CelRow:
    """One CEL record (slots: a minute of CEL under load is tens of thousands of rows)."""

    eventtype: str
    eventtime: float
    cidnum: str = ""
    cidname: str = ""
    exten: str = ""
    context: str = ""
    channame: str = ""
    appname: str = ""
    appdata: str = ""
    uniqueid: str = ""
    linkedid: str = ""
    peer: str = ""
    extra: str = ""
    offset: int = 0  # byte offset of the line in its file

    def extra_json(self) -> dict[str, object]:
        """The ``extra`` column parsed as the JSON object Asterisk writes there, or ``{}``."""
        text = self.extra.strip()
        if not text.startswith("{"):
            return {}
        try:
            data = json.loads(text)
        except ValueError:
            return {}
        return data if isinstance(data, dict) else {}


def parse_time(text: str) -> float:
    """Parse a CEL ``eventtime``: epoch seconds with decimals, or a UTC date and time."""
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    for fmt in ("%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%d %H:%M:%S"):
        try:
            return dt.datetime.strptime(text, fmt).replace(tzinfo=dt.UTC).timestamp()
        except ValueError:
            continue
    raise ValueError(f"unreadable CEL eventtime {text!r}")


def parse_line(line: str, offset: int = 0) -> CelRow:
    """Parse one CSV record in ``CEL_FIELDS`` order. Raises ValueError if it is not one."""
    return parse_fields(next(csv.reader([line])), offset)


def parse_fields(fields: list[str], offset: int = 0) -> CelRow:
    """A row from the fields of one CSV record. Raises ValueError if they are not a row."""
    if len(fields) != len(CEL_FIELDS):
        raise ValueError(f"CEL line has {len(fields)} fields, expected {len(CEL_FIELDS)}")
    values = dict(zip(CEL_FIELDS, fields, strict=True))
    return CelRow(
        eventtype=values["eventtype"],
        eventtime=parse_time(values["eventtime"]),
        cidnum=values["cidnum"],
        cidname=values["cidname"],
        exten=values["exten"],
        context=values["context"],
        channame=values["channame"],
        appname=values["appname"],
        appdata=values["appdata"],
        uniqueid=values["uniqueid"],
        linkedid=values["linkedid"],
        peer=values["peer"],
        extra=values["extra"],
        offset=offset,
    )


@dataclass
class ReadResult:
    """Rows read from a CEL file, and the records that could not be read."""

    rows: list[CelRow]
    end_offset: int  # just past the last complete record
    bad_lines: list[tuple[int, str]] = field(default_factory=list)


class _Lines:
    """The lines of ``data`` (split at LF only, ends kept), counting the bytes handed out."""

    def __init__(self, data: bytes, base: int) -> None:
        self._data = data
        self.position = base  # file offset just past the last line handed out
        self._base = base
        self._start = 0

    def __iter__(self) -> Iterator[str]:
        while self._start < len(self._data):
            end = self._data.find(b"\n", self._start) + 1 or len(self._data)
            raw = self._data[self._start:end]
            self._start = end
            self.position = self._base + end
            yield raw.decode("utf-8", errors="replace")


def read_rows(path: str, offset: int = 0) -> ReadResult:
    """Read the complete records of a CEL CSV file from ``offset``, as one CSV stream.

    A field may hold a line break (Asterisk's CSV_QUOTE quotes it but keeps it, and a caller
    ID or an application's arguments can carry one), so the file is never split into lines
    first: a quoted CR LF stays inside its field and cannot start a row of its own. A last
    record not yet ended by its newline is being written by Asterisk right now: it is left for
    the next read. Unreadable records are reported, not skipped silently.
    """
    rows: list[CelRow] = []
    bad: list[tuple[int, str]] = []
    # One string per distinct value: a journey's linkedid, its channels' names and uniqueids,
    # the event types and contexts repeat on row after row (a minute of CEL under load is tens
    # of thousands of rows; kept apart they were most of the reconciliation's memory).
    same: dict[str, str] = {}
    # Asterisk's user owns the directory: a link it put in the file's place must not make
    # this (root) process read, and report lines of, another file.
    with os.fdopen(os.open(path, os.O_RDONLY | os.O_NOFOLLOW), "rb") as f:
        f.seek(offset)
        data = f.read()
    data = data[: data.rfind(b"\n") + 1]  # only whole lines: the rest is still being written
    lines = _Lines(data, offset)
    reader = csv.reader(lines, strict=True)
    start = offset
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            if lines.position == offset + len(data) and "end of data" in str(exc):
                # A quoted field still open at the end: its record is still being written.
                return ReadResult(rows, start, bad)
            bad.append((start, f"{exc}: {data[start - offset:lines.position - offset][:200]!r}"))
            start = lines.position
            continue
        if fields and any(f.strip() for f in fields):
            try:
                rows.append(parse_fields([same.setdefault(f, f) for f in fields], start))
            except ValueError as exc:
                text = data[start - offset:lines.position - offset].decode("utf-8", "replace")
                bad.append((start, f"{exc}: {text[:200]}"))
        start = lines.position
    return ReadResult(rows, start, bad)


def group_by_linkedid(rows: Iterable[CelRow]) -> dict[str, list[CelRow]]:
    """Group rows by journey, each group in file order."""
    groups: dict[str, list[CelRow]] = {}
    for row in rows:
        groups.setdefault(row.linkedid or row.uniqueid, []).append(row)
    return groups


def merge_groups(groups: dict[str, list[CelRow]]) -> dict[str, list[CelRow]]:
    """Join the groups Asterisk started apart but that are one journey.

    An agency brought into a conference by an originated Local pair gets a linkedid of its
    own. Its group is joined to the earlier journey when the dialplan says so (a
    ``SIAGA_CALL`` user event naming the journey's linkedid), or when its first channel is a
    Local one and it enters a bridge that journey's channels are in. Rows keep file order.
    """
    firsts = {lid: min(r.eventtime for r in rows) for lid, rows in groups.items()}
    order = sorted(groups, key=lambda lid: firsts[lid])
    root: dict[str, str] = {lid: lid for lid in groups}

    def find(lid: str) -> str:
        while root[lid] != lid:
            lid = root[lid]
        return lid

    bridge_owner: dict[str, str] = {}
    for lid in order:
        rows = groups[lid]
        link = next((user_extra(r.extra) for r in rows if r.eventtype == contract.VAR_CALL), "")
        starts = [r for r in rows if r.eventtype == "CHAN_START"]
        local_first = bool(starts) and starts[0].channame.lower().startswith("local/")
        bridges = [
            str(r.extra_json().get("bridge_id", "")) for r in rows if r.eventtype == "BRIDGE_ENTER"
        ]
        target = None
        if link and link != lid and link in groups:
            target = link
        elif local_first:
            target = next((bridge_owner[b] for b in bridges if b in bridge_owner), None)
        if target is not None and find(target) != lid:
            root[lid] = find(target)
        for bridge in bridges:
            bridge_owner.setdefault(bridge, find(lid))
    merged: dict[str, list[CelRow]] = {}
    for lid in order:
        merged.setdefault(find(lid), []).extend(groups[lid])
    for rows in merged.values():
        rows.sort(key=lambda r: r.offset)
    return merged


def is_finished(rows: list[CelRow], newest: float, stale_after: float = STALE_AFTER) -> bool:
    """True when a journey's records are complete: LINKEDID_END for each linkedid in it, or
    every channel ended and nothing happened for ``stale_after`` seconds."""
    linkedids = {r.linkedid for r in rows}
    if linkedids <= {r.linkedid for r in rows if r.eventtype == "LINKEDID_END"}:
        return True
    started = {r.uniqueid for r in rows if r.eventtype == "CHAN_START"}
    ended = {r.uniqueid for r in rows if r.eventtype in ("CHAN_END", "HANGUP")}
    last = max(r.eventtime for r in rows)
    return bool(started) and started <= ended and newest - last >= stale_after


def build_journey(rows: list[CelRow], directory: Directory | None = None) -> JourneyRecord | None:
    """Rebuild one journey from its CEL rows (sans-IO); the earliest row's linkedid names it."""
    if not rows:
        return None
    first = min(rows, key=lambda r: r.eventtime)
    linkedid = first.linkedid or first.uniqueid
    journey = Journey(linkedid, directory or Directory(), source="cel")
    apps: dict[str, str] = {}
    # Stable sort: rows of the same microsecond keep Asterisk's order.
    effects: list[Effect] = []
    for row in sorted(rows, key=lambda r: r.eventtime):
        effects += _apply(journey, row, apps)
    effects += journey.finish()
    # Only the finished record is taken: an incident's hand-off seen here happened while the
    # server was away, and who is owed a callback is judged from the records of the pass
    # (``ReconcileResult.records``) by the server.
    return next((e.record for e in effects if isinstance(e, JourneyEnded)), None)


# Asterisk 22 raises no APP_START/APP_END (they are listed but never generated), so the queue
# shows only as the application a channel is running when its other records are written.


def _apply(j: Journey, row: CelRow, apps: dict[str, str]) -> list[Effect]:
    t, uid, kind = row.eventtime, row.uniqueid, row.eventtype
    effects: list[Effect] = []
    if kind == "CHAN_START":
        effects += j.chan_start(t, uid, row.channame, row.cidnum, row.cidname, row.exten)
    effects += j.caller_seen(uid, row.cidnum, row.cidname)
    if row.context in j.directory.outbound_contexts:
        effects += j.hint_outbound()  # the table ignores it once the record is open
    app = row.appname.lower()
    if kind == "ANSWER" and app not in DIAL_APPS:
        # A channel that answers to run dialplan applications, in a journey that had only
        # Local channels so far: the hotline runs on it (ignored once the record is open).
        effects += j.adopt_origin(uid)
    if kind not in ("HANGUP", "CHAN_END", "LINKEDID_END"):
        previous = apps.get(uid)
        if app != previous:
            if app == "queue":
                effects += j.queue_join(t, uid, row.appdata.split(",", 1)[0])
            elif previous == "queue":
                effects += j.queue_leave(t, uid)
            apps[uid] = app
    if kind == "ANSWER":
        effects += j.answer(t, uid)
    elif kind == "HANGUP":
        extra = row.extra_json()
        cause = extra.get("hangupcause")
        source = str(extra.get("hangupsource", ""))
        by_self = None if not source else source == row.channame
        effects += j.hangup(
            t,
            uid,
            int(cause) if isinstance(cause, int | str) and str(cause).isdigit() else None,
            by_self=by_self,
        )
    elif kind == "CHAN_END":
        effects += j.hangup(t, uid)
    elif kind in ("APP_START", "APP_END"):
        # Listed by Asterisk but not raised by 22; read if a version ever does.
        argument = row.appdata.split(",", 1)[0]
        if app == "queue":
            if kind == "APP_START":
                effects += j.queue_join(t, uid, argument)
            else:
                effects += j.queue_leave(t, uid)
        elif app == "mixmonitor" and kind == "APP_START":
            effects += j.recording_start(t, uid, argument)
    elif kind in ("BRIDGE_ENTER", "BRIDGE_EXIT"):
        bridge = str(row.extra_json().get("bridge_id", "")) or row.peer
        if kind == "BRIDGE_ENTER":
            effects += j.bridge_enter(t, uid, bridge)
        else:
            effects += j.bridge_exit(t, uid, bridge)
    elif kind == "DTMF":
        digit = str(row.extra_json().get("digit", ""))
        if digit:
            effects += j.dtmf(t, uid, digit, row.context)
    elif kind in ("BLINDTRANSFER", "ATTENDEDTRANSFER", "PICKUP", "FORWARD"):
        effects += j.event(t, kind.lower(), row.channame, extra=row.extra)
    elif (mark := mark_name(kind)) is not None:
        effects += j.mark(t, uid, mark, user_extra(row.extra))
    return effects


@dataclass
class ReconcileResult:
    """What one reconciliation pass did."""

    rows_read: int = 0
    journeys_seen: int = 0
    saved: list[str] = field(default_factory=list)  # linkedids added or completed
    records: list[JourneyRecord] = field(default_factory=list)  # the journeys saved
    skipped: int = 0  # finished journeys already in the log
    unfinished: int = 0  # journeys still in progress at the end of the file
    bad_lines: list[tuple[int, str]] = field(default_factory=list)
    offset: int = 0


def reconcile(
    session: Session,
    path: str,
    directory: Directory | None = None,
    stale_after: float = STALE_AFTER,
) -> ReconcileResult:
    """Add to the log every finished journey of the CEL file at ``path`` it lacks (blocking).

    Runs in one transaction of ``session`` (the caller commits; the writer thread does). The
    cursor moves only past journeys that are finished, so a call still in progress when the file
    was read is read again next time.
    """
    result = ReconcileResult()
    if not os.path.exists(path):
        return result
    stat = os.stat(path)
    offset = store_journeys.cel_cursor(session, path, stat.st_ino, stat.st_size)
    read = read_rows(path, offset)
    result.rows_read, result.bad_lines = len(read.rows), read.bad_lines
    groups = merge_groups(group_by_linkedid(read.rows))
    newest = max((r.eventtime for r in read.rows), default=0.0)
    keep_from = read.end_offset
    for linkedid, rows in groups.items():
        result.journeys_seen += 1
        if not is_finished(rows, newest, stale_after):
            result.unfinished += 1
            keep_from = min(keep_from, rows[0].offset)
            continue
        if store_journeys.has_finished_call(session, linkedid):
            result.skipped += 1
            continue
        record = build_journey(rows, directory)
        if record is None:
            continue
        store_journeys.save_journey(session, record)
        result.saved.append(linkedid)
        result.records.append(record)
    store_journeys.set_cel_cursor(session, path, stat.st_ino, keep_from)
    result.offset = keep_from
    return result


def iter_lines(rows: Iterable[CelRow]) -> Iterator[str]:
    """Write rows back as CSV lines in ``CEL_FIELDS`` order (tests and tools)."""
    for row in rows:
        values = [getattr(row, name) for name in CEL_FIELDS]
        values[1] = f"{row.eventtime:.6f}"
        out = io.StringIO()
        csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\n").writerow(values)
        yield out.getvalue()
