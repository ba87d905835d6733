"""``siaga up``: run the command center in the foreground until SIGINT/SIGTERM.

This is the process's entry point and the only module that takes the global reactor.
"""

from __future__ import annotations

import sys

from twisted.internet import defer
from twisted.logger import globalLogBeginner, textFileLogObserver

from dispatcher.app import build_server, prepare
from dispatcher.config import Center
from pbx.asterisk import stale_pid
from pbx.provision import ProvisionError, locate, provision


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
    # An Asterisk left running by a server that was killed is adopted, not restarted: the
    # calls it carries go on.
    adopt = stale_pid(center.run_dir / "run")
    prepared = prepare(center, install)
    server = build_server(reactor, prepared, adopt_pid=adopt)

    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stdout)])
    reactor.addSystemEventTrigger("before", "shutdown", server.stopService)

    @defer.inlineCallbacks
    def started():  # noqa: ANN202
        server.startService()
        ready = getattr(server, "when_ready", None)
        if ready is not None:
            yield ready()
        sip = f"{center.sip_transport}://{center.sip.host}:{center.sip.port}"
        web = "http"
        if center.tls is not None:
            sip += f", tls://{center.sip.host}:{center.tls.sip_port}"
            web = "https"
        secrets_file = center.state_dir / "secrets.yaml"
        print(f"""
Siaga — {center.name}
  SIP         {sip}   hotline {', '.join(center.hotline)}
  AMI         {center.ami.host}:{center.ami.port} (loopback only; secret in {secrets_file})
  HTTP        {web}://{center.http.host}:{center.http.port}/
  logs        {prepared.paths.log}
  recordings  {prepared.paths.recordings}
  database    {center.database_url}
  accounts    siaga accounts --config {center.source}
Stop with Ctrl-C.""", flush=True)

    def failed(failure):  # noqa: ANN001, ANN202
        print(f"siaga: the center did not come up: {failure.getErrorMessage()}",
              file=sys.stderr, flush=True)
        failure.printTraceback(file=sys.stderr)
        reactor.stop()

    reactor.callWhenRunning(lambda: started().addErrback(failed))
    reactor.run()
    return 0
