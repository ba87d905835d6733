"""``siaga up``: run the command center in the foreground until SIGINT/SIGTERM.

This is the process's entry point and the only module that takes the global reactor.
"""

from __future__ import annotations

import os
import signal
import sys
import time

from twisted.internet import defer
from twisted.logger import globalLogBeginner, textFileLogObserver

from dispatcher.app import build_server, prepare
from dispatcher.config import Center
from pbx.asterisk import stale_pid
from pbx.provision import ProvisionError, locate, provision


def _stop_stale(pid: int, deadline_s: float = 15.0) -> None:
    """Stop an Asterisk left running on our run directory by an earlier, killed server."""
    print(f"stopping an Asterisk left running on this state directory (pid {pid})")
    os.kill(pid, signal.SIGTERM)
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)


def run(center: Center, rootfs: str | None = None) -> int:
    """Provision if needed, render, start Asterisk and the server; return the exit code."""
    from twisted.internet import reactor

    install = locate(rootfs)
    if install is None:
        try:
            install = provision(rootfs)
        except ProvisionError as exc:
            print(f"siaga: {exc}", file=sys.stderr)
            return 1
    pid = stale_pid(center.run_dir / "run")
    if pid is not None:
        _stop_stale(pid)
    prepared = prepare(center, install)
    server = build_server(reactor, prepared)

    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stdout)])
    reactor.addSystemEventTrigger("before", "shutdown", server.stopService)

    @defer.inlineCallbacks
    def started():  # noqa: ANN202
        server.startService()
        ready = getattr(server, "when_ready", None)
        if ready is not None:
            yield ready()
        sip = f"{center.sip_transport}://{center.sip.host}:{center.sip.port}"
        secrets_file = center.state_dir / "secrets.yaml"
        print(f"""
Siaga — {center.name}
  SIP         {sip}   hotline {', '.join(center.hotline)}
  AMI         {center.ami.host}:{center.ami.port} (loopback only; secret in {secrets_file})
  HTTP        http://{center.http.host}:{center.http.port}/
  logs        {prepared.paths.log}
  recordings  {prepared.paths.recordings}
  database    {center.database_url}
  accounts    siaga accounts --config {center.source}
Stop with Ctrl-C.""", flush=True)

    reactor.callWhenRunning(started)
    reactor.run()
    return 0
