"""Run SIPVicious' scanners (``svwar``, ``svcrack``) from a chosen source address.

Both commands parse ``-b/--bindingip`` but never hand it to their scanner (sipvicious 0.3.x),
so their packets leave from whatever address the kernel picks: 127.0.0.1 for a center on
loopback, the operators' own address. This runs the tool's own ``main`` with the scanner
class made to bind where ``-b`` says, so a test can attack from 127.0.0.2 while the staff
phones stay on 127.0.0.1. Usage: ``python -m tests.sipscan svwar|svcrack [options] target``.
"""

from __future__ import annotations

import sys


def _bound(cls: type, address: str) -> type:
    """``cls`` with its socket bound to ``address`` whatever its caller passes."""

    class Bound(cls):  # type: ignore[valid-type, misc]
        def __init__(self, *args: object, **kwargs: object) -> None:
            kwargs["bindingip"] = address
            super().__init__(*args, **kwargs)

    return Bound


def _option(argv: list[str], short: str, long: str) -> str | None:
    for i, arg in enumerate(argv):
        if arg in (short, long) and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(long + "="):
            return arg.split("=", 1)[1]
    return None


def main(argv: list[str]) -> int:
    """Run ``svwar`` or ``svcrack`` (first argument) with the rest of ``argv``."""
    if not argv or argv[0] not in ("svwar", "svcrack"):
        print("usage: python -m tests.sipscan svwar|svcrack [sipvicious options] target",
              file=sys.stderr)
        return 2
    tool, args = argv[0], argv[1:]
    if tool == "svwar":
        from sipvicious import svwar as module
        scanner = "TakeASip"
    else:
        from sipvicious import svcrack as module
        scanner = "ASipOfRedWine"
    address = _option(args, "-b", "--bindingip")
    if address:
        setattr(module, scanner, _bound(getattr(module, scanner), address))
    sys.argv = [f"sipvicious_{tool}", *args]
    module.main()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
