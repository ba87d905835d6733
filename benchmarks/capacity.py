"""How many concurrent hotline calls the center carries, with the siaga server and without it.

One `siaga up` (the example city on free loopback ports, recordings on) with as many operator
desks as the largest step needs. Citizens are SIPp (sip-tester, run chrooted in the Asterisk
root filesystem): anonymous calls to 112 offering G.711 A-law, each answered at once by the
IVR, listening to the menu for ``--ivr-seconds``, then pressing 0 (an RFC 2833 event replayed
from sip-tester's dtmf_2833_0.pcap: the endpoints' dtmf_mode is rfc4733) and sending speech
from sip-tester's g711a.pcap, replayed back to back, until the call has lasted
``--hold-seconds``; then the citizen hangs up.

The operators are SIPp too, and they are real operator desks: one SIPp REGISTERs every desk
extension with its generated password (digest, `[authentication]`), its Contact on one UDP
port; when that SIPp is done, a SIPp UAS binds that same port (Asterisk rewrites a contact to
the address a REGISTER came from, so the port must be the same) and answers every INVITE
after ringing ``--ring-seconds``, echoing all RTP it receives (``-rtp_echo``) and answering
Asterisk's OPTIONS qualifies. So the unchanged dialplan and queue ring real
registered extensions (busy ones skipped: ringinuse = no), and each answered call is a real
bridge in Asterisk with RTP both ways (direct_media = no: Asterisk relays every packet).
This was chosen over pjsua2 phones (four calls a process: hundreds of processes, which would
take the cores being measured) and over a benchmark-only queue of SIP URIs (it would not be
the queue the center runs). An answered call is counted only when the operators' SIPp
completed it (INVITE, 200, ACK, BYE): a citizen's call that SIPp finished but that no operator
took counts as failed.

The RTP check: during each step a pjsua2 citizen (pbx/phone) calls 112 beside the load,
presses 0, sends a 1 kHz tone and records what it hears; the operator's echo brings the tone
back through both legs of Asterisk's bridge. The call passes when the tone is heard clearly
(pbx.phone.tones.hears_tone) within the ring time plus 10 s.

Concurrency is ramped in steps: each step places C calls at C / ``--ramp-seconds`` calls per
second (SIPp keeps at most C up), each held ``--hold-seconds``, so all C are up together for
hold - ramp seconds. A round stops at the first step with a failed call, or when its time is
up. Two rounds on the same Asterisk: (a) `siaga up` attached (AMI, call log, recordings), (b)
the server SIGKILLed, Asterisk left running (fail-open). Printed per step: calls, failed,
peak concurrent calls seen by SIPp, INVITE -> 100/180/200 p50/p95 (SIPp response-time
timers, every call traced), CPU of Asterisk, the server and SIPp (from /proc/<pid>/stat;
100 % = one core) and the whole machine's busy share, and the RTP check. At the end: the
highest concurrency with 0 failed calls per round and their ratio (with / without server).

Everything runs on loopback (citizens from 127.0.0.2, operators on 127.0.0.3) and the run is
bounded by ``--max-minutes``.

``--via edge``: what the SIP edge costs. Two ways, the same load, with nothing else of the
center running (no siaga server, so only the SIP path differs): (a) citizens straight to
one Asterisk, the single center, desks registered there; (b)
citizens to the edge (Kamailio) with two Asterisk nodes behind it (tests/scaleout.py starts
them, each node on its own loopback address), desks registered at the edge as the topology
requires, so every call crosses the edge twice (the citizen's leg, and the node's call to
the desk) and the nodes ping every desk's contact through it. Baseline (a) is one node, not
the two nodes called straight: in the topology a node reaches a desk only through the edge,
so "the two nodes without the edge" does not exist, and one node carrying everything is
what a center has without a topology. On one machine both ways have the same cores (two
nodes share them), so the ratio (b)/(a) is what the edge and the split into two processes
cost, not what two machines would carry. Both ways are up at once and take the steps in
turns (C direct, C through the edge, the next C the other way round), so load from
elsewhere on a shared machine falls on both alike; the idle way's pings are on the other's
CPU line (every process of both is printed each step). The edge grants registrations for
120 s at most: its desks register again before each of its steps. Printed besides the
steps: both capacities and their ratio, INVITE -> 200 OK per step and way with the ms the
edge adds (the IVR answers at once: the hotline sends no 180; the 100 through the edge is
Kamailio's own), the CPU of Kamailio (its workers summed, and per call), of each Asterisk
and of SIPp, and the edge's 486 refusals per step: a node's queue sees only its own calls,
so it rings desks the other node's citizens hold, and the edge's one-call-a-desk rule
refuses them.

    .venv/bin/python benchmarks/capacity.py [--steps 100,150,200,250,300,350,400] [--max-minutes 10]
    .venv/bin/python benchmarks/capacity.py --via edge [--max-minutes 15]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.sipp_stats import (  # noqa: E402
    MachineTicks,
    double_booked,
    highest_clean,
    last_count,
    pcap_seconds,
    peak,
    percentile,
    process_cpu_ticks,
    read_sipp_csv,
    rtd_samples,
)
from dialplans.edge import STAFF_REGISTER_SECONDS  # noqa: E402

if TYPE_CHECKING:
    from dispatcher.config import Center
    from pbx.phone.stack import SipStack
    from pbx.provision import AsteriskInstall
    from tests.scaleout import ScaleOut

CITIZENS = "127.0.0.2"
OPERATORS = "127.0.0.3"
FIRST_DESK = 6000
TONE_HZ = 1000.0  # far from the ringback's and the prompts' main frequencies
PCAPS = "/usr/share/sip-tester"  # inside the root filesystem
TIMERS = {"1": "100", "2": "180", "3": "200"}
# The longest registration the SIP edge grants: a desk registered once is forgotten after
# it, so --via edge registers the desks again before every step.
EDGE_REGISTER_S = STAFF_REGISTER_SECONDS

# A citizen: INVITE 112 (timers 1, 2, 3 start at the INVITE and stop at 100, 180 and 200),
# the IVR's menu for {ivr_ms}, the key 0, then speech until the call has lasted its time.
CITIZEN = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="citizen calls the hotline">
  <send retrans="500" start_rtd="1,2,3">
    <![CDATA[
      INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:0812[call_number]@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:0812[call_number]@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=- 53655765 2353687637 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 8 101
      a=rtpmap:8 PCMA/8000
      a=rtpmap:101 telephone-event/8000
      a=fmtp:101 0-15
      a=sendrecv
    ]]>
  </send>
  <recv response="100" optional="true" rtd="1"/>
  <recv response="180" optional="true" rtd="2"/>
  <recv response="183" optional="true"/>
  <recv response="200" rrs="true" rtd="3"/>
  <send>
    <![CDATA[
      ACK [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:0812[call_number]@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      [last_To:]
      [routes]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Contact: <sip:0812[call_number]@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
  <pause milliseconds="{ivr_ms}"/>
  <nop><action><exec play_pcap_audio="{pcaps}/dtmf_2833_0.pcap"/></action></nop>
  <pause milliseconds="500"/>
{speech}
  <send retrans="500">
    <![CDATA[
      BYE [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:0812[call_number]@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      [last_To:]
      [routes]
      Call-ID: [call_id]
      CSeq: 2 BYE
      Contact: <sip:0812[call_number]@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
  <recv response="200" crlf="true"/>
</scenario>
"""

