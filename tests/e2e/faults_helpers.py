"""What the fault tests share: SIPp citizens calling the hotline, the call log read with
plain SQL, Asterisk's CEL file read with the csv module, and the server's own metrics.

The reference for "no journey lost" is Asterisk's CEL file: every call Asterisk carried ends
there with a LINKEDID_END row, written by Asterisk whatever the server or its database did.
"""

from __future__ import annotations

import csv
import re
import signal
import subprocess
import urllib.request
from pathlib import Path

from sqlalchemy import create_engine, text

from benchmarks.capacity import CITIZEN, CITIZENS, PCAPS, SippRunner, free_udp_port
from tests.harness import SiagaProcess, wait_for

# The CEL row's columns (dialplans/templates/cel_custom.conf.j2): event type first, the
# linked id in the eleventh.
CEL_EVENT, CEL_EXTEN, CEL_LINKEDID = 0, 4, 10


def citizen_scenario(hold_ms: int, to_queue: bool) -> str:
    """A citizen calling the hotline: in the IVR's menu for ``hold_ms`` then hangs up, or
    (``to_queue``) presses 0 for an operator after it and waits there ``hold_ms`` more."""
    scenario = CITIZEN.format(ivr_ms=hold_ms, pcaps=PCAPS,
                              speech=f'  <pause milliseconds="{hold_ms}"/>' if to_queue else "")
    if not to_queue:  # no key: the caller leaves from the menu
        scenario = re.sub(r'\s*<nop><action><exec play_pcap_audio="[^"]*dtmf[^"]*"/>'
                          r'</action></nop>\s*<pause milliseconds="500"/>', "\n", scenario)
    return scenario


class Citizens:
    """SIPp playing citizens who call the hotline (anonymous, from 127.0.0.2)."""

    def __init__(self, server: SiagaProcess) -> None:
        from pbx.provision import locate

        install = locate()
        if install is None or install.sipp is None:
            raise RuntimeError("SIPp (sip-tester) is not installed: run `siaga provision`")
        self.runner = SippRunner(install.sipp, install.rootfs)
        self.target = f"{server.center.sip.host}:{server.center.sip.port}"
        self.hotline = server.center.hotline[0]
        self.procs: list[subprocess.Popen[bytes]] = []
        self.dirs: list[Path] = []

    def call(self, calls: int, rate: float, hold_ms: int, to_queue: bool = False,
             timeout_s: int = 120) -> subprocess.Popen[bytes]:
        """Start ``calls`` calls at ``rate`` per second, each held ``hold_ms`` (see
        :func:`citizen_scenario`). SIPp exits 0 once every call succeeded."""
        work = self.runner.workdir(f"citizens-{len(self.procs)}")
        proc = self.runner.start(work, citizen_scenario(hold_ms, to_queue), [
            "-s", self.hotline, "-i", CITIZENS, "-p", str(free_udp_port(CITIZENS)),
            "-mi", CITIZENS, "-mp", str(free_udp_port(CITIZENS)), "-m", str(calls),
            "-l", str(calls), "-r", str(rate), "-recv_timeout", "20000",
            "-timeout", f"{timeout_s}s", "-timeout_error", "-trace_err", self.target])
        self.procs.append(proc)
        self.dirs.append(work)
        return proc

    def wait(self, proc: subprocess.Popen[bytes], timeout: float = 120) -> int:
        """Wait for a SIPp run to end; its exit code (0: every call succeeded)."""
        wait_for(lambda: proc.poll() is not None, timeout, "SIPp's calls to end")
        return int(proc.returncode)

    def output(self, proc: subprocess.Popen[bytes]) -> str:
        """What a SIPp run printed and its errors, for a failure message."""
        work = self.dirs[self.procs.index(proc)]
        parts = [p.read_text(errors="replace")[-1500:] for p in sorted(work.glob("*"))
                 if p.suffix in (".out", ".log") or p.name.endswith("errors.log")]
        return "\n".join(parts)

    def close(self) -> None:
        """Stop every SIPp still running and remove their files."""
        import os

        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(5)
        self.runner.close()


def cel_path(server: SiagaProcess) -> Path:
    """Asterisk's CEL file of the server's center."""
    from dialplans.render import AsteriskPaths
    from pbx.provision import locate

    install = locate()
    assert install is not None
    paths = AsteriskPaths.for_center(server.center, install.moddir, install.datadir)
    return paths.log / "cel-custom" / "Master.csv"


def cel_ended(server: SiagaProcess, exten: str | None = None) -> set[str]:
    """Linked ids of the calls Asterisk's CEL says ended (LINKEDID_END); with ``exten``,
    only calls whose first channel dialled it (citizens' hotline calls)."""
    path = cel_path(server)
    if not path.exists():
        return set()
    with path.open(newline="", errors="replace") as f:
        rows = [row for row in csv.reader(f) if len(row) > CEL_LINKEDID]
    ended = {row[CEL_LINKEDID] for row in rows if row[CEL_EVENT] == "LINKEDID_END"}
    if exten is None:
        return ended
    dialled = {row[CEL_LINKEDID] for row in rows
               if row[CEL_EVENT] == "CHAN_START" and row[CEL_EXTEN] == exten}
    return ended & dialled


def logged_calls(url: str) -> dict[str, tuple[str, str | None, str]]:
    """linkedid → (outcome, ended_at, source) of every call in the call log (plain SQL)."""
    engine = create_engine(url)
    try:
        with engine.connect() as con:
            rows = con.execute(text("SELECT linkedid, outcome, ended_at, source FROM calls"))
            return {r[0]: (r[1], None if r[2] is None else str(r[2]), r[3]) for r in rows}
    finally:
        engine.dispose()


def metric(server: SiagaProcess, name: str) -> float:
    """One figure of the server's ``/metrics`` (loopback may scrape); a counter by its name
    without ``_total``."""
    http = server.center.http
    with urllib.request.urlopen(f"http://{http.host}:{http.port}/metrics", timeout=10) as resp:
        body = resp.read().decode()
    found = re.search(rf"^{re.escape(name)}(?:_total)? ([0-9.eE+-]+)$", body, re.M)
    if found is None:
        raise AssertionError(f"no {name} in /metrics:\n"
                             + "\n".join(line for line in body.splitlines()
                                         if line.startswith("siaga_")))
    return float(found.group(1))


def cel_started(server: SiagaProcess, exten: str) -> set[str]:
    """Linked ids of the calls whose first channel dialled ``exten`` (CEL CHAN_START): every
    call Asterisk took, ended or not (a killed Asterisk writes no end)."""
    path = cel_path(server)
    if not path.exists():
        return set()
    with path.open(newline="", errors="replace") as f:
        return {row[CEL_LINKEDID] for row in csv.reader(f)
                if len(row) > CEL_LINKEDID and row[CEL_EVENT] == "CHAN_START"
                and row[CEL_EXTEN] == exten}
