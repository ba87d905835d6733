"""``siaga db upgrade`` and ``siaga report``: the call log's subcommands.

``register(subparsers)`` adds them to the ``siaga`` command's argparse subparsers; each sets
``func`` (``args.func(args) -> int`` is the exit status). The database URL comes from ``--db``,
else the center's (``--config``, ``$SIAGA_CONFIG``), else the ``SIAGA_DB_URL`` environment
variable, else the installed center's (``siaga install``), else SQLite in ``$SIAGA_STATE_DIR``
(``state``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from typing import Any

from dispatcher.calllog import db, report_figures, report_period, report_render


def center_for(args: argparse.Namespace) -> Any:
    """The center whose database the command uses (``Center``), or None: the one named by
    --config or ``$SIAGA_CONFIG``, else the installed center unless ``$SIAGA_DB_URL`` names
    another database; never when --db is given."""
    if getattr(args, "db", None):
        return None
    from dispatcher.cli import find_config, load_from_args

    if (getattr(args, "config", None) or os.environ.get("SIAGA_CONFIG")
            or (not os.environ.get("SIAGA_DB_URL") and find_config(None) is not None)):
        return load_from_args(args)
    return None


def database_url(args: argparse.Namespace) -> str:
    """The database URL the command should use (see the module docstring)."""
    if getattr(args, "db", None):
        return str(args.db)
    center = center_for(args)
    if center is not None:
        return center.database_url
    if os.environ.get("SIAGA_DB_URL"):
        return os.environ["SIAGA_DB_URL"]
    state = os.environ.get("SIAGA_STATE_DIR", "state")
    os.makedirs(state, exist_ok=True)
    return db.default_url(state)


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def register(subparsers: Any) -> None:
    """Add ``db`` (with ``upgrade``) and ``report`` to the ``siaga`` command."""
    from dispatcher.cli import add_config_args

    db_parser = subparsers.add_parser("db", help="call log database")
    db_sub = db_parser.add_subparsers(dest="db_command", required=True)
    upgrade = db_sub.add_parser("upgrade", help="create or upgrade the call log schema")
    upgrade.add_argument("--db", help="database URL (sqlite:///path or postgresql://...)")
    add_config_args(upgrade)
    upgrade.set_defaults(func=cmd_db_upgrade)

    rep = subparsers.add_parser("report", help="supervisor report (HTML, CSV or JSON)")
    today = dt.date.today()
    rep.add_argument("--db", help="database URL (sqlite:///path or postgresql://...)")
    add_config_args(rep)
    rep.add_argument(
        "--from",
        dest="start",
        type=_date,
        default=today.replace(day=1),
        help="first day, YYYY-MM-DD (default: first day of this month)",
    )
    rep.add_argument(
        "--to", dest="end", type=_date, default=today, help="last day, inclusive (default: today)"
    )
    rep.add_argument("--format", choices=sorted(report_render.RENDERERS), default="html")
    rep.add_argument("--lang", choices=sorted(report_render.TEXT), default="id")
    rep.add_argument("--tz", default="Asia/Jakarta", help="time zone of the dates and hours")
    rep.add_argument(
        "--short-abandon",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="abandons shorter than this are not counted as offered (default 5)",
    )
    rep.add_argument("-o", "--output", help="write to this file instead of standard output")
    rep.set_defaults(func=cmd_report)


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    """Bring the schema to the newest revision."""
    url = database_url(args)
    revision = db.upgrade(url)
    print(f"call log schema at revision {revision}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """Compute and print a report."""
    if args.end < args.start:
        print("siaga report: --to is before --from", file=sys.stderr)
        return 2
    options = report_period.ReportOptions(
        start=args.start,
        end=args.end,
        timezone=args.tz,
        short_abandon_seconds=args.short_abandon,
        language=args.lang,
    )
    engine = db.make_engine(database_url(args))
    try:
        if db.current_revision(engine) is None:
            print(
                "siaga report: the database has no call log (run `siaga db upgrade`)",
                file=sys.stderr,
            )
            return 1
        with db.make_sessionmaker(engine)() as session:
            data = report_figures.build_report(session, options)
    finally:
        engine.dispose()
    text = report_render.render(data, args.format)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the subcommands on their own (``python -m dispatcher.calllog.cli``)."""
    parser = argparse.ArgumentParser(prog="siaga")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
