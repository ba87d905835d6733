"""Asterisk's console socket protocol (pbx.console): what ``asterisk -rx`` sends and reads."""

from __future__ import annotations

from pathlib import Path

import pytest
from twisted.internet import defer, task
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from pbx.console import AsteriskConsole, ConsoleError, _OneCommand


def test_given_the_banner_in_pieces_when_complete_then_the_command_is_sent_once() -> None:
    """Nothing is sent before the banner's end of line; then one NUL-terminated command."""
    one = _OneCommand("module reload res_pjsip.so")
    transport = StringTransport()
    one.makeConnection(transport)
    one.dataReceived(b"host/12")
    assert transport.value() == b""
    one.dataReceived(b"34/22.10.1\n")
    one.dataReceived(b"Module 'res_pjsip.so' reloaded")
    assert transport.value() == b"cli quit after module reload res_pjsip.so\0"
    one.dataReceived(b" successfully.\n\0")
    results: list[str] = []
    one.done.addCallback(results.append)
    one.connectionLost(None)
    assert results == ["Module 'res_pjsip.so' reloaded successfully.\n"]


def test_given_a_console_that_closes_before_its_banner_when_run_then_console_error() -> None:
    """A refused or dying console fails the Deferred instead of leaving it pending."""
    one = _OneCommand("module reload res_pjsip.so")
    one.makeConnection(StringTransport())
    failures: list[Failure] = []
    one.done.addErrback(failures.append)
    one.connectionLost(None)
    assert failures and failures[0].check(ConsoleError)


def test_given_a_command_with_a_line_break_when_run_then_refused_before_connecting(
        tmp_path: Path) -> None:
    """A second command smuggled after a line break never reaches the console."""
    console = AsteriskConsole(None, task.Clock(), tmp_path)  # type: ignore[arg-type]
    failures: list[Failure] = []
    console.run("module reload res_pjsip.so\ncore stop now").addErrback(failures.append)
    assert failures and failures[0].check(ConsoleError)


@pytest.mark.parametrize("output", ["Unable to connect to remote asterisk\n",
                                    "No such module 'res_pjsip.so'\n"])
def test_given_output_without_success_when_reloading_then_console_error(
        tmp_path: Path, output: str) -> None:
    """Only Asterisk's own "reloaded successfully" counts as a reload."""
    console = AsteriskConsole(None, task.Clock(), tmp_path)  # type: ignore[arg-type]
    console.run = lambda _command: defer.succeed(output)  # type: ignore[method-assign]
    failures: list[Failure] = []
    console.reload_module("res_pjsip.so").addErrback(failures.append)
    assert failures and failures[0].check(ConsoleError)
