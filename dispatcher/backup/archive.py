"""``siaga backup`` and ``siaga restore``: a center's database, recordings and secrets.

A backup is a folder (mode 0700, every file 0600) holding:

* ``database.sqlite3``: a consistent copy of a SQLite call log made with SQLite's online
  backup API (``sqlite3.Connection.backup``), safe while the server writes; or
  ``database.pgdump``: ``pg_dump --format=custom`` of a PostgreSQL call log;
* ``recordings/``: every recording file;
* ``secrets.yaml`` (SIP, AMI and console passwords, the session key) and
  ``operator-api.token``: a restored center keeps its phones' passwords and its API clients;
* ``manifest.json``: what is in it, with each file's size and SHA-256, checked before a
  restore touches anything.

The generated Asterisk configuration and prompts are not included: ``siaga up`` makes them
again from the config file, which is the administrator's to keep (it is not in the state
directory). A restore goes into a new, empty state directory and an empty database, never
over a center's own.
"""

from __future__ import annotations

import datetime as dt
import glob
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import inspect
from sqlalchemy.engine import URL, make_url

from dispatcher.calllog import db
from dispatcher.credentials import FILE_NAME as SECRETS_FILE
from dispatcher.credentials import OPERATOR_TOKEN_FILE

__all__ = ["BackupError", "Manifest", "backup", "restore"]

FORMAT = 1
SQLITE_FILE = "database.sqlite3"
PG_FILE = "database.pgdump"
MANIFEST = "manifest.json"
SECRET_FILES = (SECRETS_FILE, OPERATOR_TOKEN_FILE)


class BackupError(Exception):
    """A backup or restore that cannot be done; the message says why and what to do."""


@dataclass
class Manifest:
    """What a backup holds."""

    database: str  # "sqlite" or "postgresql"
    created_at: str
    center: str
    schema_revision: str | None
    files: dict[str, dict[str, object]] = field(default_factory=dict)
    format: int = FORMAT

    @property
    def size(self) -> int:
        """Bytes in the backup's files."""
        return sum(int(f["size"]) for f in self.files.values())  # type: ignore[call-overload]


def _private_dir(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)


def _empty_or_absent(path: Path, what: str) -> None:
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise BackupError(f"{what} {path} is not empty: choose a new folder")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _copy_private(src: Path, dst: Path) -> None:
    # Opened 0600 from the start: the file is never readable by others, not even briefly.
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with src.open("rb") as fin, os.fdopen(fd, "wb") as fout:
        shutil.copyfileobj(fin, fout, 1 << 20)
    st = src.stat()
    os.utime(dst, (st.st_atime, st.st_mtime))  # retention ages a restored recording alike


def _copy_tree(src: Path, dst: Path, on_file: Callable[[Path], None]) -> None:
    _private_dir(dst)
    for entry in sorted(os.scandir(src), key=lambda e: e.name):
        if entry.is_dir(follow_symlinks=False):
            _copy_tree(Path(entry.path), dst / entry.name, on_file)
        elif entry.is_file(follow_symlinks=False):
            _copy_private(Path(entry.path), dst / entry.name)
            on_file(dst / entry.name)


def _sqlite_path(url: URL) -> Path:
    if not url.database or url.database == ":memory:":
        raise BackupError("an in-memory SQLite database cannot be backed up")
    return Path(url.database)


def _sqlite_copy(src: Path, dst: Path) -> None:
    """SQLite's online backup: a consistent copy even while the server writes."""
    source = sqlite3.connect(src)
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.close(fd)
    target = sqlite3.connect(dst)
    try:
        # In steps, so the server's writer is never held off for the whole copy.
        source.backup(target, pages=4096)
        # One self-contained file (no -wal beside it) for the backup.
        target.execute("PRAGMA journal_mode=DELETE")
    finally:
        target.close()
        source.close()


def pg_tool(name: str) -> str:
    """The newest installed ``pg_dump``/``pg_restore`` (a dump needs a client at least as new
    as the server)."""
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
                   key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    if found:
        return found[-1]
    path = shutil.which(name)
    if path is None:
        raise BackupError(f"{name} is not installed (Debian: apt-get install "
                          "postgresql-client)")
    return path


def _libpq(url: URL) -> tuple[list[str], dict[str, str]]:
    """Connection options for pg_dump/pg_restore; the password goes in the environment,
    never on a command line others can read in ``ps``."""
    args = []
    if url.host:
        args += ["--host", url.host]
    if url.port:
        args += ["--port", str(url.port)]
    if url.username:
        args += ["--username", url.username]
    env = dict(os.environ)
    if url.password:
        env["PGPASSWORD"] = str(url.password)
    return args, env


def _run(argv: list[str], env: dict[str, str], what: str) -> None:
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise BackupError(f"{what} failed: {done.stderr.strip()[-2000:]}")


