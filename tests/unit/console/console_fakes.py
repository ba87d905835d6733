"""A live model and AMI stand-ins for the console's unit tests."""

from __future__ import annotations

from typing import Any

from twisted.internet import defer

from dialplans.contract import QUEUE_NAME
from pbx.ami.model import LiveModel


def model_with_call(operator: str = "201", citizen_number: str = "081234567",
                    bridged: bool = True) -> LiveModel:
    """A model where a citizen's call is on ``operator``'s phone (talking when ``bridged``)."""
    model = LiveModel(lambda: 1_800_000_000.0)
    citizen, desk = "1800000000.10", "1800000000.11"
    model.handle({"Event": "Newchannel", "Uniqueid": citizen, "Linkedid": citizen,
                  "Channel": "PJSIP/anonymous-0000000a", "CallerIDNum": citizen_number})
    model.handle({"Event": "Newchannel", "Uniqueid": desk, "Linkedid": citizen,
                  "Channel": f"PJSIP/{operator}-0000000b", "CallerIDNum": operator,
                  "ConnectedLineNum": citizen_number})
    if bridged:
        for uid, name in ((citizen, "PJSIP/anonymous-0000000a"),
                          (desk, f"PJSIP/{operator}-0000000b")):
            model.handle({"Event": "BridgeEnter", "BridgeUniqueid": "b1", "Uniqueid": uid,
                          "Linkedid": citizen, "Channel": name})
    return model


def add_member(model: LiveModel, extension: str, status: str = "2", paused: str = "0",
               reason: str = "") -> None:
    """A queue member event for ``extension``'s desk (status: Asterisk's device state)."""
    model.handle({"Event": "QueueMemberStatus", "Queue": QUEUE_NAME,
                  "Interface": f"PJSIP/{extension}", "Status": status, "Paused": paused,
                  "PausedReason": reason, "InCall": "0"})


class FakeAMI:
    """Records the originates asked of it; fails them when told to."""

    def __init__(self, error: Exception | None = None) -> None:
        self.originates: list[dict[str, Any]] = []
        self.error = error

    def originate(self, channel: str, **kwargs: Any) -> defer.Deferred[Any]:  # noqa: ANN401
        self.originates.append({"channel": channel, **kwargs})
        if self.error is not None:
            return defer.fail(self.error)
        return defer.succeed({"Response": "Success"})


class FakeWriter:
    """Runs what the call log's writer would, on a fake session collecting rows."""

    def __init__(self) -> None:
        self.rows: list[Any] = []

    def add(self, row: Any) -> None:  # noqa: ANN401
        self.rows.append(row)

    def __call__(self, fn: Any, *args: Any) -> defer.Deferred[Any]:  # noqa: ANN401
        return defer.succeed(fn(self, *args))
