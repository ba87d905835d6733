"""``siaga device add|list|revoke``: enrol panic-button apps and give them credentials.

The database is the center's (``--config``), else ``--db`` / ``$SIAGA_DB_URL`` /
``$SIAGA_STATE_DIR`` as for ``siaga db``. Credentials are printed once, on enrolment: the
server keeps only the token's hash. An HMAC key enrolled on the center's config is derived
from the center's master key (:mod:`dispatcher.keys`): the database keeps only the label it
was derived with. With ``--db`` alone there is no master key at hand, so the key itself is
stored (as before keys were derived).

``--link`` enrols a panic app by a one-time link instead: the device gets no credential
now; the link (and its QR code) carries a one-time code the app exchanges, once and before
it expires, for its token (``dispatcher.alerts.enrolment``). ``siaga device link`` issues a
new link for an enrolled app (a new phone: the old token stops working once it is used).
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
from dispatcher.alerts import enrolment, storage
from dispatcher.alerts.intake import CALLBACK_RE, IDENTIFIER_RE
from dispatcher.calllog import db, store_incidents

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
    _link_args(add, optional=True)
    add.set_defaults(func=cmd_add)

    link = sub.add_parser("link", help="a new one-time enrolment link for an enrolled app")
    add_config_args(link)
    link.add_argument("--db", help="database URL")
    link.add_argument("device_id", type=_identifier)
    link.add_argument("--json", action="store_true", help="print JSON")
    _link_args(link, optional=False)
    link.set_defaults(func=cmd_link)

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


def _hours(text: str) -> float:
    try:
        hours = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("a number of hours") from None
    if not 0.05 <= hours <= 24 * 30:
        raise argparse.ArgumentTypeError("from 0.05 (3 minutes) to 720 hours (30 days)")
    return hours


def _base_url(text: str) -> str:
    if not re.match(r"^https?://[A-Za-z0-9.\[\]:-]+(/[A-Za-z0-9._~/-]*)?$", text):
        raise argparse.ArgumentTypeError("an http:// or https:// URL of the center")
    return text.rstrip("/")


def _link_args(parser: argparse.ArgumentParser, optional: bool) -> None:
    if optional:
        parser.add_argument("--link", action="store_true",
                            help="enrol a panic app by a one-time link and QR code instead of "
                            "printing a token")
    parser.add_argument("--base-url", type=_base_url,
                        help="the center's address as phones reach it (default: from the "
                        "config's http and tls sections)")
    parser.add_argument("--expires-hours", type=_hours, default=24.0,
                        help="the link works once, for this long (default 24)")
    parser.add_argument("--qr-svg", metavar="FILE", help="also write the QR code as SVG")
    parser.add_argument("--no-qr", action="store_true",
                        help="do not draw the QR code in the terminal")


def center_base_url(args: argparse.Namespace) -> str | None:
    """The center's web address from its config: https when ``tls:`` is set."""
    if getattr(args, "base_url", None):
        return str(args.base_url)
    if not getattr(args, "config", None) or getattr(args, "db", None) is not None:
        return None
    import socket

    from dispatcher.cli import load_from_args

    center = load_from_args(args)
    host = center.http.host
    if host in ("0.0.0.0", "::", ""):
        host = socket.getfqdn()
    if ":" in host:
        host = f"[{host}]"
    scheme = "https" if center.tls is not None else "http"
    return f"{scheme}://{host}:{center.http.port}"


def _issue_link(args: argparse.Namespace, sessions: Any, base: str) -> int:
    """Store a one-time code for ``args.device_id`` and print the link (and QR code)."""
    code = enrolment.new_code()
    ttl = dt.timedelta(hours=args.expires_hours)
    try:
        with db.transaction(sessions) as session:
            expires = enrolment.issue_code(session, args.device_id, code,
                                           dt.datetime.now(dt.UTC), ttl)
    except LookupError as exc:
        print(f"siaga: {exc}", file=sys.stderr)
        return 1
    # The code rides in the fragment: browsers never send it to the server or a Referer.
    url = f"{base}/panic/#code={code}"
    if args.qr_svg:
        import segno

        segno.make(url, error="m").save(args.qr_svg, scale=8, border=4)
    if args.json:
        print(json.dumps({"device_id": args.device_id, "link": url,
                          "expires_at": expires.isoformat().replace("+00:00", "Z"),
                          "qr_svg": args.qr_svg}))
        return 0
    print(f"device {args.device_id}: open this link on the citizen's phone (works once, "
          f"until {expires:%Y-%m-%d %H:%M} UTC):")
    print(f"  {url}")
    if base.startswith("http://") and "127.0.0.1" not in base and "localhost" not in base:
        print("  note: phones keep the app offline only over HTTPS: set the config's tls "
              "section", file=sys.stderr)
    if not args.no_qr:
        import segno

        segno.make(url, error="m").terminal(compact=True)
    if args.qr_svg:
        print(f"  QR code written to {args.qr_svg}")
    return 0


def cmd_link(args: argparse.Namespace) -> int:
    """A new one-time link for an enrolled app."""
    base = center_base_url(args)
    if base is None:
        print("siaga: give --base-url (or --config) so the link names the center",
              file=sys.stderr)
        return 2
    return _issue_link(args, _sessions(args), base)


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
    """Enrol a device; print its token and/or key, or (``--link``) its one-time link."""
    if args.link:
        return _add_by_link(args)
    token = store_incidents.new_token() if args.auth in ("token", "both") else None
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
            store_incidents.add_device(session, args.device_id, kind="app", label=args.label,
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


def _add_by_link(args: argparse.Namespace) -> int:
    if args.auth != "token":
        print("siaga: --link enrols an app with a token; --auth does not apply",
              file=sys.stderr)
        return 2
    base = center_base_url(args)
    if base is None:
        print("siaga: give --base-url (or --config) so the link names the center",
              file=sys.stderr)
        return 2
    sessions = _sessions(args)
    try:
        with db.transaction(sessions) as session:
            # No credential yet: the device cannot authenticate until its code is spent.
            store_incidents.add_device(session, args.device_id, kind="app", label=args.label,
                                       callback_number=args.callback_number,
                                       now=dt.datetime.now(dt.UTC))
    except ValueError as exc:
        print(f"siaga: {exc}", file=sys.stderr)
        return 1
    return _issue_link(args, sessions, base)


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
        found = store_incidents.revoke_device(session, args.device_id, now=dt.datetime.now(dt.UTC))
    if not found:
        print(f"siaga: no device {args.device_id!r}", file=sys.stderr)
        return 1
    print(f"device {args.device_id} revoked")
    return 0
