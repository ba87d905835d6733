"""Benchmark: reading Asterisk's CEL file as one CSV stream (dispatcher.calllog.cel.read_rows).

Writes ``--calls`` copies of a recorded-shape hotline journey (the scenario the unit tests use,
about a dozen rows each) to a temporary file, every tenth call's caller number holding CR LF
and whole forged rows, and times ``read_rows`` over it. Prints rows per second and checks that
no forged row came out.

    .venv/bin/python benchmarks/cel_read.py --calls 20000
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dispatcher.calllog import cel  # noqa: E402
from tests.unit.calllog import calllog_scenarios as sc  # noqa: E402

FORGED = "0899\r\nCHAN_START,1,,,,,X/y,,,fake1,fake1,,\r\nLINKEDID_END,2,,,,,,,,fake1,fake1,,\r\n"


def main() -> None:
    """Write the file, time the read, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "Master.csv"
        with open(path, "w", encoding="utf-8", newline="") as f:
            for n in range(args.calls):
                rows = sc.abandoned_in_ivr(f"{1000 + n}.1", sc.T0 + n).cel()
                if n % 10 == 0:
                    rows = [replace(r, cidnum=FORGED) if r.cidnum else r for r in rows]
                f.writelines(cel.iter_lines(rows))
        size = path.stat().st_size
        started = time.perf_counter()
        result = cel.read_rows(str(path))
        seconds = time.perf_counter() - started
    forged = sum(1 for r in result.rows if r.linkedid == "fake1")
    print(f"{len(result.rows):,} rows ({size / 1e6:.1f} MB) in {seconds:.2f} s: "
          f"{len(result.rows) / seconds:,.0f} rows/s; bad records {len(result.bad_lines)}, "
          f"forged rows {forged}")


if __name__ == "__main__":
    main()
