"""Run the API alone (with the AMI client when asked): ``python -m dispatcher.api.standalone``.

The full server (``siaga up``) also starts Asterisk; this runs only the HTTP API, the call log
writer and, with ``--ami``, the AMI client to an Asterisk already running for the center. The
end-to-end tests kill it with SIGKILL to prove an acknowledged alert survives, and the
benchmark loads it. It prints ``LISTENING <port>`` once the port is bound.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any


def build(reactor: Any, args: argparse.Namespace) -> Any:
    """Build the service tree: writer, (AMI), reads, alert service, the API's listener."""
    from twisted.application.service import MultiService
    from twisted.internet.endpoints import TCP4ClientEndpoint

    from dispatcher.alerts.callback import DialerSettings
    from dispatcher.alerts.service import AlertService
    from dispatcher.alerts.settings import AlertSettings
    from dispatcher.api.service import make_http_service
    from dispatcher.calllog import db
    from dispatcher.calllog.writer import CallLogWriter
    from dispatcher.config.loader import load_center
    from dispatcher.pools import ReadPool

    center = load_center(args.config, state_dir=args.state_dir)
    url = args.db or center.database_url
    engine = db.make_engine(url)
    db.upgrade(engine)
    sessions = db.make_sessionmaker(engine)
    top = MultiService()
    writer = CallLogWriter(reactor, sessions)
    writer.setServiceParent(top)
    from dispatcher.credentials import ensure_credentials

    creds = ensure_credentials(center)
    ami = None
    if args.ami:
        from pbx.ami.connection import Credentials
        from pbx.ami.service import AMIService

        ami = AMIService(reactor, TCP4ClientEndpoint(reactor, center.ami.host, center.ami.port),
                         Credentials(creds.ami_username, creds.ami_secret))
        ami.setServiceParent(top)
    settings = AlertSettings(
        rate_burst=args.rate_burst, rate_per_second=args.rate_per_second,
        failure_burst=args.failure_burst, failure_per_second=args.failure_per_second,
        dialer=DialerSettings(citizen_dial=args.citizen_dial,
                              citizen_attempts=args.citizen_attempts,
                              retry_interval=args.retry_interval,
                              citizen_ring_seconds=args.citizen_ring_seconds),
        commit_batch=args.commit_batch,
        master_key=creds.master_key,
    )
    reads = ReadPool(reactor, sessions)
    reads.setServiceParent(top)
    alerts = AlertService.for_center(reactor, center, writer.submit, reads.run, ami, settings)
    alerts.setServiceParent(top)
    http = make_http_service(reactor, alerts, "127.0.0.1", args.port)
    intakes = (center.http_intake_processes if args.intake_processes is None
               else args.intake_processes)
    if intakes:
        # The API is served by intake processes on one socket; this process keeps the
        # writer, AMI and the callbacks, and serves what they forward.
        from dispatcher.api.intake_process import IntakePool

        pool = IntakePool(reactor, alerts, http.site, "127.0.0.1", args.port, intakes, url)
        pool.setServiceParent(top)
        return top, pool
    http.setServiceParent(top)
    return top, http


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    from dispatcher.alerts.settings import AlertSettings
    from dispatcher.heap import freeze_startup_heap

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--state-dir")
    parser.add_argument("--db", help="database URL (default: the center's)")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--ami", action="store_true", help="connect to the center's Asterisk")
    parser.add_argument("--citizen-dial", default="PJSIP/{number}@trunk")
    parser.add_argument("--citizen-attempts", type=int, default=3)
    parser.add_argument("--citizen-ring-seconds", type=int, default=30)
    parser.add_argument("--retry-interval", type=float, default=60.0)
    parser.add_argument("--rate-burst", type=float, default=10.0)
    parser.add_argument("--rate-per-second", type=float, default=0.2)
    parser.add_argument("--failure-burst", type=float, default=20.0,
                        help="failed attempts an address may make before 429")
    parser.add_argument("--failure-per-second", type=float, default=0.5)
    parser.add_argument("--commit-batch", type=int, default=AlertSettings.commit_batch,
                        help="alerts per transaction at most (1: one transaction each)")
    parser.add_argument("--intake-processes", type=int, default=None,
                        help="processes taking alerts on the API's socket (0: this process "
                        "alone; default: the config's http.intake_processes)")
    args = parser.parse_args(argv)
    if args.intake_processes is not None and not 0 <= args.intake_processes <= 32:
        parser.error("--intake-processes must be from 0 to 32")
    if args.commit_batch < 1:
        parser.error("--commit-batch must be at least 1")

    from twisted.internet import reactor  # the entry point: the only place the reactor is global
    from twisted.logger import globalLogBeginner, textFileLogObserver

    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stderr)])
    top, http = build(reactor, args)
    top.startService()
    print(f"LISTENING {http.port}", flush=True)
    reactor.callWhenRunning(freeze_startup_heap)
    reactor.addSystemEventTrigger("before", "shutdown", top.stopService)
    reactor.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
