"""``siaga backup --out DIR`` and ``siaga restore --from DIR --state-dir NEW``."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Add ``backup`` and ``restore`` to the ``siaga`` command."""
    from dispatcher.cli import add_config_args

    p = subparsers.add_parser(
        "backup", help="copy the database, recordings and secrets into a new folder")
    add_config_args(p)
    p.add_argument("--out", required=True, help="the new folder to write (mode 0700)")
    p.set_defaults(func=cmd_backup)

    p = subparsers.add_parser(
        "restore", help="restore a backup into a new state directory and an empty database")
    add_config_args(p)
    p.add_argument("--from", dest="source", required=True, help="the backup folder")
    p.add_argument("--db", help="the empty database to restore into (default: the config's "
                   "database URL with --state-dir)")
    p.set_defaults(func=cmd_restore)


def cmd_backup(args: argparse.Namespace) -> int:
    """Back up the center named by --config."""
    from dispatcher.backup.archive import BackupError, backup
    from dispatcher.cli import load_from_args

    center = load_from_args(args)
    started = time.monotonic()
    try:
        manifest = backup(center.database_url, center.state_dir, Path(args.out), center.name)
    except BackupError as exc:
        print(f"siaga backup: {exc}", file=sys.stderr)
        return 1
    print(f"backed up {manifest.database} database (schema {manifest.schema_revision}), "
          f"{len(manifest.files)} files, {manifest.size / 1e6:.1f} MB into {args.out} "
          f"in {time.monotonic() - started:.1f} s")
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    """Restore a backup into --state-dir (which must be new or empty)."""
    from dispatcher.backup.archive import BackupError, restore
    from dispatcher.cli import load_from_args

    if not args.state_dir:
        print("siaga restore: give --state-dir NEW (a new, empty folder)", file=sys.stderr)
        return 2
    center = load_from_args(args)
    try:
        manifest = restore(Path(args.source), center.state_dir, args.db or center.database_url)
    except BackupError as exc:
        print(f"siaga restore: {exc}", file=sys.stderr)
        return 1
    print(f"restored the backup of {manifest.created_at} ({len(manifest.files)} files) into "
          f"{center.state_dir}; start the center with --state-dir {center.state_dir}"
          + (f" and database {args.db}" if args.db else ""))
    return 0
