"""What the SIP edge costs and how fast it moves calls off a lost node.

Two Asterisk nodes and the edge (Kamailio) run the example city on loopback addresses, as
the scale-out test starts them (tests/scaleout.py). A small SIP caller written here (plain
UDP, one call at a time, timed with the monotonic clock at the socket: no phone library's
event loop in the measure) calls the hotline:

* through the edge (``edge``): INVITE to Kamailio, which picks a node;
* straight to a node (``direct``): the same INVITE sent from the edge's own address (the
  nodes take citizens from that address only), alternating the nodes as the edge does.

Rounds alternate, so both see the same machine load. Printed: INVITE -> 200 OK (the IVR
answers at once, so this is the whole call set-up; the hotline sends no 180) p50/p95/mean
per way, the ratio, and the added milliseconds. Then ``--failovers`` times: node a is killed
-9, two calls are placed at once (one of them meets the dead node), and the time until the
edge marks the node down is taken from its JSON-RPC state; the node is restarted and waited
for.

    .venv/bin/python benchmarks/scaleout.py [--calls 200] [--failovers 3]
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pbx.provision import provision  # noqa: E402
from tests.scaleout import EDGE_HOST, ScaleOut, start_scaleout  # noqa: E402

RESPONSE_TIMEOUT_S = 10.0


class SipCaller:
    """A minimal UDP user agent: INVITE, wait for the final answer, ACK, BYE."""

    def __init__(self, bind_host: str) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((bind_host, 0))
        self.host, self.port = self.sock.getsockname()

    def close(self) -> None:
        self.sock.close()

    def _send(self, text: str, to: tuple[str, int]) -> None:
        self.sock.sendto(text.replace("\n", "\r\n").encode(), to)

    def _recv(self, deadline: float) -> tuple[int, str, dict[str, list[str]]]:
        while True:
            self.sock.settimeout(max(0.001, deadline - time.monotonic()))
            data = self.sock.recv(65536).decode(errors="replace")
            head = data.split("\r\n\r\n", 1)[0].split("\r\n")
            if not head[0].startswith("SIP/2.0 "):
                continue  # a request (an OPTIONS, a retransmitted BYE): not ours to time
            headers: dict[str, list[str]] = {}
            for line in head[1:]:
                name, _, value = line.partition(":")
                headers.setdefault(name.strip().lower(), []).append(value.strip())
            return int(head[0].split()[1]), headers.get("cseq", [""])[0], headers

    def call(self, target: tuple[str, int], number: str) -> tuple[float, int]:
        """One call to ``number`` at ``target``: (seconds INVITE -> final answer, its code)."""
        call_id, tag = uuid.uuid4().hex, uuid.uuid4().hex[:10]
        me = f"{self.host}:{self.port}"
        sdp = (f"v=0\no=- 1 1 IN IP4 {self.host}\ns=-\nc=IN IP4 {self.host}\nt=0 0\n"
               f"m=audio {self.port + 1} RTP/AVP 8\na=rtpmap:8 PCMA/8000\na=sendrecv\n"
               ).replace("\n", "\r\n")
        common = (f"From: <sip:bench@{self.host}>;tag={tag}\nCall-ID: {call_id}\n"
                  f"Max-Forwards: 70\n")
        to_uri = f"sip:{number}@{target[0]}:{target[1]}"
        branch = "z9hG4bK" + uuid.uuid4().hex[:16]
        invite = (f"INVITE {to_uri} SIP/2.0\nVia: SIP/2.0/UDP {me};branch={branch};rport\n"
                  f"{common}To: <{to_uri}>\nCSeq: 1 INVITE\nContact: <sip:bench@{me}>\n"
                  f"Content-Type: application/sdp\nContent-Length: {len(sdp)}\n\n")
        started = time.monotonic()
        self.sock.sendto(invite.replace("\n", "\r\n").encode() + sdp.encode(), target)
        deadline = started + RESPONSE_TIMEOUT_S
        while True:
            code, cseq, headers = self._recv(deadline)
            if cseq == "1 INVITE" and code >= 200:
                break
        took = time.monotonic() - started
        to_header = headers["to"][0]
        if code >= 300:  # ACK of a refusal: same branch, hop by hop
            self._send(f"ACK {to_uri} SIP/2.0\nVia: SIP/2.0/UDP {me};branch={branch};rport\n"
                       f"{common}To: {to_header}\nCSeq: 1 ACK\nContent-Length: 0\n\n", target)
            return took, code
        contact = re.search(r"<([^>]+)>", headers["contact"][0])
        remote = contact.group(1) if contact else to_uri
        routes = [r for value in headers.get("record-route", []) for r in value.split(",")]
        routes.reverse()
        hop = target if routes else _hostport(remote)
        route_lines = "".join(f"Route: {r.strip()}\n" for r in routes)
        for method, cseq_n in (("ACK", 1), ("BYE", 2)):
            via = f"Via: SIP/2.0/UDP {me};branch=z9hG4bK{uuid.uuid4().hex[:16]};rport\n"
            self._send(f"{method} {remote} SIP/2.0\n{via}{common}To: {to_header}\n"
                       f"{route_lines}CSeq: {cseq_n} {method}\nContent-Length: 0\n\n", hop)
        while True:  # the BYE's answer (a 200 OK to the INVITE may come again first)
            _code, cseq, _ = self._recv(deadline)
            if cseq == "2 BYE":
                break
        return took, code


def _hostport(uri: str) -> tuple[str, int]:
    found = re.match(r"sips?:(?:[^@]+@)?([^:;>]+)(?::(\d+))?", uri)
    if found is None:
        raise ValueError(f"no host in {uri!r}")
    return found.group(1), int(found.group(2) or 5060)


def pct(values: list[float], p: float) -> float:
    """The p-th percentile (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


def overhead(scaleout: ScaleOut, calls: int) -> None:
    topo = scaleout.center.topology
    assert topo is not None
    number = scaleout.center.hotline[0]
    edge = (topo.edge.host, topo.edge.port)
    nodes = [(n.sip_host, n.sip_port) for n in topo.nodes]
    direct = SipCaller(EDGE_HOST)  # from the edge's address: the nodes take citizens from it
    via_edge = SipCaller("127.0.0.1")
    times: dict[str, list[float]] = {"direct": [], "edge": []}
    failed: dict[str, int] = {"direct": 0, "edge": 0}
    try:
        for _ in range(5):  # warm both ways (first calls load prompts, fill caches)
            direct.call(nodes[0], number)
            via_edge.call(edge, number)
        for i in range(calls):
            for way, caller, target in (("direct", direct, nodes[i % len(nodes)]),
                                        ("edge", via_edge, edge)):
                took, code = caller.call(target, number)
                if code == 200:
                    times[way].append(took)
                else:
                    failed[way] += 1
    finally:
        direct.close()
        via_edge.close()
    print(f"\nINVITE -> 200 OK, {calls} calls each way, one at a time:")
    print(f"{'way':<8}{'p50 ms':>9}{'p95 ms':>9}{'mean ms':>9}{'failed':>8}")
    for way, values in times.items():
        print(f"{way:<8}{pct(values, 50) * 1000:9.2f}{pct(values, 95) * 1000:9.2f}"
              f"{statistics.mean(values) * 1000:9.2f}{failed[way]:8d}")
    d50, e50 = pct(times["direct"], 50), pct(times["edge"], 50)
    d95, e95 = pct(times["direct"], 95), pct(times["edge"], 95)
    print(f"edge / direct: p50 x{e50 / d50:.2f} (+{(e50 - d50) * 1000:.2f} ms), "
          f"p95 x{e95 / d95:.2f} (+{(e95 - d95) * 1000:.2f} ms)")


def failovers(scaleout: ScaleOut, rounds: int) -> None:
    topo = scaleout.center.topology
    assert topo is not None
    number = scaleout.center.hotline[0]
    edge = (topo.edge.host, topo.edge.port)
    victim = scaleout.nodes["a"]
    detected: list[float] = []
    worst: list[float] = []
    caller = SipCaller("127.0.0.1")
    try:
        for _ in range(rounds):
            scaleout.wait_up("a", "b")
            assert victim.proc is not None
            killed = time.monotonic()
            os.kill(victim.proc.pid, signal.SIGKILL)
            victim.proc.wait(10)
            setups = []
            for _ in range(2):  # round robin: one of two meets the dead node
                took, code = caller.call(edge, number)
                if code != 200:
                    raise SystemExit(f"a call during failover was refused: {code}")
                setups.append(took)
            while scaleout.states().get("a", None) is None or scaleout.states()["a"].up:
                if time.monotonic() - killed > 30:
                    raise SystemExit("the edge never marked the killed node down")
                time.sleep(0.02)
            detected.append(time.monotonic() - killed)
            worst.append(max(setups))
            victim.start()
    finally:
        caller.close()
    print(f"\nnode killed -9, {rounds} times (edge: ping every {topo.edge.ping_seconds} s, "
          f"a node silent {topo.edge.node_timeout_ms} ms is given up):")
    print("  marked down after (s): " + ", ".join(f"{d:.2f}" for d in detected))
    print("  slowest call set-up right after the kill (ms): "
          + ", ".join(f"{w * 1000:.0f}" for w in worst) + "  (no call refused)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=200, help="calls each way")
    parser.add_argument("--failovers", type=int, default=3, help="kill -9 rounds")
    args = parser.parse_args()
    install = provision(say=lambda _line: None)
    with tempfile.TemporaryDirectory(prefix="siaga-scaleout-") as folder:
        # The benchmark's one caller address sends hundreds of requests a second: not a flood.
        scaleout = start_scaleout(Path(folder), install, flood_requests=100_000)
        try:
            overhead(scaleout, args.calls)
            if args.failovers:
                failovers(scaleout, args.failovers)
        finally:
            scaleout.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
