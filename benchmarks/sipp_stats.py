"""Reading what a load run leaves behind: SIPp's CSV files, pcap durations, CPU counters.

Pure functions on text and bytes (no processes, no clock), used by benchmarks/capacity.py
and tested in tests/unit/phone/test_sipp_stats.py.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path


def read_sipp_csv(text: str) -> list[dict[str, str]]:
    """Rows of a SIPp CSV file (``-trace_stat``'s statistics or ``-trace_rtt``'s response
    times): ``;``-separated with a header line; SIPp ends each line with a ``;`` too, and may
    repeat the header when a file is appended to."""
    rows: list[dict[str, str]] = []
    header: list[str] | None = None
    for line in text.splitlines():
        cells = line.rstrip().rstrip(";").split(";")
        if not line.strip():
            continue
        if header is None or cells == header:
            header = cells
            continue
        if len(cells) != len(header):
            continue  # a line cut short by a process still writing the file
        rows.append(dict(zip(header, cells, strict=True)))
    return rows


def last_count(rows: Sequence[dict[str, str]], column: str) -> int:
    """The value of a cumulative counter (e.g. ``SuccessfulCall(C)``) in the last row; 0
    when there is no row yet."""
    if not rows:
        return 0
    return int(float(rows[-1].get(column) or 0))


def peak(rows: Iterable[dict[str, str]], column: str) -> int:
    """The highest value a gauge (e.g. ``CurrentCall``) reached over the rows."""
    return max((int(float(r.get(column) or 0)) for r in rows), default=0)


def rtd_samples(rows: Iterable[dict[str, str]]) -> dict[str, list[float]]:
    """Response times in milliseconds per timer, from ``-trace_rtt`` rows
    (``Date_ms;response_time_ms;rtd_no``)."""
    out: dict[str, list[float]] = {}
    for row in rows:
        name = row.get("rtd_no", "")
        value = row.get("response_time_ms", "")
        try:
            out.setdefault(name, []).append(float(value))
        except ValueError:
            continue
    return out


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0..100) by linear interpolation between closest ranks (as
    numpy's default); None for no values."""
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be within 0..100, not {q}")
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def pcap_seconds(data: bytes) -> float:
    """How long a pcap file plays: last packet's time minus the first's. Reads both byte
    orders and both time resolutions (micro- and nanoseconds)."""
    if len(data) < 24:
        raise ValueError("not a pcap file: shorter than its header")
    magics = {0xA1B2C3D4: 1e-6, 0xA1B23C4D: 1e-9}
    for order in "<>":
        (magic,) = struct.unpack(order + "I", data[:4])
        if magic in magics:
            unit = magics[magic]
            break
    else:
        raise ValueError("not a pcap file: unknown magic number")
    first = last = None
    offset = 24
    while offset + 16 <= len(data):
        sec, frac, incl, _orig = struct.unpack(order + "IIII", data[offset:offset + 16])
        stamp = sec + frac * unit
        first = stamp if first is None else first
        last = stamp
        offset += 16 + incl
    return 0.0 if first is None or last is None else last - first


def process_cpu_ticks(stat: str) -> int:
    """utime + stime (clock ticks) from the text of ``/proc/<pid>/stat``. The command name
    sits in parentheses and may hold spaces or parentheses itself: fields are counted from
    the last ``)``."""
    rest = stat[stat.rindex(")") + 1:].split()
    # rest[0] is field 3 (state); utime and stime are fields 14 and 15.
    return int(rest[11]) + int(rest[12])


@dataclass(frozen=True)
class MachineTicks:
    """The machine's CPU counters (first line of /proc/stat), in clock ticks."""

    busy: int
    total: int

    @classmethod
    def parse(cls, stat: str) -> MachineTicks:
        """From the text of /proc/stat."""
        cpu = next(line for line in stat.splitlines() if line.startswith("cpu "))
        values = [int(v) for v in cpu.split()[1:]]
        # idle and iowait are the 4th and 5th values; guest time is already in user/nice.
        idle = values[3] + (values[4] if len(values) > 4 else 0)
        total = sum(values[:8])
        return cls(busy=total - idle, total=total)

    def busy_share(self, later: MachineTicks) -> float:
        """The share of all cores busy between this reading and ``later`` (0.0 .. 1.0)."""
        total = later.total - self.total
        return (later.busy - self.busy) / total if total > 0 else 0.0


def highest_clean(steps: Iterable[tuple[int, int]]) -> int:
    """The highest concurrency among (concurrency, failed calls) steps with no failure, not
    counting any step after the first that failed (a ramp stops being clean there)."""
    best = 0
    for concurrency, failed in steps:
        if failed:
            break
        best = max(best, concurrency)
    return best


def double_booked(queue_logs: list[Path]) -> int:
    """Calls a desk was connected to while it was still connected to another, from the
    queues' own logs (Asterisk's ``queue_log`` files, one per node): ``CONNECT`` and the
    ``COMPLETE*`` that ends it, per desk (the member's name), across the files; the times
    are whole seconds, so only overlaps of a second or more count. A real desk phone refuses
    a second call (486), as the edge does for a desk busy at the other node; a SIPp desk
    answers it. So the straight way's calls that double-booked a desk would not have been
    carried by real phones: counting them says how generous that baseline is."""
    connected: dict[str, tuple[str, int]] = {}  # callid → (desk, connected at)
    spans: dict[str, list[tuple[int, int]]] = {}  # desk → (connected, ended) of its calls
    for path in queue_logs:
        if not path.exists():
            continue
        for line in path.read_text(errors="replace").splitlines():
            fields = line.split("|")
            if len(fields) < 5 or not fields[0].isdigit():
                continue
            at, callid, desk, verb = int(fields[0]), fields[1], fields[3], fields[4]
            if verb == "CONNECT":
                connected[callid] = (desk, at)
            elif verb in ("COMPLETECALLER", "COMPLETEAGENT") and callid in connected:
                desk, began = connected.pop(callid)
                spans.setdefault(desk, []).append((began, at))
    count = 0
    for calls in spans.values():
        calls.sort()
        busy_until = None
        for began, ended in calls:
            if busy_until is not None and began < busy_until:
                count += 1
            busy_until = ended if busy_until is None else max(busy_until, ended)
    return count
