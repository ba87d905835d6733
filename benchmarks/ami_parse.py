"""Parse + dispatch throughput of our AMI client against panoramisk's, on the same bytes.

The corpus is AMI traffic recorded from the real Asterisk 22 under queue calls
(``benchmarks/data/asterisk22-calls.raw.xz``, 108k events, made with
``tests/data/ami/capture.py --calls 1100 --rate 8``). Both sides get it in the same 64 KiB
reads a TCP connection would deliver, through their protocol objects' receive methods, and
route every event to subscribers by name:

* ours: ``AMIProtocol.dataReceived`` -> ``AMIParser`` -> ``AMIClient`` ->
  ``EventDispatcher`` subscriptions;
* panoramisk 1.4: ``AMIProtocol.data_received`` -> ``Message.from_line`` ->
  ``Manager.dispatch`` with ``register_event`` subscriptions (its own API), with the utf8
  encoding its Manager sets on connection.

Two subscription sets are measured: one catch-all subscriber, and the live model's ~20 event
names plus a catch-all (what the server registers). Both sides are fed read by read in
alternation, so load from other processes on a shared machine falls on both alike; each
paired run is repeated, and the best time of each side and the per-run ratios are printed.
The figures are for comparison within one run on one machine.

    .venv/bin/python benchmarks/ami_parse.py [--repeat 5] [--events-min 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import lzma
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from panoramisk.ami_protocol import AMIProtocol as PanoramiskProtocol  # noqa: E402
from panoramisk.manager import Manager as PanoramiskManager  # noqa: E402
from twisted.internet import task  # noqa: E402
from twisted.internet.testing import StringTransport  # noqa: E402

from pbx.ami.connection import AMIClient, AMIProtocol  # noqa: E402
from pbx.ami.model import LiveModel  # noqa: E402

CORPUS = ROOT / "benchmarks" / "data" / "asterisk22-calls.raw.xz"
READ_SIZE = 65536
MODEL_EVENTS = sorted(LiveModel.HANDLERS)


def load_corpus() -> bytes:
    """The recorded stream, decompressed."""
    return lzma.decompress(CORPUS.read_bytes())


def count_events(data: bytes) -> int:
    """Events in the stream, counted independently of either parser."""
    blocks = data.split(b"\r\n", 1)[1].split(b"\r\n\r\n")
    return sum(block.startswith(b"Event: ") for block in blocks)


def chunks_of(data: bytes) -> list[bytes]:
    """The stream cut as TCP reads would cut it."""
    return [data[i:i + READ_SIZE] for i in range(0, len(data), READ_SIZE)]


def ours(names: list[str]) -> tuple[Callable[[bytes], None], Counter[str]]:
    """Our receive function, with subscribers; the Counter counts events per name."""
    seen: Counter[str] = Counter()
    by_name: Counter[str] = Counter()
    proto = AMIProtocol(AMIClient(task.Clock(), None, keepalive_interval=0))
    dispatcher = proto.client.dispatcher

    def every(event: object) -> None:
        seen[event.name] += 1  # type: ignore[attr-defined]

    def named(event: object) -> None:
        by_name[event.name] += 1  # type: ignore[attr-defined]

    dispatcher.subscribe_all(every)
    for name in names:
        dispatcher.subscribe(name, named)
    proto.makeConnection(StringTransport())
    return proto.dataReceived, seen


class _NullTransport:
    def write(self, data: bytes) -> None:
        pass

    def close(self) -> None:
        pass


def panoramisk(names: list[str], loop: asyncio.AbstractEventLoop
               ) -> tuple[Callable[[bytes], None], Counter[str]]:
    """Panoramisk's receive function, with subscribers through its own register_event."""
    seen: Counter[str] = Counter()
    by_name: Counter[str] = Counter()
    manager = PanoramiskManager(loop=loop)

    def every(_manager: object, event: object) -> None:
        seen[event["Event"]] += 1  # type: ignore[index]

    def named(_manager: object, event: object) -> None:
        by_name[event["Event"]] += 1  # type: ignore[index]

    manager.register_event("*", every)
    for name in names:
        manager.register_event(name, named)
    proto = PanoramiskProtocol()
    proto.connection_made(_NullTransport())
    proto.factory = manager
    proto.encoding = manager.config["encoding"]  # as Manager.connection_made sets it
    return proto.data_received, seen


