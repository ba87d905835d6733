"""Render the center's config into Asterisk's configuration files.

Same config and secrets in, byte-identical files out: nothing time- or order-dependent goes
into a template. Generated files carry a header saying so; they are never edited by hand.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from jinja2 import Environment, PackageLoader, StrictUndefined

from dialplans import contract
from ivr.menu import build_menu

if TYPE_CHECKING:
    # Types only: rendering loads nothing of the server (tests/unit/dialplans/test_contract.py).
    from dispatcher.config.model import Center
    from dispatcher.credentials import Credentials
    from pbx.privilege import RunUser

# Every file Asterisk reads; each has a template ``<name>.j2``.
CONFIG_FILES = (
    "asterisk.conf",
    "modules.conf",
    "logger.conf",
    "pjsip.conf",
    "extensions.conf",
    "extensions_alerts.conf",
    "queues.conf",
    "manager.conf",
    "confbridge.conf",
    "features.conf",
    "rtp.conf",
    "cdr.conf",
    "cdr_manager.conf",
    "cel.conf",
    "cel_custom.conf",
    "musiconhold.conf",
    "indications.conf",
    "acl.conf",
    "udptl.conf",
    "pjproject.conf",
    "ccss.conf",
    "stasis.conf",
    "hep.conf",
)

# Kept for callers of the old name: the queue's name is the contract's.
QUEUE_NAME = contract.QUEUE_NAME


@dataclass(frozen=True)
class AsteriskPaths:
    """Directories as Asterisk sees them (the same paths on the host: see pbx.asterisk)."""

    etc: Path
    run: Path
    log: Path
    spool: Path
    db: Path
    sounds: Path
    recordings: Path
    moddir: str
    datadir: str

    @classmethod
    def for_center(cls, center: Center, moddir: str, datadir: str) -> AsteriskPaths:
        """The layout under the center's run directory."""
        run = center.run_dir
        return cls(etc=run / "etc", run=run / "run", log=run / "log", spool=run / "spool",
                   db=run / "db", sounds=run / "sounds", recordings=center.recordings_dir,
                   moddir=moddir, datadir=datadir)

    def make(self) -> None:
        """Create the directories Asterisk writes to."""
        for d in (self.etc, self.run, self.log, self.spool, self.db, self.sounds,
                  self.recordings, self.log / "cel-custom", self.log / "cdr-custom"):
            d.mkdir(parents=True, exist_ok=True)


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("dialplans", "templates"),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    return env


def render_all(center: Center, creds: Credentials, paths: AsteriskPaths,
               run_user: RunUser | None = None) -> dict[str, str]:
    """Every configuration file's text, by file name.

    ``run_user``: the account Asterisk drops to after starting as root (None: it keeps the
    user it was started as).
    """
    env = _environment()
    ctx = {
        "run_user": run_user,
        "center": center,
        "creds": creds,
        "paths": paths,
        # Every name the server shares with the dialplan: contexts, variables, user events,
        # the queue, feature codes, caller ID limits, the self-test's endpoint and penalty.
        "contract": contract,
        "accounts": sorted(center.extensions().items()),
        # The hotline's menu and the operators' in-call codes (extensions/features.conf).
        "menu": build_menu(center, paths.sounds),
        "agency_codes": contract.agency_codes(center.agencies),
        "tls_files": (paths.etc / contract.ASTERISK_CERT_FILE,
                      paths.etc / contract.ASTERISK_KEY_FILE),
        # The server's signed user events (a hostile-input defence: pbx.ami.attribution).
        "user_event": contract.dialplan_user_event,
        # Each operator's queue penalty: on a node of a topology, the order it rings desks.
        "desk_penalties": desk_penalties(center),
    }
    return {name: env.get_template(name + ".j2").render(**ctx) for name in CONFIG_FILES}


def desk_penalties(center: Center) -> dict[str, int]:
    """Each operator's queue penalty on the node ``center`` renders: the order its queue
    rings free desks in (a lower penalty first; a penalty never keeps a desk out).

    A single center: 0 for every operator. A node of a topology: the operators, in the
    config's order, are split into as many blocks as there are nodes; each node rings its
    own block first (0), then the next node's (1), and so on round. Every node's queue rings
    desks that the others' citizens may hold, and the edge refuses those (one call per
    desk); with each node starting at its own block the nodes meet only once a block is
    busy, not on every call. The self-test's desk keeps its own penalty, above them all.
    """
    nodes = center.topology.nodes if center.topology is not None else ()
    here = next((i for i, n in enumerate(nodes) if center.node is not None
                 and n.name == center.node.name), None)
    out = {}
    count = len(center.operators)
    for j, op in enumerate(center.operators):
        if op.extension == center.selftest.desk:
            out[op.extension] = contract.SELFTEST_DESK_PENALTY
        elif here is None:
            out[op.extension] = 0
        else:
            block = j * len(nodes) // count
            out[op.extension] = min((block - here) % len(nodes),
                                    contract.SELFTEST_DESK_PENALTY - 1)
    return out


def write_config(files: dict[str, str], out: Path) -> list[Path]:
    """Write rendered files into ``out`` (mode 0640: they hold secrets). Returns the paths.

    Files are replaced atomically so a reloading Asterisk never reads half a file, and take
    the group of ``out`` (Asterisk's, once the state directory is secured): a file written
    while the center runs (the SIP guard's ACL) is as readable to an unprivileged Asterisk
    as the ones written at start.
    """
    out.mkdir(parents=True, exist_ok=True)
    group = out.stat().st_gid
    written = []
    for name, text in sorted(files.items()):
        target = out / name
        tmp = out / f".{name}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o640)
        if os.fstat(fd).st_gid != group:
            os.fchown(fd, -1, group)
        os.fchmod(fd, 0o640)  # whatever the umask (the server runs under 077)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, target)
        written.append(target)
    return written
