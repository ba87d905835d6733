"""``siaga device add|list|revoke``: enrol panic-button apps and give them credentials.

The database is the center's (``--config``), else ``--db`` / ``$SIAGA_DB_URL`` /
``$SIAGA_STATE_DIR`` as for ``siaga db``. Credentials are printed once, on enrolment: the
server keeps only the token's hash. An HMAC key enrolled on the center's config is derived
from the center's master key (:mod:`dispatcher.keys`): the database keeps only the label it
was derived with. With ``--db`` alone there is no master key at hand, so the key itself is
stored (as before keys were derived).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import secrets
import sys
from typing import Any

from dispatcher import keys
from dispatcher.alerts import storage
from dispatcher.alerts.intake import CALLBACK_RE, IDENTIFIER_RE
from dispatcher.calllog import db, store

__all__ = ["register"]


def _identifier(text: str) -> str:
    if not IDENTIFIER_RE.match(text):
        raise argparse.ArgumentTypeError("1 to 128 letters, digits, '.', '_', ':' or '-'")
    return text


def _number(text: str) -> str:
    if not CALLBACK_RE.match(text):
        raise argparse.ArgumentTypeError("3 to 20 digits, optionally after a '+'")
    return text


def _label(text: str) -> str:
    if len(text) > 200 or re.search(r"[\x00-\x1f\x7f]", text):
        raise argparse.ArgumentTypeError("one line of at most 200 characters")
    return text


def register(subparsers: Any) -> None:
    """Add ``device`` (add, list, revoke) to the ``siaga`` command."""
    from dispatcher.cli import add_config_args

    parser = subparsers.add_parser("device", help="panic-button apps allowed to raise alerts")
    sub = parser.add_subparsers(dest="device_command", required=True)

    add = sub.add_parser("add", help="enrol a device and print its credentials (once)")
    add_config_args(add)
    add.add_argument("--db", help="database URL (default: the center's, or as siaga db)")
    add.add_argument("device_id", type=_identifier)
    add.add_argument("--label", type=_label, default="", help="who or what it is")
    add.add_argument("--callback-number", type=_number,
                     help="number to call back when an alert gives none")
    add.add_argument("--auth", choices=("token", "hmac", "both"), default="token",
                     help="bearer token (default), HMAC signatures, or both")
    add.add_argument("--json", action="store_true", help="print JSON")
    add.set_defaults(func=cmd_add)

    ls = sub.add_parser("list", help="enrolled devices (no secrets)")
    add_config_args(ls)
    ls.add_argument("--db", help="database URL")
    ls.add_argument("--json", action="store_true", help="print JSON")
    ls.set_defaults(func=cmd_list)

    revoke = sub.add_parser("revoke", help="disable a device (its alerts are refused at once)")
    add_config_args(revoke)
    revoke.add_argument("--db", help="database URL")
    revoke.add_argument("device_id", type=_identifier)
    revoke.set_defaults(func=cmd_revoke)


def _sessions(args: argparse.Namespace) -> Any:
    from dispatcher.calllog.cli import database_url

    url = database_url(args)
    engine = db.make_engine(url)
    db.upgrade(engine)
    return db.make_sessionmaker(engine)


def _master_key(args: argparse.Namespace) -> bytes | None:
    """The center's master key when the command names the center (and no other database)."""
    from dispatcher.calllog.cli import center_for
    from dispatcher.credentials import ensure_credentials

    center = center_for(args)
    return ensure_credentials(center).master_key if center is not None else None


def cmd_add(args: argparse.Namespace) -> int:
    """Enrol a device; print its token and/or key."""
    token = store.new_token() if args.auth in ("token", "both") else None
    key = stored_key = None
    if args.auth in ("hmac", "both"):
        master = _master_key(args)
        if master is None:
            key = stored_key = secrets.token_urlsafe(32)
        else:
            stored_key = keys.new_device_label()
            key = keys.device_key(master, args.device_id, stored_key)
    sessions = _sessions(args)
    try:
        with db.transaction(sessions) as session:
            store.add_device(session, args.device_id, kind="app", label=args.label,
                             token=token, hmac_key=stored_key,
                             callback_number=args.callback_number,
                             now=dt.datetime.now(dt.UTC))
    except ValueError as exc:
        print(f"siaga: {exc}", file=sys.stderr)
        return 1
    doc = {"device_id": args.device_id, "token": token, "hmac_key": key}
    if args.json:
        print(json.dumps(doc))
    else:
        print(f"device {args.device_id} enrolled; give it these (shown only now):")
        if token:
            print(f"  token:    {token}")
        if key:
            print(f"  hmac key: {key}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    """Print the enrolled devices."""
    with db.transaction(_sessions(args)) as session:
        devices = storage.list_devices(session)
    if args.json:
        print(json.dumps(devices, indent=2))
        return 0
    print(f"{'device':<30} {'kind':<7} {'auth':<11} {'enabled':<8} label")
    for d in devices:
        print(f"{d['device_id']:<30} {d['kind']:<7} {d['auth']:<11} "
              f"{'yes' if d['enabled'] else 'no':<8} {d['label']}")
    return 0


def cmd_revoke(args: argparse.Namespace) -> int:
    """Disable a device."""
    with db.transaction(_sessions(args)) as session:
        found = store.revoke_device(session, args.device_id, now=dt.datetime.now(dt.UTC))
    if not found:
        print(f"siaga: no device {args.device_id!r}", file=sys.stderr)
        return 1
    print(f"device {args.device_id} revoked")
    return 0
