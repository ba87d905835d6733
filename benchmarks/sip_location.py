"""What Asterisk's SIP copies (HEP) cost the server: packets per second through the listener.

Every SIP message Asterisk sends or receives reaches the server when ``console.
sip_location_port`` is set; nearly all are dropped after the HEP header and the first bytes
(not an INVITE, or an INVITE without Geolocation). This times the listener's whole path on
the bytes Asterisk 22 sent (``tests/data/location/asterisk22-invite-pidf.hep``, re-signed
with a test password) for three kinds of packet: a response (dropped early), an INVITE with
no location, and an INVITE with a PIDF-LO (parsed and joined). Figures are for comparison on
one machine.

    .venv/bin/python benchmarks/sip_location.py [--packets 20000]
"""

from __future__ import annotations

import argparse
import struct
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1]))

from dialplans import contract  # noqa: E402
from dispatcher.console.pidf import decode_hep  # noqa: E402
from dispatcher.console.sip_location import HepListener, SipLocations  # noqa: E402

DATA = Path(__file__).parents[1] / "tests" / "data" / "location" / "asterisk22-invite-pidf.hep"


def hep(payload: bytes, password: bytes) -> bytes:
    """A HEP v3 packet as Asterisk builds it (capture id, password, protocol, payload)."""
    chunks = (struct.pack("!HHHI", 0, 0x0C, 10, contract.HEP_CAPTURE_ID)
              + struct.pack("!HHH", 0, 0x0E, 6 + len(password)) + password
              + struct.pack("!HHHB", 0, 0x0B, 7, 1)
              + struct.pack("!HHH", 0, 0x0F, 6 + len(payload)) + payload)
    return b"HEP3" + struct.pack("!H", 6 + len(chunks)) + chunks


def main() -> None:
    """Print packets per second and microseconds per packet for each kind."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packets", type=int, default=20000)
    args = parser.parse_args()
    invite = decode_hep(DATA.read_bytes()).payload
    head, _, _ = invite.partition(b"\r\n\r\n")
    plain = b"\r\n".join(line for line in head.split(b"\r\n")
                         if not line.startswith(b"Geolocation")) + b"\r\n\r\nv=0\r\n"
    kinds = {"response (dropped)": b"SIP/2.0 200 OK\r\nCall-ID: x\r\n\r\n",
             "INVITE, no location": plain, "INVITE with PIDF-LO": invite}
    for name, payload in kinds.items():
        locations = SipLocations(time.monotonic, limit=2000)
        listener = HepListener(locations, "bench-password")
        packets = [hep(payload.replace(b"E8n2y8bs7Fj33", f"{i:013d}".encode()),
                       b"bench-password") for i in range(args.packets)]
        start = time.perf_counter()
        for packet in packets:
            listener.datagramReceived(packet, ("127.0.0.1", 5060))
        elapsed = time.perf_counter() - start
        print(f"{name:22s} {args.packets / elapsed:10.0f} packets/s "
              f"{elapsed / args.packets * 1e6:7.1f} µs/packet  dropped={listener.dropped}")


if __name__ == "__main__":
    main()
