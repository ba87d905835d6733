"""The console's site under a slow-loris attack: how long slow clients hold a connection, how
many connections are refused, and what a normal request costs meanwhile.

Runs the real site (``dispatcher.web.site.build_site``, the example city's config, the
default ``http.limits``) on a real reactor in a thread; slow clients from several loopback
addresses each send one header byte every ``--trickle`` seconds and never finish.

    PYTHONPATH=. .venv/bin/python benchmarks/http_guard.py --slow 300 --sources 15
"""

from __future__ import annotations

import argparse
import http.client
import socket
import statistics
import tempfile
import threading
import time
from pathlib import Path


def main() -> None:
    """Start the site, attack it, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slow", type=int, default=300, help="slow clients in all")
    parser.add_argument("--sources", type=int, default=15, help="addresses they come from")
    parser.add_argument("--trickle", type=float, default=1.0, help="seconds between bytes")
    parser.add_argument("--requests", type=int, default=200, help="normal requests to time")
    args = parser.parse_args()

    from twisted.internet import defer, reactor  # an entry point: the global reactor is fine

    from dispatcher.config.loader import load_center
    from dispatcher.credentials import ensure_credentials
    from dispatcher.web.site import build_site

    state = Path(tempfile.mkdtemp(prefix="siaga-guard-"))
    center = load_center(Path(__file__).parents[1] / "config" / "siaga.example.yaml",
                         state_dir=state)
    site = build_site(center, ensure_credentials(center), reactor.seconds,
                      wallboard=lambda: {}, reports=lambda q: defer.succeed(("text/csv", "")),
                      reactor=reactor)
    port = reactor.listenTCP(0, site, interface="127.0.0.1").getHost().port
    threading.Thread(target=reactor.run, kwargs={"installSignalHandlers": False},
                     daemon=True).start()
    limits = center.http_limits
    print(f"limits: {limits.connections} connections, {limits.connections_per_source} per "
          f"source, {limits.request_seconds:g} s per request, idle {limits.idle_seconds:g} s")

    slow: list[tuple[socket.socket, float]] = []
    refused = 0
    for i in range(args.slow):
        source = f"127.0.2.{1 + i % args.sources}"
        sock = socket.create_connection(("127.0.0.1", port), source_address=(source, 0))
        slow.append((sock, time.monotonic()))
    header = b"GET /login HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 100_000
    held: list[float] = []
    stop = threading.Event()

    def trickle() -> None:
        nonlocal refused
        sent = 0
        alive = list(slow)
        while alive and not stop.is_set():
            for sock, opened in list(alive):
                try:
                    sock.setblocking(False)
                    data = sock.recv(4096)
                except BlockingIOError:
                    data = None
                except OSError:
                    data = b""
                if data is not None:
                    if data.startswith(b"HTTP/1.1 503"):
                        refused += 1
                    else:
                        held.append(time.monotonic() - opened)
                    alive.remove((sock, opened))
                    sock.close()
                    continue
                try:
                    sock.send(header[sent:sent + 1])
                except OSError:
                    held.append(time.monotonic() - opened)
                    alive.remove((sock, opened))
            sent += 1
            time.sleep(args.trickle)

    attacker = threading.Thread(target=trickle, daemon=True)
    attacker.start()
    latencies = []
    failures = 0
    for _ in range(args.requests):
        began = time.monotonic()
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("GET", "/login")
            ok = conn.getresponse().status == 200
            conn.close()
        except OSError:
            ok = False
        latencies.append(time.monotonic() - began)
        failures += not ok
    attacker.join(limits.request_seconds + 5 * args.trickle + 5)
    stop.set()
    latencies.sort()
    print(f"slow clients: {args.slow} from {args.sources} addresses; refused at once (503): "
          f"{refused}; dropped while trickling: {len(held)}")
    if held:
        print(f"a slow client held its connection: median {statistics.median(held):.1f} s, "
              f"max {max(held):.1f} s")
    print(f"normal GET /login meanwhile: {args.requests - failures}/{args.requests} answered, "
          f"median {statistics.median(latencies) * 1000:.1f} ms, "
          f"p95 {latencies[int(len(latencies) * 0.95) - 1] * 1000:.1f} ms")
    reactor.callFromThread(reactor.stop)


if __name__ == "__main__":
    main()
