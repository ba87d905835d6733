"""Session-wide fixtures: one real Asterisk on the example city's generated configuration."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pbx.provision import AsteriskInstall, provision
from tests.harness import RunningAsterisk, start_asterisk
from tests.phones import phones, sip_stack  # noqa: F401 (fixtures for every test)


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
