"""How soon the SIP guard cuts off a password guesser: svcrack's first packet -> refused.

The whole center runs (`siaga up` on the example city: free loopback ports, a temporary
state directory; block after 10 failures in 60 s). Each run starts SIPVicious' ``svcrack``
against operator 202 from a fresh loopback address (127.0.0.21, .22, ...: a blocked address
stays blocked for the run) and probes that address with an OPTIONS every few milliseconds;
the time printed is from the scanner's start to the first 403 the probe gets (the ACL in
force in Asterisk), and how many failed challenges reached the server before it.

    .venv/bin/python benchmarks/sip_guard.py [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.e2e.test_sip_guard import options_status, scanner, stop  # noqa: E402
from tests.harness import SiagaProcess, write_test_config  # noqa: E402


def one_run(server: SiagaProcess, source: str) -> tuple[float, int]:
    """svcrack from ``source`` until refused: (seconds to the block, failures counted)."""
    watch = server.ami()
    try:
        started = time.monotonic()
        crack = scanner("svcrack", source, server, "-u", "202", "-r", "1-2000",
                        "--maximumtime", "5")
        try:
            while options_status(source, server) != 403:
                if time.monotonic() - started > 60:
                    raise TimeoutError(f"{source} was not refused in 60 s")
            elapsed = time.monotonic() - started
        finally:
            stop(crack)
        failures = len(watch.matching("ChallengeResponseFailed",
                                      RemoteAddress=f"IPV4/UDP/{source}/5060"))
    finally:
        watch.close()
    return elapsed, failures


def main() -> int:
    """Run the center, time each run, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="sip-guard-bench-"))
    server = SiagaProcess(write_test_config(tmp / "center.yaml"), tmp / "state")
    server.start()
    times = []
    try:
        for n in range(args.runs):
            source = f"127.0.0.{21 + n}"
            elapsed, failures = one_run(server, source)
            times.append(elapsed)
            print(f"run {n + 1} from {source}: refused after {elapsed * 1000:.0f} ms "
                  f"({failures} failed challenges seen)")
    finally:
        server.stop()
    print(f"scan start -> refused: min {min(times) * 1000:.0f} ms, "
          f"median {statistics.median(times) * 1000:.0f} ms, max {max(times) * 1000:.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
