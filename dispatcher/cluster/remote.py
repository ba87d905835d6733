"""The call log of a node the brain does not supervise (its ``siaga up`` runs on another
machine): a restart is told by the boot time the node reports at each login.

A node this process supervises is judged by its supervisor's run count, as a single center
is (``CallLogService``'s ``asterisk``). A node elsewhere has no run count here, so at every
AMI login this asks ``CoreStatus`` for the node's start date and time: changed since the
last login, the node died while the connection was away, and the journeys that were up then
are closed as cut (their citizens owed a callback through ``on_cut``); the same start, the
connection alone was lost and the calls go on there.
"""

from __future__ import annotations

from typing import Any

from twisted.python.failure import Failure

from dispatcher.calllog.service import CallLogService

__all__ = ["RemoteNodeCallLog", "boot_of"]


def boot_of(status: Any) -> tuple[str, str]:  # noqa: ANN401 (a CoreStatus response)
    """When the node's Asterisk started, from a ``CoreStatus`` response."""
    return status.get("CoreStartupDate", ""), status.get("CoreStartupTime", "")


class RemoteNodeCallLog(CallLogService):
    """``CallLogService`` for a node supervised elsewhere (``asterisk`` is not given)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # noqa: ANN401
        kwargs["asterisk"] = None
        super().__init__(*args, **kwargs)
        self.booted_at: tuple[str, str] | None = None

    def _ami_connected(self, client: Any) -> None:  # noqa: ANN401
        if not self.running:
            return
        client.on_connection_lost(lambda _client: self.connection_lost())
        judged = client.corestatus()
        judged.addCallbacks(self._booted, self._boot_unknown)
        self.reconcile()

    def _booted(self, status: Any) -> None:  # noqa: ANN401
        booted = boot_of(status)
        seen, self.booted_at = self.booted_at, booted
        if seen is not None and booted != seen:
            self.log.warn("the node restarted while AMI was away (started {date} {time})",
                          date=booted[0], time=booted[1])
            records = self.close_cut()
            if self.on_cut is not None:
                self.on_cut(records)
        else:
            self.forget_cut()

    def _boot_unknown(self, failure: Failure) -> None:
        # Not knowing, the calls are left to CEL (as after a lost connection): closing
        # calls that still go on would owe callbacks to citizens being helped.
        self.log.warn("could not read the node's start time ({error}): calls up when AMI "
                      "was lost are left open", error=failure.getErrorMessage())
        self.forget_cut()
