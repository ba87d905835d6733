"""The self-test's child process: ``siaga probe`` with the arguments it is given.

Run as ``python -m dispatcher.selftest.child --server ... --hotline ...``. pjsua2 runs only
here, never in the server process (its threads and its aborts stay out of the reactor); the
server reads the one JSON line this prints.
"""

from __future__ import annotations

import argparse
import sys

from pbx.phone.cli import register


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` as ``siaga probe`` does and run the probe; its exit status."""
    parser = argparse.ArgumentParser(prog="siaga-selftest")
    register(parser.add_subparsers())
    args = parser.parse_args(["probe", *(sys.argv[1:] if argv is None else argv)])
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
