"""Record real AMI traffic from Asterisk under calls, for the parser's fixtures and benchmark.

Runs its own Asterisk (from :func:`pbx.provision.locate`) on a free port with a tiny config:
a queue with two operators (Local channels that answer and wait), callers with UTF-8 caller
names who join the queue, plus the list actions the server uses. Every byte AMI sends is
written, unchanged, to the output file.

    .venv/bin/python tests/data/ami/capture.py --calls 2 \
        --out tests/data/ami/asterisk22-session.raw
    .venv/bin/python tests/data/ami/capture.py --calls 600 --out big.raw && xz -9 big.raw

This is a tool run by hand when the fixtures need renewing, not part of the test suite.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from pbx.provision import locate  # noqa: E402

CONFIGS = {
    "modules.conf": """[modules]
autoload = yes
noload = chan_alsa.so
noload = chan_console.so
noload = chan_mobile.so
noload = chan_iax2.so
noload = chan_unistim.so
noload = chan_skinny.so
noload = chan_mgcp.so
noload = res_pjsip_transport_websocket.so
noload = cdr_radius.so
noload = cel_radius.so
noload = res_hep.so
noload = res_hep_rtcp.so
noload = res_hep_pjsip.so
noload = res_phoneprov.so
noload = res_pjsip_phoneprov_provider.so
noload = res_http_media_cache.so
noload = res_stasis_test.so
noload = res_smdi.so
noload = app_voicemail.so
""",
    "manager.conf": """[general]
enabled = yes
bindaddr = 127.0.0.1
port = {port}

[capture]
secret = capture-secret
read = all
write = all
""",
    "pjsip.conf": """[transport-udp]
type = transport
protocol = udp
bind = 127.0.0.1:{sip_port}

[op1]
type = endpoint
context = agents
disallow = all
allow = alaw
aors = op1

[op1]
type = aor
max_contacts = 1

[op2]
type = endpoint
context = agents
disallow = all
allow = alaw
aors = op2

[op2]
type = aor
max_contacts = 1
""",
    "queues.conf": """[general]
persistentmembers = no

[hotline]
strategy = rrmemory
timeout = 5
retry = 1
wrapuptime = 0
announce-frequency = 0
member => Local/op1@agents/n,0,Operator Satu
member => Local/op2@agents/n,0,Operator Dua
""",
    "extensions.conf": """[general]
static = yes

[callers]
exten => s,1,Answer()
 same => n,Set(CALLERID(num)=0812${{RAND(1000000,9999999)}})
 same => n,Set(CALLERID(name)=Warga Ñandú ${{CALLERID(num)}})
 same => n,Set(CHANNEL(language)=en)
 same => n,Queue(hotline,,,,20)
 same => n,Hangup()

[agents]
exten => _op.,1,Answer()
 same => n,Wait(${{RAND(1,3)}})
 same => n,Hangup()

[hold]
exten => s,1,Answer()
 same => n,Wait(30)
 same => n,Hangup()
""",
    "logger.conf": """[logfiles]
messages = notice,warning,error
""",
    "rtp.conf": """[general]
