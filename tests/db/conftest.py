"""Database fixtures: every store test runs on SQLite and on a real PostgreSQL server.

The PostgreSQL server is Debian's (``postgresql`` 15, installed with apt-get when missing), run
as a private cluster in a temporary directory on a free loopback port for the test session, as
the ``postgres`` user, and stopped at the end. Each test gets a fresh, upgraded database.
"""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from dispatcher.calllog import db
from tests import ports


def _free_port() -> int:
    # Not the kernel's bind(0): initdb runs between the choice and the server's bind, and
    # another worker or test run could be handed the port meanwhile (see tests.ports).
    return ports.free_port()


def _pg_bin() -> str:
    """The bin directory of the newest installed PostgreSQL; installs Debian's if none."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "postgresql"],
            check=True,
            env=env,
        )
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        pytest.fail("PostgreSQL is not installed and apt-get could not install it")
    return os.path.dirname(found[-1])


def _as_postgres(*argv: str) -> list[str]:
    # initdb and the server refuse to run as root.
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *argv]
    return list(argv)


@dataclass
class PostgresServer:
    """A private PostgreSQL cluster for the test session."""

    bin_dir: str
    data_dir: str
    port: int
    log: str

    def url(self, database: str = "postgres") -> str:
        """SQLAlchemy URL of a database on this server (trust auth on loopback)."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def admin(self, sql: str) -> None:
        """Run one statement outside a transaction (CREATE/DROP DATABASE)."""
        import psycopg

        with psycopg.connect(
            host="127.0.0.1", port=self.port, user="postgres", dbname="postgres", autocommit=True
        ) as conn:
            conn.execute(sql)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """Start a throw-away PostgreSQL cluster; stop and delete it after the session."""
    bin_dir = _pg_bin()
    root = tempfile.mkdtemp(prefix="siaga-pg-")
    data, log = os.path.join(root, "data"), os.path.join(root, "server.log")
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    subprocess.run(
        _as_postgres(
            os.path.join(bin_dir, "initdb"),
            "-D",
            data,
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--no-sync",
        ),
        check=True,
        capture_output=True,
    )
    port = _free_port()
    options = (
        f"-p {port} -c listen_addresses=127.0.0.1 -k {root} "
        "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    )
    subprocess.run(
        _as_postgres(
            os.path.join(bin_dir, "pg_ctl"),
            "-D",
            data,
            "-o",
            options,
            "-l",
            log,
            "-w",
            "-t",
            "60",
            "start",
        ),
        check=True,
        capture_output=True,
    )
    server = PostgresServer(bin_dir, data, port, log)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                server.admin("SELECT 1")
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        yield server
    finally:
        subprocess.run(
            _as_postgres(os.path.join(bin_dir, "pg_ctl"), "-D", data, "-m", "fast", "-w", "stop"),
            check=False,
            capture_output=True,
        )
        shutil.rmtree(root, ignore_errors=True)


_counter = itertools.count()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: os.PathLike[str]) -> Iterator[str]:
    """The URL of a fresh, empty database on each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{os.path.join(tmp_path, 'calllog.db')}"
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    name = f"siaga_test_{os.getpid()}_{next(_counter)}"
    server.admin(f'CREATE DATABASE "{name}"')
    try:
        yield server.url(name)
    finally:
        server.admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """An engine on a fresh database whose schema is upgraded to head."""
    engine = db.make_engine(db_url)
    db.upgrade(engine)
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    """The session factory on that database."""
    return db.make_sessionmaker(engine)
