"""Builds the siaga server: one object makes every part and hands each what it needs.

:func:`prepare` turns the center's config into a run directory (secrets, generated Asterisk
configuration); :func:`build_server` assembles the service tree that ``siaga up`` runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from twisted.application.service import MultiService

from dialplans.render import AsteriskPaths, render_all, write_config
from dispatcher.config import Center
from dispatcher.credentials import Credentials, ensure_credentials
from pbx.asterisk import AsteriskService
from pbx.provision import AsteriskInstall


@dataclass(frozen=True)
class Prepared:
    """A center ready for Asterisk: its paths, secrets and the generated asterisk.conf."""

    center: Center
    install: AsteriskInstall
    paths: AsteriskPaths
    creds: Credentials

    @property
    def asterisk_conf(self) -> Path:
        """The generated asterisk.conf that Asterisk is started with."""
        return self.paths.etc / "asterisk.conf"

    @property
    def asterisk_log(self) -> Path:
        """Asterisk's own log of notices, warnings and errors."""
        return self.paths.log / "messages.log"


def prepare(center: Center, install: AsteriskInstall) -> Prepared:
    """Create the state directory, secrets and generated Asterisk configuration."""
    center.state_dir.mkdir(parents=True, exist_ok=True)
    paths = AsteriskPaths.for_center(center, install.moddir, install.datadir)
    paths.make()
    creds = ensure_credentials(center)
    write_config(render_all(center, creds, paths), paths.etc)
    return Prepared(center, install, paths, creds)


class SiagaServer(MultiService):
    """The server's service tree; its parts are attributes for whoever needs to reach them."""

    def __init__(self, prepared: Prepared, asterisk: AsteriskService) -> None:
        super().__init__()
        self.prepared = prepared
        self.asterisk = asterisk
        asterisk.setServiceParent(self)


def build_server(reactor, prepared: Prepared,  # noqa: ANN001 (any reactor)
                 adopt_pid: int | None = None) -> SiagaServer:
    """Assemble the server for a prepared center. ``reactor`` is the only global it gets.

    ``adopt_pid`` is an Asterisk already running on this state directory, to keep.
    """
    asterisk = AsteriskService(
        reactor, reactor, prepared.install, prepared.asterisk_conf,
        prepared.center.state_dir, prepared.paths.log / "asterisk.out", adopt_pid=adopt_pid,
    )
    return SiagaServer(prepared, asterisk)