def backup(database_url: str, state_dir: Path, out: Path, center_name: str = "",
           now: dt.datetime | None = None) -> Manifest:
    """Back up the database at ``database_url`` and ``state_dir``'s recordings and secrets
    into the new folder ``out`` (blocking). Raises BackupError."""
    out = Path(out)
    _empty_or_absent(out, "the backup folder")
    url = make_url(database_url)
    kind = url.get_backend_name()
    if kind not in ("sqlite", "postgresql"):
        raise BackupError(f"cannot back up a {kind} database")
    engine = db.make_engine(database_url)
    try:
        revision = db.current_revision(engine)
    finally:
        engine.dispose()
    manifest = Manifest(kind, (now or dt.datetime.now(dt.UTC)).isoformat(), center_name,
                        revision)
    _private_dir(out)
    if kind == "sqlite":
        src = _sqlite_path(url)
        if not src.exists():
            raise BackupError(f"no database at {src}")
        _sqlite_copy(src, out / SQLITE_FILE)
        db_file = out / SQLITE_FILE
    else:
        db_file = out / PG_FILE
        args, env = _libpq(url)
        os.close(os.open(db_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        _run([pg_tool("pg_dump"), "--format=custom", "--no-owner", "--file", str(db_file),
              *args, "--dbname", str(url.database)], env, "pg_dump")
        os.chmod(db_file, 0o600)

    def note(path: Path) -> None:
        manifest.files[path.relative_to(out).as_posix()] = {
            "size": path.stat().st_size, "sha256": _sha256(path)}

    note(db_file)
    recordings = Path(state_dir) / "recordings"
    if recordings.is_dir():
        _copy_tree(recordings, out / "recordings", note)
    for name in SECRET_FILES:
        src = Path(state_dir) / name
        if src.is_file():
            _copy_private(src, out / name)
            note(out / name)
    fd = os.open(out / MANIFEST, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(manifest.__dict__, f, indent=2, sort_keys=True)
    return manifest


def read_manifest(folder: Path) -> Manifest:
    """The manifest of the backup in ``folder``, every file checked against it."""
    folder = Path(folder)
    try:
        raw = json.loads((folder / MANIFEST).read_text())
        manifest = Manifest(**raw)
    except FileNotFoundError:
        raise BackupError(f"{folder} holds no backup ({MANIFEST} is missing)") from None
    except (ValueError, TypeError) as exc:
        raise BackupError(f"{folder / MANIFEST} is unreadable: {exc}") from None
    if manifest.format != FORMAT:
        raise BackupError(f"backup format {manifest.format} is not {FORMAT}")
    for rel, info in manifest.files.items():
        path = folder / rel
        if ".." in Path(rel).parts or Path(rel).is_absolute():
            raise BackupError(f"the manifest names a file outside the backup: {rel!r}")
        if not path.is_file():
            raise BackupError(f"{rel} is missing from the backup")
        if path.stat().st_size != info["size"] or _sha256(path) != info["sha256"]:
            raise BackupError(f"{rel} does not match the manifest (damaged backup)")
    return manifest


def restore(folder: Path, state_dir: Path, database_url: str) -> Manifest:
    """Restore the backup in ``folder`` into the new ``state_dir`` and the empty database at
    ``database_url`` (blocking). Nothing is written before the backup is checked and the
    targets found empty. Raises BackupError."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    state_dir = Path(state_dir)
    _empty_or_absent(state_dir, "the state directory")
    url = make_url(database_url)
    kind = url.get_backend_name()
    if kind != manifest.database:
        raise BackupError(f"the backup holds a {manifest.database} database; the target is "
                          f"{kind} (give --db with a {manifest.database} URL)")
    if kind == "sqlite":
        target = _sqlite_path(url)
        if target.exists():
            raise BackupError(f"a database already exists at {target}: restore into a new one")
    else:
        engine = db.make_engine(database_url)
        try:
            tables = inspect(engine).get_table_names()
        finally:
            engine.dispose()
        if tables:
            raise BackupError(f"database {url.database} is not empty ({len(tables)} tables): "
                              "restore into a new, empty database")
    _private_dir(state_dir)
    if kind == "sqlite":
        target.parent.mkdir(parents=True, exist_ok=True)
        _sqlite_copy(folder / SQLITE_FILE, target)
    else:
        args, env = _libpq(url)
        _run([pg_tool("pg_restore"), "--no-owner", "--no-privileges", "--exit-on-error",
              *args, "--dbname", str(url.database), str(folder / PG_FILE)], env, "pg_restore")
    if (folder / "recordings").is_dir():
        _copy_tree(folder / "recordings", state_dir / "recordings", lambda _p: None)
    for name in SECRET_FILES:
        if (folder / name).is_file():
            _copy_private(folder / name, state_dir / name)
    return manifest
