"""Builds the siaga server: one object makes every part and hands each what it needs.

:func:`prepare` turns the center's config into a run directory (secrets, generated Asterisk
configuration); :func:`build_server` assembles the service tree that ``siaga up`` runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from twisted.application.service import MultiService
from twisted.internet import defer
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.logger import Logger

from dialplans.render import AsteriskPaths, render_all, write_config
from dispatcher.config import Center
from dispatcher.credentials import Credentials, ensure_credentials
from pbx.ami.client import AMIService
from pbx.ami.client import Credentials as AMICredentials
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

    log = Logger()

    def __init__(self, prepared: Prepared, asterisk: AsteriskService, ami: AMIService) -> None:
        super().__init__()
        self.prepared = prepared
        self.asterisk = asterisk
        self.ami = ami
        asterisk.setServiceParent(self)
        ami.setServiceParent(self)

    @defer.inlineCallbacks
    def when_ready(self):  # noqa: ANN201 (Deferred[None])
        """Fires once AMI is logged in and Asterisk says it is fully booted.

        An adopted Asterisk was started on an earlier render: it reloads the new one.
        """
        yield self.ami.when_ready()
        yield self.ami.command("core waitfullybooted", timeout=120)
        if self.asterisk.adopted_pid is not None:
            self.log.info("reloading the adopted Asterisk's configuration")
            yield self.ami.command("core reload")


def build_server(reactor, prepared: Prepared,  # noqa: ANN001 (any reactor)
                 adopt_pid: int | None = None) -> SiagaServer:
    """Assemble the server for a prepared center. ``reactor`` is the only global it gets.

    ``adopt_pid`` is an Asterisk already running on this state directory, to keep.
    """
    asterisk = AsteriskService(
        reactor, reactor, prepared.install, prepared.asterisk_conf,
        prepared.center.state_dir, prepared.paths.log / "asterisk.out", adopt_pid=adopt_pid,
    )
    center = prepared.center
    ami = AMIService(
        reactor,
        TCP4ClientEndpoint(reactor, center.ami.host, center.ami.port, timeout=5),
        AMICredentials(prepared.creds.ami_username, prepared.creds.ami_secret),
    )
    return SiagaServer(prepared, asterisk, ami)
