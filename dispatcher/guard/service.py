"""The guard's wiring: AMI security events in, a res_pjsip ACL file and a reload out."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from dialplans.render import write_config
from dispatcher.guard.acl import render_acl
from dispatcher.guard.events import FAILURE_EVENTS, auth_failure
from dispatcher.guard.policy import GuardPolicy

# Beside the generated pjsip.conf, which includes it (dialplans/templates/pjsip.conf.j2).
GUARD_FILE = "pjsip_guard.conf"
# A failed reload is tried again after this long (Asterisk busy reloading something else).
RETRY_SECONDS = 2.0


class SipGuardService(Service):
    """Blocks sources that keep failing SIP authentication, and lifts the blocks in time.

    ``reload`` makes Asterisk read the ACL file again (res_pjsip's reload, through the
    console socket). Changes that arrive while a reload runs are written and reloaded once
    it ends: a scan from many addresses costs one reload at a time, never a queue of them.
    ``events`` (an ``AMIService``, or any ``subscribe(name, cb)``) is followed while the
    service runs.
    """

    log = Logger()

    def __init__(self, clock: IReactorTime, policy: GuardPolicy, acl_path: Path,
                 reload: Callable[[], defer.Deferred[object]], events: Any = None) -> None:
        self.clock = clock
        self.events = events
        self._unsubscribe: list[Callable[[], None]] = []
        self.policy = policy
        self.acl_path = acl_path
        self.reload = reload
        self._reloading = False
        self._dirty = False
        self._expiry: IDelayedCall | None = None
        self._retry: IDelayedCall | None = None

    def reset(self) -> None:
        """Write an ACL with no block (before Asterisk starts: no earlier run's block stays)."""
        self._write()

    def subscribe(self, ami) -> list[Callable[[], None]]:  # noqa: ANN001 (any subscribe(name, cb))
        """Receive the security events that count as failures; returns the unsubscribers."""
        return [ami.subscribe(name, lambda event: self.event_received(event.fields))
                for name in sorted(FAILURE_EVENTS)]

    def startService(self) -> None:  # noqa: N802
        """Follow ``events``' security events."""
        super().startService()
        if self.events is not None:
            self._unsubscribe = self.subscribe(self.events)

    def event_received(self, fields: dict[str, str]) -> None:
        """One AMI security event; a failure from a source may block it."""
        address = auth_failure(fields)
        if address is None:
            return
        block = self.policy.failure(address)
        if block is None:
            return
        self.log.warn(
            "SIP guard: blocking {address} for {seconds} s after {failures} failed SIP "
            "authentications within {window} s",
            address=address, seconds=self.policy.settings.block_seconds,
            failures=block.failures, window=self.policy.settings.window_seconds)
        self._changed()

    def stopService(self) -> None:  # noqa: N802
        """Stop following events; cancel the timers (the ACL file stays as it is)."""
        super().stopService()
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe = []
        for call in (self._expiry, self._retry):
            if call is not None and call.active():
                call.cancel()
        self._expiry = self._retry = None

    # -- applying ------------------------------------------------------------------------
    def _changed(self) -> None:
        self._schedule_expiry()
        if self._reloading:
            self._dirty = True
            return
        self._apply()

    def _apply(self) -> None:
        self._reloading = True
        self._dirty = False
        try:
            self._write()
        except OSError:
            self.log.failure("SIP guard: cannot write {path}", path=self.acl_path)
            self._reloading = False
            return
        d = defer.maybeDeferred(self.reload)

        def failed(failure) -> None:  # noqa: ANN001
            self.log.failure("SIP guard: Asterisk did not reload its SIP ACL", failure)
            self._dirty = True
            if self._retry is None or not self._retry.active():
                self._retry = self.clock.callLater(RETRY_SECONDS, self._retry_now)

        def done(_: object) -> None:
            self._reloading = False
            if self._dirty and (self._retry is None or not self._retry.active()):
                self._apply()

        d.addErrback(failed).addBoth(done)

    def _retry_now(self) -> None:
        self._retry = None
        if not self._reloading:
            self._apply()

    def _write(self) -> None:
        # As every generated Asterisk file is written (atomically, same mode and owner): a
        # reloading Asterisk never reads half a file, and can read this one.
        write_config({self.acl_path.name: render_acl(self.policy.blocked())},
                     self.acl_path.parent)

    def _schedule_expiry(self) -> None:
        if self._expiry is not None and self._expiry.active():
            self._expiry.cancel()
        self._expiry = None
        when = self.policy.next_expiry()
        if when is not None:
            self._expiry = self.clock.callLater(max(0.0, when - self.clock.seconds()),
                                                self._expire)

    def _expire(self) -> None:
        self._expiry = None
        ended = self.policy.expire()
        for block in ended:
            self.log.info("SIP guard: block of {address} ended", address=block.address)
        if ended:
            self._changed()
        else:
            self._schedule_expiry()
