"""Session-wide fixtures: one real Asterisk on the example city's generated configuration."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from pbx.provision import AsteriskInstall, provision
from tests import harness
from tests.harness import (
    IDLE_HOOKS,
    RunningAsterisk,
    SiagaProcess,
    running_center,
    start_asterisk,
    wait_for,
)
from tests.phones import phones, sip_stack  # noqa: F401 (fixtures for every test)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failed test's report ends with the tail of each running Asterisk's log: a flake
    seen once in CI is explained by what Asterisk said (a dial refused, a contact
    unreachable), not guessed at."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.failed and call.when in ("call", "setup"):
        for running in list(harness.RUNNING):
            report.sections.append(
                (f"Asterisk {running.sip_address}: end of its log", running.log_tail()))


@pytest.fixture(scope="session")
def asterisk_install() -> AsteriskInstall:
    """The Asterisk to test with (provisioned if needed: idempotent and quick when done)."""
    return provision(say=lambda _line: None)


@pytest.fixture(scope="session")
def asterisk(tmp_path_factory: pytest.TempPathFactory,
             asterisk_install: AsteriskInstall) -> Iterator[RunningAsterisk]:
    """A real Asterisk running the example city on free loopback ports, for the session."""
    running = start_asterisk(tmp_path_factory.mktemp("center"), asterisk_install)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def center_server(tmp_path_factory: pytest.TempPathFactory,
                  asterisk_install: AsteriskInstall) -> Iterator[SiagaProcess]:
    """The whole center as users run it (`siaga up`) on free ports, stopped after the test
    whatever happened (an Asterisk a test left orphaned included)."""
    with running_center(tmp_path_factory.mktemp("center-server")) as proc:
        yield proc


@pytest.fixture(scope="session")
def phone_directory(asterisk: RunningAsterisk):  # noqa: ANN201 (tests.phones.Directory)
    """Where phones register and as whom, for the running example city."""
    from tests.phones import Credentials, Directory

    center = asterisk.center

    def creds(ext: str) -> Credentials:
        return Credentials(ext, asterisk.password(ext))

    return Directory(
        server=asterisk.sip_address,
        hotline=center.hotline[0],
        operators=[creds(op.extension) for op in center.operators],
        agencies={a.key: [creds(e) for e in a.extensions] for a in center.agencies},
        extensions={ext: creds(ext) for ext in center.extensions()},
    )


@pytest.fixture(autouse=True)
def _pump_phones_while_waiting(request: pytest.FixtureRequest) -> Iterator[None]:
    """In tests with phones, every harness wait also pumps the SIP stack's events."""
    if "sip_stack" not in request.fixturenames:
        yield
        return
    stack = request.getfixturevalue("sip_stack")
    owner = threading.current_thread()

    def hook() -> None:
        if threading.current_thread() is owner:  # pjsua2 runs on its owner thread only
            stack.pump(50)
        else:
            time.sleep(0.05)

    IDLE_HOOKS.append(hook)
    try:
        yield
    finally:
        IDLE_HOOKS.remove(hook)


@pytest.fixture(autouse=True)
def _clean_asterisk_after_test(request: pytest.FixtureRequest) -> Iterator[None]:
    """Tests share one Asterisk: whatever calls a test leaves behind are hung up after it,
    so the next test's operator is not rung by the last test's leftovers."""
    yield
    if "asterisk" not in request.fixturenames:
        return
    running: RunningAsterisk = request.getfixturevalue("asterisk")
    # AMI connections the test opened: each would otherwise be fed every event of every
    # later test until the session ends.
    while running.watches:
        watch = running.watches.pop()
        try:
            watch.close()
        except Exception:  # noqa: BLE001 — Asterisk may have closed it already
            pass
    if running.proc is None or running.proc.poll() is not None:
        return

    def channels() -> int | None:
        watch = running.ami()
        try:
            return watch.channels()
        except RuntimeError:
            return None
        finally:
            watch.close()
            running.watches.remove(watch)

    if channels() == 0:
        return
    watch = running.ami()
    try:
        watch.command("channel request hangup all")
    finally:
        watch.close()
        running.watches.remove(watch)
    wait_for(lambda: channels() == 0, 15, "the shared Asterisk to have no channels left")
