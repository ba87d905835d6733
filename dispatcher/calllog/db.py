"""Engines and schema upgrades for the call log (SQLite by default, PostgreSQL supported).

Everything here blocks: call it at start-up before the reactor runs, or from the writer's
thread, never from a reactor callback.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

from pbx.privilege import private_file

DEFAULT_DB_FILE = "siaga.db"


def default_url(state_dir: str) -> str:
    """Return the URL of the default SQLite database inside ``state_dir``."""
    return "sqlite:///" + os.path.join(os.path.abspath(state_dir), DEFAULT_DB_FILE)


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # pysqlite's own transaction handling emits BEGIN only before INSERT/UPDATE/DELETE, so a
    # SAVEPOINT opened first (``commit_alerts``) started a transaction of its own and its
    # RELEASE committed it, whatever the enclosing transaction did later. pysqlite is told
    # to stay out of it and SQLAlchemy's "begin" event emits the BEGIN (SQLAlchemy's
    # documented pysqlite recipe).
    dbapi_connection.isolation_level = None
    # WAL lets the reports read while the writer writes; foreign keys are off by default in
    # SQLite; synchronous=FULL because an alert must survive a power cut once acknowledged.
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=10000")
        mode = cursor.execute("PRAGMA journal_mode").fetchone()[0]
        if mode != "memory":
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
    finally:
        cursor.close()


def _sqlite_begin(connection: Any) -> None:
    connection.exec_driver_sql("BEGIN")


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Create an engine for ``url`` with the settings the call log relies on.

    SQLite: WAL journal, foreign keys on, a busy timeout, usable from the writer thread.
    ``sqlite://`` (in memory) shares one connection so every session sees the same database.
    PostgreSQL: ``postgresql+psycopg://`` (psycopg 3) is used for a bare ``postgresql://``.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        connect_args = kwargs.pop("connect_args", {})
        connect_args.setdefault("check_same_thread", False)
        if parsed.database in (None, "", ":memory:"):
            kwargs.setdefault("poolclass", StaticPool)
        elif Path(parsed.database).parent.is_dir():
            # SQLite would create it 0644 under the usual umask; its WAL and shared-memory
            # files copy the database file's mode, so this one makes them private too.
            private_file(Path(parsed.database))
        engine = create_engine(parsed, connect_args=connect_args, **kwargs)
        event.listen(engine, "connect", _sqlite_on_connect)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(parsed, **kwargs)


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    """Return the session factory every DAO call uses (objects stay readable after commit)."""
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """Yield a session whose work is committed at the end, or rolled back on any exception."""
    with factory() as session, session.begin():
        yield session


def _alembic_config() -> Config:
    cfg = Config()
    location = resources.files("dispatcher.calllog") / "migrations"
    cfg.set_main_option("script_location", str(location))
    return cfg


def upgrade(url: str | Engine, revision: str = "head") -> str | None:
    """Bring the schema at ``url`` (or an engine) to ``revision``; return the revision reached.

    Safe to call at every start: at head already, it changes nothing.
    """
    engine = make_engine(url) if isinstance(url, str) else url
    try:
        cfg = _alembic_config()
        with engine.begin() as connection:
            cfg.attributes["connection"] = connection
            command.upgrade(cfg, revision)
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        if isinstance(url, str):
            engine.dispose()


def current_revision(engine: Engine) -> str | None:
    """Return the schema revision of the database, or None when it was never upgraded."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str | None:
    """Return the newest revision the packaged migrations know."""
    return ScriptDirectory.from_config(_alembic_config()).get_current_head()