SPEECH = """  <nop><action><exec play_pcap_audio="{pcaps}/g711a.pcap"/></action></nop>
  <pause milliseconds="{ms}"/>"""

# One operator desk registers (digest) with its Contact on this SIPp's port.
REGISTER = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="operator desk registers">
  <send retrans="500">
    <![CDATA[
      REGISTER sip:[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:[field0]@[remote_ip]:[remote_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[field0]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 REGISTER
      Contact: <sip:[field0]@[local_ip]:[local_port]>
      Expires: 3600
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
  <recv response="401" auth="true"/>
  <send retrans="500">
    <![CDATA[
      REGISTER sip:[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:[field0]@[remote_ip]:[remote_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[field0]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 2 REGISTER
      Contact: <sip:[field0]@[local_ip]:[local_port]>
      [authentication username=[field0] password=[field1]]
      Expires: 3600
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
  <recv response="200"/>
</scenario>
"""

# The operators' phones: ring, answer, echo the citizen's audio (-rtp_echo) until the BYE.
# Asterisk's qualify (an OPTIONS to each desk's contact every 30 s) is answered too: a desk
# that stops answering it is unreachable and the queue skips it. Timer 1 runs from the 200 to
# the ACK: one response-time row per answered call, which is how answered calls are counted
# (SIPp's successful-call counter also counts the OPTIONS). Through the SIP edge an answered
# call is also pinged in-dialog (an OPTIONS every 30 s): answered, the call goes on.
# The 180 and 200 carry the INVITE's Record-Route back, as RFC 3261 (12.1.1) makes every phone
# do: without it the node's BYE went straight to the desk, past the edge, whose dialog
# module then held the desk busy after the call (an earlier version of this benchmark: every
# desk of one step was refused in the next).
OPERATOR = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="operator desks answer">
  <recv request="OPTIONS" optional="true" next="options"/>
  <recv request="INVITE" crlf="true"/>
  <send>
    <![CDATA[
      SIP/2.0 180 Ringing
      [last_Via:]
      [last_Record-Route:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:[local_ip]:[local_port];transport=[transport]>
      Content-Length: 0
    ]]>
  </send>
  <pause milliseconds="{ring_ms}"/>
  <send retrans="500" start_rtd="1">
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_Record-Route:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:[local_ip]:[local_port];transport=[transport]>
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=- 53655765 2353687637 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 8
      a=rtpmap:8 PCMA/8000
      a=sendrecv
    ]]>
  </send>
  <recv request="ACK" crlf="true" rtd="1"/>
  <label id="talk"/>
  <recv request="OPTIONS" optional="true" next="keepalive"/>
  <recv request="BYE"/>
  <send next="done">
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0
    ]]>
  </send>
  <label id="keepalive"/>
  <send next="talk">
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0
    ]]>
  </send>
  <label id="options"/>
  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag02[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0
    ]]>
  </send>
  <label id="done"/>
</scenario>
"""


def free_udp_port(address: str) -> int:
    """A UDP port nobody uses on ``address`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((address, 0))
        return s.getsockname()[1]


def cpu_ticks(pid: int | None) -> int | None:
    """utime + stime of a live process, None when it is gone."""
    if pid is None:
        return None
    try:
        return process_cpu_ticks(Path(f"/proc/{pid}/stat").read_text())
    except (OSError, ValueError, IndexError):
        return None


def session_ticks(sid: int | None) -> int | None:
    """utime + stime of every live process in session ``sid`` (a leader and the workers it
    forked: Kamailio), None when the leader is gone. A worker that exits between two
    readings takes its ticks with it: the figure is a floor."""
    if sid is None or cpu_ticks(sid) is None:
        return None
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
            # Field 6 (session) is the 4th after the command name's closing parenthesis.
            if int(text[text.rindex(")") + 1:].split()[3]) == sid:
                total += process_cpu_ticks(text)
        except (OSError, ValueError, IndexError):
            continue
    return total


def load_average() -> str:
    """The machine's 1-minute load average now (other users' work shows here)."""
    return Path("/proc/loadavg").read_text().split()[0]


def machine() -> MachineTicks:
    """The machine's CPU counters now."""
    return MachineTicks.parse(Path("/proc/stat").read_text())


class SippRunner:
    """Runs SIPp where it is installed: chrooted into the Asterisk root filesystem, in a
    directory of its own there (its scenario, CSV input and trace files)."""

    def __init__(self, prefix: list[str], rootfs: Path | None) -> None:
        self.prefix = prefix
        self.rootfs = rootfs
        base = (rootfs / "tmp") if rootfs is not None else None
        self.top = Path(tempfile.mkdtemp(prefix="siaga-capacity-", dir=base))
        self.runs = 0

    def workdir(self, name: str) -> Path:
        """A new directory for one SIPp run."""
        self.runs += 1
        path = self.top / f"{self.runs:02d}-{name}"
        path.mkdir()
        return path

    def inside(self, path: Path) -> str:
        """``path`` as SIPp sees it."""
        return str(path if self.rootfs is None else Path("/") / path.relative_to(self.rootfs))

    def start(self, workdir: Path, scenario: str, args: list[str]) -> subprocess.Popen[bytes]:
        """SIPp on ``scenario`` (XML text) with ``args``, in ``workdir`` (trace files land
        there: chroot itself would start SIPp in the root directory)."""
        (workdir / "scenario.xml").write_text(scenario)
        argv = [*args, "-sf", "scenario.xml", "-nostdin"]
        if self.rootfs is not None:
            # sh replaces itself with SIPp: the pid is SIPp's.
            command = [*self.prefix[:2], "/bin/sh", "-c", 'cd "$0" && exec "$@"',
                       self.inside(workdir), self.prefix[2], *argv]
        else:
            command = [*self.prefix, *argv]
        out = (workdir / "sipp.out").open("wb")
        try:
            return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True,
                                    cwd=workdir if self.rootfs is None else None)
        finally:
            out.close()

    def close(self) -> None:
        """Remove every run's files."""
        shutil.rmtree(self.top, ignore_errors=True)


def stop(proc: subprocess.Popen[bytes] | None) -> None:
    """End a SIPp this script started (its own session), waiting for it."""
    if proc is None or proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


def tail(path: Path, chars: int = 2000) -> str:
    """The end of a text file, for error messages."""
    return path.read_text(errors="replace")[-chars:] if path.exists() else "(no output)"


@dataclass
class Step:
    """What one step of the ramp measured."""

    concurrency: int
    calls: int = 0
    completed: int = 0
    failed: int = 0
    unanswered: int = 0
    peak: int = 0
    seconds: float = 0.0
    times: dict[str, list[float]] = field(default_factory=dict)
    cpu: dict[str, float | None] = field(default_factory=dict)
    machine_busy: float = 0.0
    rtp: str = "-"
    plateau_channels: int | None = None
    load_average: str = "-"
    counted: dict[str, int] = field(default_factory=dict)
    state_idle: str = ""
    state_loaded: str = ""

    @property
    def lost(self) -> int:
        """Calls that failed in SIPp or that no operator took."""
        return self.failed + self.unanswered


class Operators:
    """Every operator desk registered from one SIPp, then answered by a SIPp UAS on the
    same port."""

    def __init__(self, sipp: SippRunner, target: str, passwords: dict[str, str],
                 ring_ms: int) -> None:
        self.sipp = sipp
        self.target = target
        self.port = free_udp_port(OPERATORS)
        self.media_port = free_udp_port(OPERATORS)
        self.passwords = passwords
        self.ring_ms = ring_ms
        self.proc: subprocess.Popen[bytes] | None = None
        self.dir: Path | None = None

    @classmethod
    def for_center(cls, sipp: SippRunner, center: Center, ring_seconds: float,
                   registrar: str | None = None) -> Operators:
        """Every operator desk of ``center``, registered and answering; ``registrar``
        (host:port) is where they register, the center's Asterisk unless told (the SIP
        edge in a topology)."""
        from dispatcher.credentials import ensure_credentials

        creds = ensure_credentials(center)
        desks = cls(sipp, registrar or f"{center.sip.host}:{center.sip.port}",
                    {op.extension: creds.password(op.extension) for op in center.operators},
                    int(ring_seconds * 1000))
        desks.register()
        desks.answer()
        return desks

    def register(self) -> None:
        """REGISTER every desk (digest); raises when any is refused."""
        work = self.sipp.workdir("register")
        (work / "desks.csv").write_text(
            "SEQUENTIAL\n" + "".join(f"{ext};{pw};\n" for ext, pw in self.passwords.items()))
        proc = self.sipp.start(work, REGISTER, [
            "-inf", "desks.csv", "-i", OPERATORS, "-p", str(self.port),
            "-m", str(len(self.passwords)), "-r", "50", "-l", "20",
            "-recv_timeout", "10000", "-timeout", "120s", "-timeout_error", self.target])
        try:
            code = proc.wait(150)
        finally:
            stop(proc)
        if code != 0:
            raise RuntimeError(f"operators' REGISTER: SIPp exit {code}\n"
                               f"{tail(work / 'sipp.out')}")

    def answer(self) -> None:
        """Start the UAS that answers every desk's calls."""
        self.dir = self.sipp.workdir("operators")
        self.proc = self.sipp.start(self.dir, OPERATOR.format(ring_ms=self.ring_ms), [
            "-i", OPERATORS, "-p", str(self.port), "-mi", OPERATORS,
            "-mp", str(self.media_port), "-rtp_echo", "-trace_rtt", "-rtt_freq", "1",
            "-recv_timeout", "600000", self.target])
        time.sleep(0.5)  # a SIPp that cannot bind exits at once: say so now, not mid-step
        if self.proc.poll() is not None:
            raise RuntimeError(f"operators' SIPp exit {self.proc.returncode}\n"
                               f"{tail(self.dir / 'sipp.out')}")

    def answered(self) -> int:
        """Calls the operators answered so far (their 200 OK acknowledged), by every
        answering SIPp this run started."""
        return sum(len(read_sipp_csv(path.read_text()))
                   for path in self.sipp.top.glob("*-operators/*_rtt.csv"))

    def register_again(self) -> None:
        """REGISTER every desk again from the answering port (the UAS stopped meanwhile:
        one SIPp per port), then answer again. For a registrar that grants less time
        than the run lasts (the SIP edge: 120 s); called between steps, with no call up."""
        stop(self.proc)
        self.register()
        self.answer()

    def close(self) -> None:
        """Stop the UAS."""
        stop(self.proc)


class SampleCall:
    """The RTP check: a pjsua2 citizen that calls, presses 0, sends a tone and listens for
    it coming back from the operator's echo."""

    def __init__(self, sip_address: str, hotline: str, folder: Path, wait_s: float,
                 stack: SipStack | None = None) -> None:
        """``stack``: a SIP stack shared with another sample (one pjsua2 library a
        process), which stays open when this one closes; otherwise one of its own."""
        from pbx.phone.phone import Phone
        from pbx.phone.stack import SipStack

        self.own_stack = stack is None
        self.stack = SipStack() if stack is None else stack
        self.phone = Phone(self.stack, "bench-sample", server=sip_address)
        self.hotline = hotline
        self.folder = folder
        self.wait_s = wait_s
        self.count = 0

    def check(self) -> str:
        """One sample call; "heard" or why not."""
        from pbx.phone.tones import hears_tone, read_wav

        self.count += 1
        path = self.folder / f"sample-{self.count}.wav"
        call = self.phone.call(self.hotline)
        try:
            call.wait_confirmed(15)
            call.start_recording(path)
            call.send_dtmf("0")
            call.play_tone(TONE_HZ)

            def heard() -> bool:
                audio = read_wav(path)
                return audio.seconds >= 1.0 and hears_tone(
                    audio.slice(audio.seconds - 1.0), TONE_HZ)
            self.stack.wait_until(heard, self.wait_s, "the tone's echo")
            return "heard"
        except Exception as exc:  # noqa: BLE001 - a failed check is a figure, not a crash
            return f"NOT heard ({type(exc).__name__}: {exc})"
        finally:
            call.hangup()
            try:
                call.wait_disconnected(10)
            except Exception as exc:  # noqa: BLE001
                print(f"    (sample call did not end cleanly: {exc})")

    def close(self) -> None:
        """Close the phone and its stack (when its own)."""
        self.phone.close()
        if self.own_stack:
            self.stack.close()


@dataclass
class Load:
    """What every step needs."""

    sipp: SippRunner
    target: str
    operators: Operators
    hold_s: float
    ivr_s: float
    ramp_s: float
    speech_s: float
    sample: SampleCall | None
    pids: Callable[[], dict[str, int | None]]
    channels: Callable[[], int]
    # Processes measured with their whole session (a leader and its workers: Kamailio).
    sessions: Callable[[], dict[str, int | None]] = dict
    # Register the desks again before each step (a registrar granting less than the run).
    reregister: bool = False
    # Counters read before and after each step, printed as the step's difference.
    counters: Callable[[], dict[str, int]] = dict
    # The processes of this way that have exited (a crash ends the way's ramp).
    exited: Callable[[], list[str]] = list
    # A state worth printing, read at the step's start (idle) and at its full load.
    state: Callable[[], str] = str

    def ticks(self) -> dict[str, int | None]:
        """CPU ticks of every measured process (the citizens' SIPp apart) now."""
        out = {name: cpu_ticks(pid) for name, pid in self.pids().items()}
        out.update({name: session_ticks(sid) for name, sid in self.sessions().items()})
        proc = self.operators.proc
        out["sipp (operators)"] = cpu_ticks(proc.pid if proc else None)
        return out


def citizen_scenario(load: Load) -> str:
    """The citizens' scenario for this run's times: speech pcaps back to back to the end."""
    left = max(0.0, load.hold_s - load.ivr_s - 0.5)
    pieces = []
    while left > 0:
        ms = int(min(left, load.speech_s) * 1000)
        pieces.append(SPEECH.format(pcaps=PCAPS, ms=max(ms, 1)))
        left -= load.speech_s
    return CITIZEN.format(ivr_ms=int(load.ivr_s * 1000), pcaps=PCAPS, speech="\n".join(pieces))


def run_step(load: Load, concurrency: int) -> Step:
    """C calls ramped over ramp_s seconds, each held hold_s; the figures of the step."""
    step = Step(concurrency)
    rate = max(1, round(concurrency / load.ramp_s))
    if load.reregister:
        load.operators.register_again()
    work = load.sipp.workdir(f"c{concurrency}")
    answered_before = load.operators.answered()
    step.state_idle = load.state()
    before = load.ticks()
    counted_before = load.counters()
    step.load_average = load_average()
    machine_before = machine()
    started = time.monotonic()
    budget = load.hold_s + concurrency / rate + 60
    proc = load.sipp.start(work, citizen_scenario(load), [
        "-s", "112", "-i", CITIZENS, "-p", str(free_udp_port(CITIZENS)), "-mi", CITIZENS,
        "-mp", str(free_udp_port(CITIZENS)), "-m", str(concurrency), "-l", str(concurrency),
        "-r", str(rate), "-recv_timeout", "30000", "-timeout", f"{int(budget)}s",
        "-timeout_error",
        "-trace_stat", "-stf", "stat.csv", "-fd", "1", "-trace_rtt", "-rtt_freq", "1",
        "-trace_err", load.target])
    before["sipp (citizens)"] = cpu_ticks(proc.pid)
    try:
        # Once every call is past the IVR: the step's full load.
        up_at = started + concurrency / rate + load.ivr_s + 1
        while time.monotonic() < up_at and proc.poll() is None:
            time.sleep(0.2)
        # Every citizen bridged to a desk is two channels in Asterisk.
        step.plateau_channels = load.channels()
        step.state_loaded = load.state()
        if load.sample is not None:
            step.rtp = load.sample.check()
        # Read CPU just before SIPp exits (its counters vanish with it).
        while proc.poll() is None and time.monotonic() < started + budget + 30:
            for name in ("sipp (citizens)",):
                ticks = cpu_ticks(proc.pid)
                if ticks is not None:
                    step.cpu[name + " ticks"] = ticks
            time.sleep(0.5)
    finally:
        stop(proc)
    step.seconds = time.monotonic() - started
    machine_after = machine()
    after = load.ticks()
    after["sipp (citizens)"] = step.cpu.pop("sipp (citizens) ticks", None)
    step.counted = {name: value - counted_before.get(name, 0)
                    for name, value in load.counters().items()}
    hz = os.sysconf("SC_CLK_TCK")
    for name, was in before.items():
        now = after.get(name)
        step.cpu[name] = None if now is None or was is None \
            else (now - was) / hz / step.seconds
    step.machine_busy = machine_before.busy_share(machine_after)
    stats = read_sipp_csv((work / "stat.csv").read_text()) if (work / "stat.csv").exists() \
        else []
    if proc.returncode == 0:
        # SIPp's own verdict: every one of its -m calls succeeded (the stat file, dumped
        # every second, may miss the last second).
        step.completed, step.failed = concurrency, 0
    else:
        step.completed = last_count(stats, "SuccessfulCall(C)")
        step.failed = max(1, concurrency - step.completed)  # failed, or never placed
    step.calls = concurrency
    step.peak = peak(stats, "CurrentCall")
    for rtt in work.glob("*_rtt.csv"):
        for name, values in rtd_samples(read_sipp_csv(rtt.read_text())).items():
            step.times.setdefault(TIMERS.get(name, name), []).extend(values)
    # The operators' stat file is written every second: wait for it to show this step's end.
    expected = step.completed + (1 if step.rtp == "heard" else 0)
    deadline = time.monotonic() + 5
    while load.operators.answered() - answered_before < expected and time.monotonic() < deadline:
        time.sleep(0.5)
    step.unanswered = max(0, step.completed - (load.operators.answered() - answered_before))
    if proc.returncode != 0:
        errors = "".join(p.read_text(errors="replace") for p in work.glob("*_errors.log"))
        print(f"    citizens' SIPp exit {proc.returncode}; its first errors:\n"
              f"{errors[:1500] or tail(work / 'sipp.out', 1500)}")
    return step


def ms(value: float | None) -> str:
    """A time in ms for the table."""
    return "   -  " if value is None else f"{value:6.1f}"


def print_step(step: Step) -> None:
    """One line (and a CPU line) per step."""
    times = "  ".join(
        f"->{code} {ms(percentile(step.times.get(code, []), 50))}/"
        f"{ms(percentile(step.times.get(code, []), 95))}"
        for code in ("100", "180", "200"))
    print(f"  C={step.concurrency:4d}  calls {step.calls:4d}  failed {step.failed:3d}  "
          f"unanswered {step.unanswered:3d}  peak {step.peak:4d}  "
          f"INVITE p50/p95 ms {times}  ({step.seconds:.0f} s)")
    cpu = "  ".join(f"{name} {'-' if v is None else f'{v * 100:.0f} %'}"
                    for name, v in step.cpu.items())
    print(f"          CPU: {cpu}  machine busy {step.machine_busy * 100:.0f} %  "
          f"load average {step.load_average}  RTP check: {step.rtp}")
    print(f"          Asterisk channels at full load: {step.plateau_channels} "
          f"(2 per bridged call)"
          + "".join(f"; {name}: {value}" for name, value in step.counted.items()))
    if step.state_idle or step.state_loaded:
        print(f"          before the step (idle): {step.state_idle}; at full load: "
              f"{step.state_loaded}")


def run_round(load: Load, label: str, steps: list[int], until: float) -> list[Step]:
    """Ramp through ``steps`` until a call fails or the time is up."""
    print(f"\n{label}")
    done: list[Step] = []
    for concurrency in steps:
        needed = load.hold_s + concurrency / max(1, round(concurrency / load.ramp_s)) + 15
        if time.monotonic() + needed > until:
            print(f"  (no time left for C={concurrency}: stopping the round)")
            break
        step = run_step(load, concurrency)
        print_step(step)
        done.append(step)
        wait_quiet(load)
        if step.lost:
            break
    return done


def wait_quiet(load: Load, timeout: float = 30.0) -> None:
    """Wait until Asterisk carries no channel: each step starts from an idle center."""
    deadline = time.monotonic() + timeout
    left = load.channels()
    while left and time.monotonic() < deadline:
        time.sleep(0.5)
        left = load.channels()
    if left:
        print(f"  ({left} channels still up {timeout:g} s after the step)")


def center_sections(desks: int) -> dict[str, object]:
    """The config sections every run changes from the example city: its desks, its queue."""
    return {
        "operators": [{"extension": str(FIRST_DESK + i), "name": f"Desk {i + 1}"}
                      for i in range(desks)],
        # No position announcements: a prompt every few seconds to every caller would
        # measure the announcer; no overflow to the supervisors within a step.
        "queue": {"announce_seconds": 0, "overflow_seconds": 600},
        "recordings": True,
    }


def count_channels(cli: Callable[[str], str]) -> int:
    """Channels up in one Asterisk, asked over its own CLI (its control socket: works with
    the server gone too); -1 when the answer does not say or Asterisk does not answer."""
    try:
        found = re.search(r"(\d+) active channels?", cli("core show channels count"))
    except RuntimeError:
        return -1
    return int(found.group(1)) if found else -1


def main() -> None:
    """Parse the options and run the comparison asked for."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--via", choices=("server", "edge"), default="server",
                        help="server: one center with siaga up attached, then killed; "
                             "edge: one Asterisk direct, then the SIP edge over two nodes")
    parser.add_argument("--steps", default="100,150,200,250,300,350,400",
                        help="concurrent calls per step, comma-separated, increasing")
    parser.add_argument("--hold-seconds", type=float, default=25.0,
                        help="how long each citizen's call lasts (IVR, queue, operator)")
    parser.add_argument("--ivr-seconds", type=float, default=3.0,
                        help="time in the IVR's menu before pressing 0")
    parser.add_argument("--ring-seconds", type=float, default=1.0,
                        help="how long an operator's phone rings before it answers")
    parser.add_argument("--ramp-seconds", type=float, default=10.0,
                        help="a step's calls are placed over this many seconds")
    parser.add_argument("--max-minutes", type=float, default=None,
                        help="the whole run, both rounds, stops after this "
                             "(default: 10, with --via edge 15)")
    parser.add_argument("--edge-nodes", type=int, choices=(1, 2), default=2,
                        help="--via edge: nodes behind the edge (1: the other is stopped, "
                        "so the edge's own cost against one node straight)")
    parser.add_argument("--no-rtp-check", action="store_true",
                        help="skip the pjsua2 sample call of each step")
    args = parser.parse_args()
    steps = [int(s) for s in args.steps.split(",")]
    if steps != sorted(steps) or min(steps) < 1:
        parser.error("--steps must be increasing positive numbers")
    if args.hold_seconds <= args.ramp_seconds + args.ivr_seconds + args.ring_seconds:
        parser.error("--hold-seconds must exceed ramp + ivr + ring seconds: calls must "
                     "overlap with operators")
    if args.via == "edge" and args.hold_seconds + args.ramp_seconds >= EDGE_REGISTER_S - 30:
        parser.error(f"--via edge: a step (hold + ramp seconds) must end well within the "
                     f"edge's {EDGE_REGISTER_S} s registrations (the desks register again "
                     "between steps)")
    minutes = args.max_minutes if args.max_minutes is not None else \
        (15.0 if args.via == "edge" else 10.0)
    deadline = time.monotonic() + minutes * 60

    from pbx.provision import provision

    install = provision(say=lambda _line: None)
    if install.sipp is None:
        sys.exit("SIPp (sip-tester) is not installed: run `siaga provision`")
    if args.via == "edge":
        compare_edge(args, steps, deadline, install)
    else:
        compare_server(args, steps, deadline, install)


def compare_server(args: argparse.Namespace, steps: list[int], deadline: float,
                   install: AsteriskInstall) -> None:
    """Start the center, register the desks, run both rounds, print the figures."""
    from tests.harness import SiagaProcess, write_test_config

    desks = int(max(steps) * 1.1) + 5
    with tempfile.TemporaryDirectory(prefix="siaga-capacity-") as tmp:
        config = write_test_config(Path(tmp) / "center.yaml", sections=center_sections(desks))
        server = SiagaProcess(config, Path(tmp) / "state")
        sipp = SippRunner(install.sipp, install.rootfs)
        operators: Operators | None = None
        sample: SampleCall | None = None
        try:
            print(f"starting siaga up with {desks} operator desks ...")
            server.start(timeout=180)
            center = server.center
            target = f"{center.sip.host}:{center.sip.port}"
            operators = Operators.for_center(sipp, center, args.ring_seconds)
            if not args.no_rtp_check:
                sample = SampleCall(target, center.hotline[0], Path(tmp),
                                    args.ring_seconds + 10)
            asterisk_pid = server.asterisk_pid()
            assert server.proc is not None
            server_pid = server.proc.pid
            alive = {"server": True}

            def pids() -> dict[str, int | None]:
                return {"asterisk": asterisk_pid,
                        "server": server_pid if alive["server"] else None}

            load = Load(sipp, target, operators, args.hold_seconds, args.ivr_seconds,
                        args.ramp_seconds, speech_seconds(install), sample, pids,
                        lambda: count_channels(server.cli))
            print(f"{desks} desks registered; citizens: {args.hold_seconds:g} s calls "
                  f"({args.ivr_seconds:g} s in the IVR, operators ring {args.ring_seconds:g} s), "
                  f"ramped over {args.ramp_seconds:g} s; Asterisk pid {asterisk_pid}, "
                  f"server pid {server_pid}")
            half = time.monotonic() + (deadline - time.monotonic()) / 2
            with_server = run_round(load, "(a) siaga up attached (AMI, call log, recordings)",
                                    steps, half)
            server.signal(signal.SIGKILL)
            server.wait_exit(10)
            alive["server"] = False
            if server.asterisk_pid() != asterisk_pid:
                raise RuntimeError("Asterisk did not outlive the server")
            without = run_round(load, "(b) server SIGKILLed, the same Asterisk alone "
                                "(fail-open)", steps, deadline)
        finally:
            if sample is not None:
                sample.close()
            if operators is not None:
                operators.close()
            server.stop()
            sipp.close()
    report(with_server, without)


def speech_seconds(install: AsteriskInstall) -> float:
    """How long the citizens' speech pcap plays."""
    return pcap_seconds((install.rootfs or Path("/")).joinpath(
        PCAPS.lstrip("/"), "g711a.pcap").read_bytes())


def run_interleaved(loads: dict[str, Load], steps: list[int],
                    until: float) -> dict[str, list[Step]]:
    """Ramp every way through ``steps`` in turns (C for one way, C for the next, which goes
    first alternating), so load from elsewhere on the machine falls on each way alike; a way
    stops at its first step with a lost call, all stop when the time is up."""
    done: dict[str, list[Step]] = {name: [] for name in loads}
    going = list(loads)
    for index, concurrency in enumerate(steps):
        order = going if index % 2 == 0 else going[::-1]
        for name in list(order):
            load = loads[name]
            needed = load.hold_s + concurrency / max(1, round(concurrency / load.ramp_s)) + 15
            if time.monotonic() + needed > until:
                print(f"  (no time left for C={concurrency} {name}: stopping)")
                return done
            print(f"  {name}:")
            step = run_step(load, concurrency)
            print_step(step)
            done[name].append(step)
            gone = load.exited()
            if gone:
                print(f"          EXITED during the step: {', '.join(gone)} (see the kernel "
                      "log for a crash); this way stops here")
                going.remove(name)
                continue
            wait_quiet(load)
            if step.lost:
                going.remove(name)
        if not going:
            break
    return done


def compare_edge(args: argparse.Namespace, steps: list[int], deadline: float,
                 install: AsteriskInstall) -> None:
    """One Asterisk straight and the SIP edge over two nodes, all up at once, the steps in
    turns; the figures."""
    from pbx.phone.stack import SipStack
    from tests.harness import start_asterisk, wait_for, write_test_config
    from tests.scaleout import start_scaleout

    desks = int(max(steps) * 1.1) + 5
    sections = center_sections(desks)
    # The folder goes last: every process started in it is stopped first.
    with tempfile.TemporaryDirectory(prefix="siaga-capacity-") as tmp, \
            contextlib.ExitStack() as on_exit:
        sipp = SippRunner(install.sipp, install.rootfs)
        on_exit.callback(sipp.close)
        stack = None if args.no_rtp_check else SipStack()
        if stack is not None:
            on_exit.callback(stack.close)
        speech_s = speech_seconds(install)

        def load_for(target: str, center: Center, registrar: str | None,
                     **extra: object) -> Load:
            operators = Operators.for_center(sipp, center, args.ring_seconds, registrar)
            on_exit.callback(operators.close)
            sample = None
            if stack is not None:
                sample = SampleCall(target, center.hotline[0], Path(tmp),
                                    args.ring_seconds + 10, stack)
                on_exit.callback(sample.close)
            return Load(sipp, target, operators, args.hold_seconds, args.ivr_seconds,
                        args.ramp_seconds, speech_s, sample, **extra)  # type: ignore[arg-type]

        print(f"starting one Asterisk (the single center) with {desks} desks ...")
        node = start_asterisk(Path(tmp) / "direct", install, write_test_config(
            Path(tmp) / "direct.yaml", sections=sections))
        on_exit.callback(node.stop)
        print(f"starting the SIP edge and two nodes with {desks} desks ...")
        (Path(tmp) / "edge").mkdir()
        # The one citizens' address sends thousands of requests: not a flood here.
        scaleout = start_scaleout(Path(tmp) / "edge", install, flood_requests=100_000,
                                  sections=sections)
        on_exit.callback(scaleout.stop)
        if args.edge_nodes == 1:
            # The proxy's own cost: the edge in front of one node, as (a) is one node. The
            # other is stopped and the edge marks it down (its pings go unanswered), so no
            # call, ping or desk refusal involves it.
            scaleout.wait_up(*scaleout.nodes)
            gone = sorted(scaleout.nodes)[-1]
            scaleout.nodes.pop(gone).stop()
            wait_for(lambda: (s := scaleout.states().get(gone)) is not None and not s.up,
                     30, f"the edge to mark node {gone} down")
        assert node.proc is not None and scaleout.edge_proc is not None
        # Every way's steps show every process: the other way's, idle, is load on this one.
        pids = {"asterisk (direct)": node.proc.pid,
                **{f"asterisk {name}": n.proc.pid if n.proc else None
                   for name, n in scaleout.nodes.items()}}
        edge_pid = scaleout.edge_proc.pid
        common: dict[str, object] = {"pids": lambda: dict(pids),
                                     "sessions": lambda: {"kamailio": edge_pid}}
        booked = "desk connected while in another call (queue_log)"
        direct = load_for(node.sip_address, node.center, None,
                          channels=lambda: count_channels(node.cli),
                          counters=lambda: {booked: double_booked(
                              [node.prepared.paths.log / "queue_log"])},
                          exited=lambda: exited({"asterisk (direct)": node.proc}), **common)
        edge = scaleout.edge_address
        via_edge = load_for(edge, scaleout.center, edge, reregister=True,
                            channels=lambda: sum(count_channels(n.cli)
                                                 for n in scaleout.nodes.values()),
                            counters=lambda: {"desk busy at the other node (486)":
                                              edge_refusals(scaleout), booked: double_booked(
                                [n.prepared.paths.log / "queue_log"
                                 for n in scaleout.nodes.values()])},
                            state=lambda: edge_dialogs(scaleout),
                            exited=lambda: exited({"kamailio": scaleout.edge_proc, **{
                                f"asterisk {name}": n.proc
                                for name, n in scaleout.nodes.items()}}), **common)
        print(f"{desks} desks registered at Asterisk {node.sip_address} and at the edge "
              f"{edge} (nodes " + ", ".join(n.sip_address for n in scaleout.nodes.values())
              + f"); citizens: {args.hold_seconds:g} s calls ({args.ivr_seconds:g} s in the "
              f"IVR, operators ring {args.ring_seconds:g} s), ramped over "
              f"{args.ramp_seconds:g} s")
        behind = "one node (the other stopped)" if args.edge_nodes == 1 else "two nodes"
        print("\n(a) direct: citizens straight to one Asterisk, desks registered there"
              f"\n(b) edge: citizens to the SIP edge, {behind} behind it, desks registered "
              "at the edge")
        done = run_interleaved({"(a) direct": direct, "(b) edge": via_edge}, steps, deadline)
    report_edge(done["(a) direct"], done["(b) edge"], behind)


def exited(procs: dict[str, subprocess.Popen[bytes] | None]) -> list[str]:
    """The names of the processes that are no longer running, with their exit status."""
    return [f"{name} (exit {'-' if proc is None else proc.returncode})"
            for name, proc in procs.items() if proc is None or proc.poll() is not None]


def edge_dialogs(scaleout: ScaleOut) -> str:
    """The desk calls the edge holds (its dialog module tracks those only): idle, every one
    is a desk the edge would refuse while the node thinks it free."""
    from pbx.kamailio import EdgeError, rpc

    try:
        stats = rpc(scaleout.edge.paths.rpc_socket, "stats.get_statistics", ["dialog:"],
                    timeout=2)
    except EdgeError as exc:
        return f"edge dialogs unknown ({exc})"
    values = {}
    for item in stats if isinstance(stats, list) else []:
        name, _, value = str(item).partition(" = ")
        values[name.removeprefix("dialog:")] = value
    return (f"edge desk dialogs {values.get('active_dialogs', '?')} active, "
            f"{values.get('early_dialogs', '?')} early, "
            f"{values.get('expired_dialogs', '?')} expired so far")


def edge_refusals(scaleout: ScaleOut) -> int:
    """Calls the edge refused to a desk because it had one from the other node: each node's
    queue sees only its own calls, so it may ring a desk the other node's citizen has."""
    text = scaleout.edge.out_path.read_text(errors="replace")
    return text.count("busy with a call from another node")


def report_edge(direct: list[Step], via_edge: list[Step], behind: str = "two nodes") -> None:
    """The summary of --via edge: capacity each way, its ratio, the added set-up time."""
    a = highest_clean((s.concurrency, s.lost) for s in direct)
    b = highest_clean((s.concurrency, s.lost) for s in via_edge)
    print("\nhighest concurrency with 0 failed calls:")
    print(f"  (a) one Asterisk, direct:     {a}")
    print(f"  (b) edge over {behind}: {b}")
    if a:
        # A way that never failed has a capacity of at least its last step: then the
        # ratio is a bound, not a figure.
        bound, lost = ("at most ", "at least ") if direct and not direct[-1].lost else \
            ("at least ", "at most ") if via_edge and not via_edge[-1].lost else ("", "")
        print(f"  ratio (b)/(a):                {bound}{b / a:.2f}  (capacity lost through the "
              f"edge topology: {lost}{max(0.0, 1 - b / a) * 100:.0f} %; goal: at most 5 %)")
    else:
        print("  ratio (b)/(a):                n/a (round a had no clean step)")
    for label, done in (("a", direct), ("b", via_edge)):
        if done and not done[-1].lost:
            print(f"  round ({label}) ended with no failure: its capacity is at least "
                  f"{done[-1].concurrency} (steps or time ran out first)")
    print("\nINVITE -> 200 OK (the IVR answers at once: the hotline sends no 180) per step, "
          "ms p50/p95:")
    print(f"  {'C':>5}  {'direct':>15}  {'via the edge':>15}  {'added':>15}")
    by_c = {s.concurrency: s for s in via_edge}
    for s in direct:
        e = by_c.get(s.concurrency)
        d50, d95 = (percentile(s.times.get("200", []), q) for q in (50, 95))
        e50, e95 = (percentile(e.times.get("200", []), q) if e else None for q in (50, 95))
        added = (f"{e50 - d50:+7.1f}/{e95 - d95:+7.1f}"
                 if None not in (d50, d95, e50, e95) else "-")  # type: ignore[operator]
        print(f"  {s.concurrency:5d}  {ms(d50)}/{ms(d95)}  {ms(e50)}/{ms(e95)}  {added:>15}"
              f"{'' if not s.lost and (e is None or not e.lost) else '  (calls failed)'}")
    print("  (goal: at most 5 ms added at p95)")
    print("\nthe edge's own work per call (Kamailio's CPU over the step / its calls: both legs "
          "and the nodes' pings of every desk in, the desks' registrations between steps out):")
    for s in via_edge:
        share = s.cpu.get("kamailio")
        if share is not None and s.calls:
            print(f"  C={s.concurrency:4d}: {share * s.seconds / s.calls * 1000:5.2f} ms CPU "
                  f"a call ({share * 100:.0f} % of a core)")
    rtp = [s.rtp for s in direct + via_edge]
    heard = sum(1 for r in rtp if r == "heard")
    print(f"  RTP check: tone heard back in {heard} of {len([r for r in rtp if r != '-'])} "
          "sample calls")


def report(with_server: list[Step], without: list[Step]) -> None:
    """The summary: highest clean concurrency per round, and their ratio."""
    a = highest_clean((s.concurrency, s.lost) for s in with_server)
    b = highest_clean((s.concurrency, s.lost) for s in without)
    print("\nhighest concurrency with 0 failed calls:")
    print(f"  (a) with siaga up:       {a}")
    print(f"  (b) Asterisk alone:      {b}")
    ratio = f"{a / b:.2f}" if b else "n/a (round b had no clean step)"
    print(f"  ratio (a)/(b):           {ratio}")
    for label, steps in (("a", with_server), ("b", without)):
        if steps and not steps[-1].lost:
            print(f"  round ({label}) ended with no failure: its capacity is at least "
                  f"{steps[-1].concurrency} (steps or time ran out first)")
    rtp = [s.rtp for s in with_server + without]
    heard = sum(1 for r in rtp if r == "heard")
    print(f"  RTP check: tone heard back in {heard} of {len([r for r in rtp if r != '-'])} "
          "sample calls")


if __name__ == "__main__":
    main()
