"""The ``selftest`` section of the center's config (parsed here, kept out of config.py).

A bad value raises :class:`~dispatcher.yamlnodes.ConfigError` naming the file, the line and
the key, like every other section.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from yaml.nodes import SequenceNode

from dialplans.contract import SELFTEST_DESK_PENALTY as DESK_PENALTY
from dialplans.contract import SELFTEST_ENDPOINT as PROBE_ENDPOINT
from dispatcher.yamlnodes import Section

__all__ = ["DESK_PENALTY", "PROBE_ENDPOINT", "SELFTEST_KEYS", "SelfTest", "parse_selftest"]

SELFTEST_KEYS = {"enabled", "every_minutes", "digits", "desk", "answer_seconds",
                 "ring_seconds", "timeout_seconds", "alarm"}
DTMF = frozenset("0123456789*#")
# PROBE_ENDPOINT (the self-test's caller) and DESK_PENALTY (its desk's queue penalty) are the
# dialplan's too: dialplans.contract.


@dataclass(frozen=True)
class SelfTest:
    """How often the center calls itself, what the call checks, and whom an alarm tells.

    ``desk`` is an operator extension reserved for the test (its phone is the one the
    self-test registers), or None: then the test stops after the IVR. ``command`` is an
    argv list run on each alarm change; ``webhook`` an http(s) URL POSTed a JSON body.
    """

    enabled: bool = True
    every_minutes: float = 5.0
    digits: str = "0"
    desk: str | None = None
    answer_seconds: float = 10.0
    ring_seconds: float = 30.0
    timeout_seconds: float = 90.0
    command: tuple[str, ...] = ()
    command_timeout_seconds: float = 30.0
    webhook: str | None = None
    webhook_timeout_seconds: float = 10.0

    @property
    def interval(self) -> float:
        """Seconds between the starts of two tests."""
        return self.every_minutes * 60.0


def parse_selftest(sec: Section, operators: set[str]) -> SelfTest:
    """The ``selftest`` section; ``operators`` are the configured operator extensions."""
    d = SelfTest()
    digits = sec.text("digits", d.digits, max_len=20)
    if digits and any(c not in DTMF for c in digits):
        raise sec.get("digits").error(f"must be DTMF keys (0-9, * and #), got {digits!r}")
    desk_v = sec.get("desk")
    desk = None
    if not desk_v.missing:
        desk = sec.text("desk", max_len=8)
        if desk not in operators:
            raise desk_v.error(
                f"must be one of the operators' extensions (the queue's test desk), got {desk!r}")
    answer = sec.number("answer_seconds", d.answer_seconds, lo=1, hi=120)
    ring = sec.number("ring_seconds", d.ring_seconds, lo=1, hi=600)
    every = sec.number("every_minutes", d.every_minutes, lo=0.1, hi=1440)
    timeout = sec.number("timeout_seconds", d.timeout_seconds, lo=5, hi=3600)
    if timeout > every * 60:
        raise sec.get("timeout_seconds").error(
            f"must not exceed the interval (every_minutes × 60 = {every * 60:g} s): "
            "a test still running when the next is due would be killed")
    alarm = sec.section("alarm", {"command", "command_timeout_seconds", "webhook",
                                  "webhook_timeout_seconds"})
    command: tuple[str, ...] = ()
    command_v = alarm.get("command")
    if not command_v.missing:
        # An argv list, never a shell line: the alarm's text goes in the environment and
        # nothing in it is ever parsed by a shell.
        if not isinstance(command_v.node, SequenceNode):
            raise command_v.error("must be a list: the program and its arguments "
                                  "(run without a shell)")
        parts = []
        for item in command_v.items():
            raw = item.scalar()
            if isinstance(raw, bool) or not isinstance(raw, str | int | float):
                raise item.error("must be text")
            text = str(raw)
            if not text or any(ord(c) < 32 for c in text):
                raise item.error("must be non-empty text without control characters")
            parts.append(text)
        if not parts:
            raise command_v.error("must name a program")
        if not parts[0].startswith("/"):
            raise command_v.error("the program must be an absolute path "
                                  f"(no PATH lookup), got {parts[0]!r}")
        command = tuple(parts)
    webhook = None
    if not alarm.get("webhook").missing:
        webhook = alarm.text("webhook", max_len=2000)
        split = urlsplit(webhook)
        if split.scheme not in ("http", "https") or not split.hostname:
            raise alarm.get("webhook").error(f"must be an http:// or https:// URL, got {webhook!r}")
    return SelfTest(
        enabled=sec.boolean("enabled", d.enabled),
        every_minutes=every,
        digits=digits,
        desk=desk,
        answer_seconds=answer,
        ring_seconds=ring,
        timeout_seconds=timeout,
        command=command,
        command_timeout_seconds=alarm.number("command_timeout_seconds",
                                             d.command_timeout_seconds, lo=1, hi=600),
        webhook=webhook,
        webhook_timeout_seconds=alarm.number("webhook_timeout_seconds",
                                             d.webhook_timeout_seconds, lo=1, hi=120),
    )