def paired_run(chunks: list[bytes], names: list[str]
               ) -> tuple[float, float, Counter[str], Counter[str]]:
    """Feed both, read by read, alternating which goes first; return each side's total
    seconds and per-name counts. Alternating at every read means a burst of load from
    other processes on a shared machine hits both sides alike."""
    loop = asyncio.new_event_loop()
    try:
        feed_ours, ours_seen = ours(names)
        feed_pano, pano_seen = panoramisk(names, loop)
        clock = time.perf_counter
        ours_s = pano_s = 0.0
        for i, chunk in enumerate(chunks):
            if i % 2:
                t0 = clock()
                feed_ours(chunk)
                t1 = clock()
                feed_pano(chunk)
                t2 = clock()
                ours_s += t1 - t0
                pano_s += t2 - t1
            else:
                t0 = clock()
                feed_pano(chunk)
                t1 = clock()
                feed_ours(chunk)
                t2 = clock()
                pano_s += t1 - t0
                ours_s += t2 - t1
        # Panoramisk schedules a coroutine on FullyBooted; let it finish before closing.
        loop.run_until_complete(asyncio.sleep(0))
    finally:
        for task_ in asyncio.all_tasks(loop):
            task_.cancel()
        loop.run_until_complete(asyncio.sleep(0))
        loop.close()
    return ours_s, pano_s, ours_seen, pano_seen


def main() -> None:
    """Measure, print events/s for both and the ratio."""
    parser = argparse.ArgumentParser(description="AMI parse + dispatch benchmark")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--events-min", type=int, default=100_000)
    args = parser.parse_args()

    data = load_corpus()
    events = count_events(data)
    if events < args.events_min:
        sys.exit(f"corpus holds {events} events, fewer than {args.events_min}")
    chunks = chunks_of(data)
    print(f"corpus: {CORPUS.name}, {len(data) / 1e6:.1f} MB, {events} events "
          f"recorded from Asterisk 22, fed in {len(chunks)} reads of {READ_SIZE} bytes; "
          f"{args.repeat} paired runs, best of each side")
    lowest = []
    for label, names in (("catch-all subscriber", []),
                         (f"model's {len(MODEL_EVENTS)} event names + catch-all", MODEL_EVENTS)):
        runs = [paired_run(chunks, names) for _ in range(args.repeat)]
        ours_s = min(r[0] for r in runs)
        pano_s = min(r[1] for r in runs)
        ratios = sorted(r[1] / r[0] for r in runs)
        ours_n, pano_n = sum(runs[0][2].values()), sum(runs[0][3].values())
        print(f"\n[{label}]")
        print(f"  ours       {ours_n:7d} events in {ours_s:6.3f} s = {ours_n / ours_s:10,.0f} "
              "events/s")
        print(f"  panoramisk {pano_n:7d} events in {pano_s:6.3f} s = {pano_n / pano_s:10,.0f} "
              "events/s")
        ratio = (ours_n / ours_s) / (pano_n / pano_s)
        median = ratios[len(ratios) // 2]
        lowest.append(min(ratio, median))
        print(f"  ratio ours/panoramisk: {ratio:.2f}x (best times); per paired run "
              f"{', '.join(f'{r:.2f}' for r in ratios)} (median {median:.2f}x)")
        if ours_n != events:
            print(f"  WARNING: ours dispatched {ours_n} events, the corpus holds {events}")
        if pano_n != events:
            print(f"  note: panoramisk dispatched {pano_n} of {events} events")
    print(f"\ntarget ours >= 2.5x panoramisk: "
          f"{'met' if min(lowest) >= 2.5 else 'NOT met'} (lowest ratio {min(lowest):.2f}x)")


if __name__ == "__main__":
    main()
