"""How fast a hotline call rings an operator: citizen's INVITE -> operator's phone ringing.

A private Asterisk runs the example city (the e2e harness's way: free loopback ports, a
temporary state directory). A pjsua2 citizen calls the hotline and presses 0 as soon as the
call is answered (the IVR answers at once; 0 skips the menu); the operator's pjsua2 phone
takes the time its INVITE arrives. Each call is hung up and Asterisk is let go quiet before
the next. Printed per run: INVITE -> answered (200 OK), answered -> 0 sent (media up),
'0' sent -> operator ringing, INVITE -> operator ringing. Times are the phones' own event
times (pjsua2 callbacks, polled every 10 ms). Asterisk acts on a key when it is released:
the key lasts 160 ms (pjsua2's default, a person's press is similar), so most of
"'0' sent -> ringing" is the key itself.

Four rounds: Asterisk alone (the fail-open path: no siaga server); the same Asterisk with an
AMI client subscribed to every event; the whole center (`siaga up`, its own Asterisk, the
server reading AMI); and that center after the server was SIGKILLed (Asterisk left alone).

    .venv/bin/python benchmarks/hotline_ring.py [--calls 20]
"""

from __future__ import annotations

import argparse
import signal
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dispatcher.credentials import ensure_credentials  # noqa: E402
from pbx.phone.events import CallState  # noqa: E402
from pbx.phone.phone import Phone  # noqa: E402
from pbx.phone.stack import SipStack  # noqa: E402
from pbx.provision import provision  # noqa: E402
from tests.harness import (  # noqa: E402
    RunningAsterisk,
    SiagaProcess,
    start_asterisk,
    write_test_config,
)


def one_call(asterisk: RunningAsterisk, citizen: Phone, operator: Phone) -> tuple[float, ...]:
    """One hotline call; returns (invite->answer, answer->dtmf, dtmf->ringing,
    invite->operator ringing), from the phones' own event times."""
    stack = citizen.stack
    mark_c, mark_o = len(citizen.events), len(operator.events)
    call = citizen.call(asterisk.center.hotline[0])
    call.wait_confirmed(10)
    call.send_dtmf("0")
    ringing = operator.wait_incoming(15)  # left ringing: the citizen hangs up first
    call.hangup()
    call.wait_disconnected(10)
    stack.wait_until(lambda: not operator.active_calls, 10, "operator idle")
    assert ringing.state == CallState.DISCONNECTED

    def first(events: list, kind: str, detail: str = "") -> float:
        return next(e.at for e in events if e.kind == kind and e.detail.startswith(detail))

    invite = first(citizen.events[mark_c:], "calling")
    answered = first(citizen.events[mark_c:], "state", "CONFIRMED")
    sent = first(citizen.events[mark_c:], "dtmf-sent")
    rang = first(operator.events[mark_o:], "incoming")
    return answered - invite, sent - answered, rang - sent, rang - invite


LAST_SEEN: list[str] = []  # what the last quiet() check saw, for a failure message


class ServerCenter:
    """A `siaga up` (tests.harness.SiagaProcess) seen the way run_round sees an Asterisk."""

    def __init__(self, proc: SiagaProcess) -> None:
        self.proc = proc
        self.center = proc.center
        self.sip_address = f"{proc.center.sip.host}:{proc.center.sip.port}"
        self._creds = ensure_credentials(proc.center)
        self.watches: list = []

    def password(self, ext: str) -> str:
        """The generated SIP password of an extension."""
        return self._creds.password(ext)

    def ami(self):  # noqa: ANN201 (tests.harness.AmiWatch)
        """A new AMI connection to the server's Asterisk."""
        watch = self.proc.ami()
        self.watches.append(watch)
        return watch


def quiet(asterisk: RunningAsterisk) -> bool:
    """True when Asterisk has no channel and the operator is free again (a new AMI
    connection each time: asterisk-ami's listener sometimes stops answering)."""
    try:
        watch = asterisk.ami()
    except (OSError, RuntimeError) as exc:
        LAST_SEEN[:] = [f"AMI login failed: {exc}"]
        return False
    try:
        idle = "0 active channels" in watch.command("core show channels count")
        queue = watch.command("queue show operators")
    except RuntimeError as exc:
        LAST_SEEN[:] = [f"AMI command failed: {exc}"]
        return False
    finally:
        watch.close()
        asterisk.watches.remove(watch)
    line = next((x for x in queue.splitlines() if "(PJSIP/201)" in x), "")
    LAST_SEEN[:] = [f"idle={idle} {line}"]
    return idle and "(Not in use)" in line


def run_round(asterisk: RunningAsterisk, stack: SipStack, calls: int, label: str) -> None:
    """``calls`` calls; print the figures."""
    password = asterisk.password(asterisk.center.operators[0].extension)
    operator = Phone(stack, asterisk.center.operators[0].extension,
                     server=asterisk.sip_address, password=password)
    operator.wait_registered(5)
    citizen = Phone(stack, "bench-citizen", server=asterisk.sip_address)
    results = []
    try:
        for _ in range(calls):
            # Pump the phones meanwhile: the operator answers Asterisk's OPTIONS (qualify).
            stack.wait_until(lambda: quiet(asterisk), 10, f"a quiet Asterisk ({LAST_SEEN})")
            results.append(one_call(asterisk, citizen, operator))
    finally:
        citizen.close()
        operator.close()
    columns = list(zip(*results, strict=True))
    names = ("INVITE -> answered", "answered -> '0' sent", "'0' sent -> operator ringing",
             "INVITE -> operator ringing")
    print(f"\n{label}: {calls} calls")
    for name, values in zip(names, columns, strict=True):
        ms = sorted(v * 1000 for v in values)
        print(f"  {name:28s} median {statistics.median(ms):7.1f} ms   "
              f"min {ms[0]:7.1f}   max {ms[-1]:7.1f}")


def main() -> None:
    """Start Asterisk, run both rounds, stop it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20)
    args = parser.parse_args()
    install = provision(say=lambda _line: None)
    with tempfile.TemporaryDirectory(prefix="siaga-bench-") as tmp:
        asterisk = start_asterisk(Path(tmp), install)
        stack = SipStack()
        try:
            run_round(asterisk, stack, args.calls, "Asterisk alone (no siaga server)")
            listener = asterisk.ami()  # records every event, as the server's client does
            run_round(asterisk, stack, args.calls,
                      f"with an AMI client reading every event ({len(listener.events)} so far)")
            print(f"  (the listener received {len(listener.events)} events)")
            asterisk.stop()
            server = SiagaProcess(write_test_config(Path(tmp) / "center.yaml"),
                                  Path(tmp) / "server-state")
            server.start()
            try:
                run_round(ServerCenter(server), stack, args.calls, "siaga up running")
                server.signal(signal.SIGKILL)
                server.wait_exit(10)
                run_round(ServerCenter(server), stack, args.calls,
                          "siaga up SIGKILLed (its Asterisk left alone)")
            finally:
                server.stop()
        finally:
            stack.close()
            asterisk.stop()


if __name__ == "__main__":
    main()
