"""Builds the self-test from the center's config and secrets (called by dispatcher/app.py)."""

from __future__ import annotations

import os
from typing import Any

from dispatcher.config.model import Center
from dispatcher.credentials import Credentials
from dispatcher.selftest.alarm import AlarmNotifier
from dispatcher.selftest.runner import (
    CALLER_PASSWORD_ENV,
    DESK_PASSWORD_ENV,
    ProbeRunner,
    probe_argv,
)
from dispatcher.selftest.service import SelfTestService
from dispatcher.selftest.storage import save_run

__all__ = ["build_selftest", "probe_server"]

# What the child keeps of the server's environment: enough to find Python and the code.
_INHERITED = ("PATH", "PYTHONPATH", "VIRTUAL_ENV", "LANG", "LC_ALL", "TMPDIR")


def probe_server(center: Center) -> str:
    """Where the probe sends its SIP: the center's SIP address (loopback when it binds all)."""
    host = center.sip.host
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    return f"{host}:{center.sip.port}"


def build_selftest(reactor: Any, center: Center, creds: Credentials, writer: Any,
                   environ: dict[str, str] | None = None) -> SelfTestService:
    """The self-test service: the probe child, its results in the call log, the alarm's
    command and webhook. ``reactor`` provides process, time and TCP interfaces."""
    settings = center.selftest
    source = os.environ if environ is None else environ
    env = {k: source[k] for k in _INHERITED if k in source}
    env[CALLER_PASSWORD_ENV] = creds.selftest_password
    if settings.desk:
        env[DESK_PASSWORD_ENV] = creds.password(settings.desk)
    # The latest test call's recordings stay here (greeting, both sides of the desk's call):
    # what a technician listens to first when the alarm is raised.
    record_dir = center.state_dir / "selftest"
    argv = probe_argv(settings, probe_server(center), center.hotline[0], record_dir)
    runner = ProbeRunner(reactor, argv, env, settings.timeout_seconds, wall=reactor.seconds)
    return SelfTestService(reactor, settings, runner,
                           record=lambda report: writer.submit(save_run, report),
                           notifier=AlarmNotifier(reactor, settings))