icesupport = no
""",
}


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port nobody listens on right now, on 127.0.0.1."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_tree(run: Path, inside: str, install_datadir: str, moddir: str, port: int) -> None:
    """Write asterisk.conf and the configs into ``run`` (seen as ``inside`` by Asterisk)."""
    for sub in ("etc", "run", "log", "spool", "db"):
        (run / sub).mkdir(parents=True, exist_ok=True)
    (run / "etc/asterisk.conf").write_text(
        "[directories]\n"
        f"astetcdir => {inside}/etc\nastmoddir => {moddir}\n"
        f"astvarlibdir => {inside}/db\nastdbdir => {inside}/db\n"
        f"astkeydir => {inside}/db\nastdatadir => {install_datadir}\n"
        f"astagidir => {install_datadir}/agi-bin\nastspooldir => {inside}/spool\n"
        f"astrundir => {inside}/run\nastlogdir => {inside}/log\n"
        f"astsbindir => /usr/sbin\n[options]\nnofork = yes\n"
    )
    sip_port = free_port(socket.SOCK_DGRAM)
    for name, text in CONFIGS.items():
        (run / "etc" / name).write_text(text.format(port=port, sip_port=sip_port))


class Recorder:
    """A blocking AMI connection that logs every received byte to a file."""

    def __init__(self, port: int, out: Path) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.sock.setblocking(False)
        self.out = out.open("wb")
        self.pending = b""
        self.seen = bytearray()
        self.counter = 0

    def pump(self, seconds: float) -> None:
        """Record what arrives during ``seconds``."""
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            readable, _, _ = select.select([self.sock], [], [], remaining)
            if not readable:
                continue
            try:
                data = self.sock.recv(65536)
            except BlockingIOError:
                continue
            if not data:
                raise ConnectionError("Asterisk closed the AMI connection")
            self.out.write(data)
            self.pending += data
            self.seen += data

    def wait_for(self, needle: bytes, seconds: float = 20) -> bytes:
        """Record until ``needle`` has arrived; return what arrived before it and it."""
        deadline = time.monotonic() + seconds
        while needle not in self.pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {needle!r} within {seconds} s")
            self.pump(0.05)
        before, _, after = self.pending.partition(needle)
        self.pending = after
        return before + needle

    def action(self, name: str, **fields: str) -> str:
        """Send an action; return its ActionID."""
        self.counter += 1
        action_id = f"cap-{self.counter}"
        lines = [f"Action: {name}", f"ActionID: {action_id}"]
        lines += [f"{k}: {v}" for k, v in fields.items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        return action_id

    def close(self) -> None:
        """Close the socket and the file."""
        self.sock.close()
        self.out.close()


def last_bridge(seen: bytearray) -> str | None:
    """The last bridge id that appeared in the stream, if any."""
    at = seen.rfind(b"BridgeUniqueid: ")
    if at < 0:
        return None
    return seen[at + 16:seen.index(b"\r\n", at)].decode()


def main() -> None:
    """Start Asterisk, place calls, record the AMI stream, stop Asterisk."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=40)
    parser.add_argument("--rate", type=float, default=8.0, help="new calls per second")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    install = locate()
    if install is None or install.rootfs is None:
        sys.exit("needs the provisioned root filesystem (siaga provision)")
    inside = f"/tmp/siaga-ami-capture-{os.getpid()}"
    run = install.rootfs / inside.lstrip("/")
    port = free_port()
    write_tree(run, inside, install.datadir, install.moddir, port)
    wrapper = 'set -e; mount -t proc proc "$0/proc"; exec chroot "$0" "$@"'
    proc = subprocess.Popen(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", wrapper, str(install.rootfs),
         install.binary, "-C", f"{inside}/etc/asterisk.conf", "-f", "-n"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                rec = Recorder(port, args.out)
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.2)
        rec.wait_for(b"\r\n")
        rec.action("Challenge", AuthType="md5")
        challenge = rec.wait_for(b"\r\n\r\n").split(b"Challenge: ")[1].split(b"\r\n")[0]
        key = hashlib.md5(challenge + b"capture-secret").hexdigest()
        rec.action("Login", AuthType="md5", Username="capture", Key=key)
        rec.wait_for(b"Event: FullyBooted", 60)
        rec.pump(1)
        rec.action("Command", Command="core show version")
        rec.action("CoreStatus")
        rec.action("PJSIPShowEndpoints")
        rec.action("QueueStatus")
        rec.action("Originate", Channel="Local/s@hold", Application="Wait", Data="5",
                   Async="true", Variable="SIAGA_TAG=capture")
        rec.pump(1)
        for i in range(args.calls):
            rec.action("Originate", Channel="Local/s@callers", Application="Wait",
                       Data="30", Async="true", CallerID=f"Warga {i} <0812{i:07d}>")
            rec.pump(1 / args.rate)
            if i % 10 == 5:
                rec.action("CoreShowChannels")
                rec.action("BridgeList")
                rec.pump(0.1)
                bridge = last_bridge(rec.seen)
                if bridge:
                    rec.action("BridgeInfo", BridgeUniqueid=bridge)
                rec.action("QueueStatus")
                rec.action("QueueSummary")
                rec.action("Command", Command="core show channels concise")
        rec.action("CoreShowChannels")
        rec.action("BridgeList")
        rec.pump(1)
        rec.action("Ping")
        rec.pump(25)
        rec.action("CoreShowChannels")
        rec.action("Logoff")
        try:
            rec.pump(1)
        except ConnectionError:
            pass  # Logoff: Asterisk says Goodbye and closes, as expected
        rec.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(run, ignore_errors=True)
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
