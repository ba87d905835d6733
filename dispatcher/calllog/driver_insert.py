"""Inserts compiled once by SQLAlchemy and run on the database driver's own cursor.

The alert path writes four rows per alert (incident, alert, its first transition, the
callback owed) at up to a thousand alerts a second, in group-committed batches. Through
SQLAlchemy's Core each statement costs about 0.1 ms of Python before the database sees it
(cache key, parameter processing, result objects), and a batch runs seven of them: measured
on SQLite, 1.2 ms for a batch of one alert of which the database's own work (the inserts and
the durable commit) was 0.28 ms. At a thousand alerts a second that overhead alone kept the
writer thread busy and the group commit's batches small.

:class:`DriverInsert` keeps what matters from SQLAlchemy: the SQL is compiled by SQLAlchemy
from the table (the columns' names and the dialect's placeholders), and every value passes
through its column type's bind processor, so a row is stored exactly as the ORM would store it
(a SQLite datetime is the same text either way; ``test_driver_insert`` compares). What it
skips is the per-execution machinery.

New rows' ids come back in the rows' order:

* SQLite: one ``INSERT ... RETURNING id`` per row on the cursor (the driver caches the
  prepared statement; about 10 µs a row in process), so the order is the order of execution,
  not an assumption about the order of a multi-row RETURNING;
* PostgreSQL (psycopg 3): ``executemany(..., returning=True)``, one result per row in order,
  sent in one pipeline (one round trip for the batch, not one per row).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Table, insert
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.exc import DBAPIError

__all__ = ["DriverInsert"]


class DriverInsert:
    """An INSERT of ``columns`` into ``table`` for one dialect, run on the driver's cursor.

    ``returning_id`` adds ``RETURNING id`` and makes :meth:`run` return the new ids in the
    rows' order. Rows are tuples in ``columns``' order.
    """

    def __init__(self, table: Table, columns: Sequence[str], dialect: Dialect,
                 returning_id: bool = False) -> None:
        for name in columns:
            if name not in table.c:
                raise ValueError(f"{table.name} has no column {name!r}")
        self.table = table
        self.columns = tuple(columns)
        self.dialect_name = dialect.name
        self.returning_id = returning_id
        statement = insert(table)
        if returning_id:
            statement = statement.returning(table.c.id)
        compiled = statement.compile(dialect=dialect, column_keys=list(self.columns))
        self.sql = str(compiled)
        if compiled.positional:
            order = [self.columns.index(key) for key in compiled.positiontup or ()]
            if sorted(order) != list(range(len(self.columns))):
                raise ValueError(f"unexpected parameters in {self.sql!r}")
            self._order: list[int] | None = order
        else:
            self._order = None  # named parameters: a dict per row
        self._processors: list[Callable[[Any], Any] | None] = [
            table.c[name].type.dialect_impl(dialect).bind_processor(dialect)
            for name in self.columns]

    def _bound(self, row: Sequence[Any]) -> Any:
        values = [value if process is None or value is None else process(value)
                  for value, process in zip(row, self._processors, strict=True)]
        if self._order is None:
            return dict(zip(self.columns, values, strict=True))
        return tuple(values[i] for i in self._order)

    def run(self, connection: Connection, rows: Sequence[Sequence[Any]]) -> list[int]:
        """Insert ``rows`` within ``connection``'s transaction; the new ids if
        ``returning_id`` (in the rows' order), else an empty list."""
        if connection.dialect.name != self.dialect_name:
            raise ValueError(f"compiled for {self.dialect_name}, "
                             f"not {connection.dialect.name}")
        if not rows:
            return []
        params = [self._bound(row) for row in rows]
        dbapi = connection.dialect.loaded_dbapi
        cursor = connection.connection.cursor()
        try:
            return self._execute(cursor, params)
        except dbapi.Error as exc:
            # As SQLAlchemy would raise it (IntegrityError, OperationalError, ...), so the
            # callers' rules (a unique race redone singly, a database away held and retried)
            # see the same exceptions on this path as on the ORM's. A lost connection is
            # invalidated so the pool does not hand it out again.
            lost = connection.dialect.is_disconnect(exc, connection.connection, cursor)
            if lost:
                connection.invalidate(exc)
            raise DBAPIError.instance(self.sql, None, exc, dbapi.Error,
                                      connection_invalidated=lost,
                                      dialect=connection.dialect) from exc
        finally:
            cursor.close()

    def _execute(self, cursor: Any, params: list[Any]) -> list[int]:
        if not self.returning_id:
            cursor.executemany(self.sql, params)
            return []
        if self.dialect_name == "postgresql":
            cursor.executemany(self.sql, params, returning=True)
            ids: list[int] = []
            while True:
                ids.append(cursor.fetchone()[0])
                if not cursor.nextset():
                    break
            return ids
        out = []
        for one in params:
            cursor.execute(self.sql, one)
            out.append(cursor.fetchone()[0])
        return out
