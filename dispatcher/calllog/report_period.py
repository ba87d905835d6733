"""The period a supervisor report covers, and local-day arithmetic in SQL.

:class:`ReportOptions` turns local dates into UTC bounds; :class:`local_hour` is the hour of day
of a UTC timestamp in the report's zone, compiled for SQLite and for PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import (
    Integer,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import FunctionElement

from dispatcher.calllog.report_render import TEXT


@dataclass(frozen=True)
class ReportOptions:
    """What a report covers: local dates ``start``..``end`` inclusive, in ``timezone``."""

    start: dt.date
    end: dt.date
    timezone: str = "Asia/Jakarta"
    short_abandon_seconds: float = 5.0
    language: str = "id"
    top_repeat_callers: int = 10

    MAX_DAYS = 400  # a report over more than a year is a mistake, not a request

    @classmethod
    def parse(
        cls,
        start: str,
        end: str,
        language: str = "id",
        timezone: str = "Asia/Jakarta",
        short_abandon_seconds: str | float = 5.0,
    ) -> ReportOptions:
        """Options from untrusted text (a query string): raises ValueError with a reason."""
        try:
            first, last = dt.date.fromisoformat(start), dt.date.fromisoformat(end)
        except (TypeError, ValueError):
            raise ValueError("dates must be YYYY-MM-DD") from None
        if last < first:
            raise ValueError("the period ends before it starts")
        if (last - first).days >= cls.MAX_DAYS:
            raise ValueError(f"the period is longer than {cls.MAX_DAYS} days")
        if language not in TEXT:
            raise ValueError(f"language must be one of {', '.join(sorted(TEXT))}")
        try:
            ZoneInfo(timezone)
        except (ValueError, KeyError, OSError):
            raise ValueError("unknown time zone") from None
        try:
            short = float(short_abandon_seconds)
        except (TypeError, ValueError):
            raise ValueError("short abandon threshold must be a number of seconds") from None
        if not 0 <= short <= 600:
            raise ValueError("short abandon threshold must be between 0 and 600 s")
        return cls(first, last, timezone, short, language)

    def utc_bounds(self) -> tuple[dt.datetime, dt.datetime]:
        """The period as ``[start, end)`` in UTC."""
        zone = ZoneInfo(self.timezone)
        start = dt.datetime.combine(self.start, dt.time(), zone)
        end = dt.datetime.combine(self.end + dt.timedelta(days=1), dt.time(), zone)
        return start.astimezone(dt.UTC), end.astimezone(dt.UTC)

    def utc_offset_minutes(self) -> int:
        """The zone's offset at the start of the period (Indonesian zones have no DST)."""
        offset = dt.datetime.combine(self.start, dt.time(12), ZoneInfo(self.timezone)).utcoffset()
        return int(offset.total_seconds() // 60) if offset else 0


# --------------------------------------------------------------------------------------------
# SQL helpers that differ between SQLite and PostgreSQL


class local_hour(FunctionElement[int]):
    """The hour of day (0-23) of a UTC timestamp column, shifted by whole minutes.

    ``local_hour(column, literal(minutes))``.
    """

    type = Integer()
    # Not cached: the SQLite form inlines a whole-hour offset, which a cached statement would
    # then reuse for another zone. Reports are rare; compiling them each time costs nothing.
    inherit_cache = False
    name = "local_hour"


@compiles(local_hour, "sqlite")
def _local_hour_sqlite(element: local_hour, compiler: Any, **kw: Any) -> str:
    # SQLAlchemy stores SQLite timestamps as "YYYY-MM-DD HH:MM:SS.ffffff": cutting the hour
    # (and minute) out of the text costs far less per row than strftime() parsing it.
    column, minutes = list(element.clauses)
    col = compiler.process(column, **kw)
    value = getattr(minutes, "value", None)
    if isinstance(value, int) and value % 60 == 0:
        # Whole-hour zones (all of Indonesia's): the hour alone decides.
        return f"((CAST(substr({col}, 12, 2) AS INTEGER) + {value // 60 % 24 + 24}) % 24)"
    offset = compiler.process(minutes, **kw)
    return (
        f"((((CAST(substr({col}, 12, 2) AS INTEGER) * 60 + CAST(substr({col}, 15, 2) AS INTEGER)"
        f" + {offset}) % 1440) + 1440) % 1440 / 60)"
    )


@compiles(local_hour, "postgresql")
def _local_hour_postgresql(element: local_hour, compiler: Any, **kw: Any) -> str:
    column, minutes = list(element.clauses)
    return (
        f"CAST(EXTRACT(HOUR FROM {compiler.process(column, **kw)} "
        f"+ make_interval(mins => CAST({compiler.process(minutes, **kw)} AS INTEGER))) AS INTEGER)"
    )
