"""``siaga up``: run the command center in the foreground until SIGINT/SIGTERM.

This is the process's entry point and the only module that takes the global reactor.
"""

from __future__ import annotations

import os
import sys

from twisted.internet import defer
from twisted.logger import globalLogBeginner, textFileLogObserver

from dispatcher.app import build_server, prepare
from dispatcher.banner import banner_text
from dispatcher.config.model import Center
from dispatcher.heap import freeze_startup_heap
from dispatcher.logs import json_lines_observer
from dispatcher.sdnotify import Notifier
from pbx.asterisk import stale_pid
from pbx.provision import ProvisionError, ready


def run(center: Center, rootfs: str | None = None, log_format: str = "text") -> int:
    """Provision if needed, render, start Asterisk and the server; return the exit code.

    ``log_format`` "json" writes one JSON object a line (:mod:`dispatcher.logs`) instead of
    Twisted's text lines; what is printed (the banner) becomes log lines too.
    """
    from twisted.internet import reactor

    # Whatever the server creates without an explicit mode is its own alone; files another
    # process must read get their modes set explicitly (pbx.privilege).
    os.umask(0o077)
    notifier = Notifier.from_environ(reactor, os.environ)
    # Children (Asterisk, probes) are not the service's main process: they must not notify.
    for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
        os.environ.pop(name, None)
    try:
        install = ready(rootfs)
    except ProvisionError as exc:
        print(f"siaga: {exc}", file=sys.stderr)
        return 1
    # An Asterisk left running by a server that was killed is adopted, not restarted: the
    # calls it carries go on.
    adopt = stale_pid(center.run_dir / "run")
    notifier.ping()
    prepared = prepare(center, install)
    notifier.ping()
    server = build_server(reactor, prepared, adopt_pid=adopt)

    observer = (json_lines_observer(sys.stdout) if log_format == "json"
                else textFileLogObserver(sys.stdout))
    globalLogBeginner.beginLoggingTo([observer])
    reactor.addSystemEventTrigger("before", "shutdown", notifier.stopping)
    reactor.addSystemEventTrigger("before", "shutdown", server.stopService)

    @defer.inlineCallbacks
    def started():  # noqa: ANN202
        notifier.start_watchdog()
        server.startService()
        yield server.when_ready()
        print(banner_text(center, prepared.paths.log, prepared.paths.recordings), flush=True)
        notifier.ready(f"{center.name}: up")
        freeze_startup_heap()

    def failed(failure):  # noqa: ANN001, ANN202
        print(f"siaga: the center did not come up: {failure.getErrorMessage()}",
              file=sys.stderr, flush=True)
        failure.printTraceback(file=sys.stderr)
        reactor.stop()

    reactor.callWhenRunning(lambda: started().addErrback(failed))
    reactor.run()
    return 0
