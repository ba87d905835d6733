"""The ``siaga`` command.

Sub-commands live beside the feature they belong to; each feature module that has commands
exposes ``register(subparsers)`` and is listed in :data:`COMMAND_MODULES`.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from pathlib import Path

from dispatcher.config.loader import load_center
from dispatcher.yamlnodes import ConfigError

# Feature modules that add their own sub-commands.
COMMAND_MODULES: tuple[str, ...] = (
    "pbx.phone.cli",
    "dispatcher.calllog.cli",
    "dispatcher.alerts.cli",
    "dispatcher.backup.cli",
    "dispatcher.install",
    "dispatcher.doctor",
)

# Where ``siaga install`` puts the center's config, and where every command looks for it when
# neither --config nor $SIAGA_CONFIG names one. $SIAGA_SYSCONFDIR moves the whole /etc (a
# packager's prefix, or a test's temporary directory).
SYSCONFDIR_ENV = "SIAGA_SYSCONFDIR"


def sysconfdir() -> Path:
    """The system configuration directory: $SIAGA_SYSCONFDIR, else /etc."""
    return Path(os.environ.get(SYSCONFDIR_ENV) or "/etc")


def installed_config() -> Path:
    """Where an installed center's config lives (``siaga install`` writes it)."""
    return sysconfdir() / "siaga" / "siaga.yaml"


def find_config(given: str | None) -> Path | None:
    """The config to use: --config, else $SIAGA_CONFIG, else the installed center's."""
    if given:
        return Path(given)
    if os.environ.get("SIAGA_CONFIG"):
        return Path(os.environ["SIAGA_CONFIG"])
    installed = installed_config()
    return installed if installed.exists() else None


def add_config_args(p: argparse.ArgumentParser) -> None:
    """--config and --state-dir, shared by every command that reads the center's config."""
    p.add_argument("--config",
                   help="the center's config file (default: $SIAGA_CONFIG, else the "
                        "installed center's /etc/siaga/siaga.yaml)")
    p.add_argument("--state-dir", default=os.environ.get("SIAGA_STATE_DIR"),
                   help="override the config's state_dir (default: $SIAGA_STATE_DIR)")


def load_from_args(args: argparse.Namespace):  # noqa: ANN201 (Center)
    """Load the center named by --config, $SIAGA_CONFIG or the installed config, or exit with
    the config error on stderr."""
    path = find_config(args.config)
    if path is None:
        sys.exit(f"siaga: no config: give --config FILE, set SIAGA_CONFIG, or install the "
                 f"center with `siaga install --config FILE` (it writes {installed_config()})")
    args.config = str(path)
    try:
        return load_center(path, state_dir=getattr(args, "state_dir", None))
    except ConfigError as exc:
        sys.exit(f"siaga: config error: {exc}")


def _cmd_render(args: argparse.Namespace) -> int:
    from dialplans.render import AsteriskPaths, render_all, write_config
    from dispatcher.credentials import ensure_credentials
    from pbx.provision import ROOTFS_MODDIR, locate

    center = load_from_args(args)
    install = locate(args.rootfs)
    moddir = install.moddir if install else ROOTFS_MODDIR
    datadir = install.datadir if install else "/usr/share/asterisk"
    paths = AsteriskPaths.for_center(center, moddir, datadir)
    creds = ensure_credentials(center)
    out = Path(args.out)
    if center.topology is not None:  # the edge's files and each node's, one folder each
        from dialplans.edge import render_topology

        for folder, files in render_topology(center, creds, moddir, datadir).items():
            for path in write_config(files, out / folder):
                print(path)
        return 0
    for path in write_config(render_all(center, creds, paths), out):
        print(path)
    return 0


def _cmd_provision(args: argparse.Namespace) -> int:
    from pbx.provision import ProvisionError, provision

    print("provisioning Asterisk:")
    try:
        install = provision(args.rootfs, prefer_system=not args.no_system)
    except ProvisionError as exc:
        print(f"siaga: provisioning failed: {exc}", file=sys.stderr)
        return 1
    where = f"in {install.rootfs}" if install.rootfs else f"at {install.binary}"
    print(f"Asterisk {install.version} {where}")
    return 0


def accounts_document(center, creds) -> dict:  # noqa: ANN001
    """What an administrator hands to each softphone, as a JSON-ready dict."""
    host = center.external_address or center.sip.host
    port = center.sip.port
    if center.topology is not None:
        # Staff phones register at the edge, which every node reaches them through.
        host, port = center.topology.edge.host, center.topology.edge.port
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1"
    return {
        "sip": {"host": host, "port": port, "transport": center.sip_transport},
        "hotline": list(center.hotline),
        "panic_number": center.panic_number,
        "accounts": [
            {"extension": ext, "username": ext, "password": creds.password(ext),
             "role": role, "agency": agency,
             "console_password": creds.console_passwords.get(ext)}
            for ext, (role, agency) in sorted(center.extensions().items())
        ],
        "console": f"{'https' if center.tls else 'http'}://{center.http.host}:"
                   f"{center.http.port}/",
        "sip_tls_port": center.tls.sip_port if center.tls else None,
    }


def _cmd_accounts(args: argparse.Namespace) -> int:
    from dispatcher.credentials import ensure_credentials

    center = load_from_args(args)
    doc = accounts_document(center, ensure_credentials(center))
    if args.json:
        print(json.dumps(doc, indent=2))
        return 0
    sip = doc["sip"]
    print(f"SIP server: {sip['host']}:{sip['port']} ({sip['transport']})"
          + (f", TLS on port {doc['sip_tls_port']}" if doc["sip_tls_port"] else ""))
    print(f"Hotline: {', '.join(doc['hotline'])}   panic buttons dial: {doc['panic_number']}")
    print(f"Console: {doc['console']} (operators and supervisors log in with their extension)")
    print(f"{'extension':<10} {'role':<11} {'agency':<13} {'SIP password':<26} console password")
    for a in doc["accounts"]:
        print(f"{a['extension']:<10} {a['role']:<11} {a['agency'] or '-':<13} "
              f"{a['password']:<26} {a['console_password'] or '-'}")
    return 0


def _cmd_up(args: argparse.Namespace) -> int:
    from dispatcher.serve import run

    center = load_from_args(args)
    if center.topology is not None:  # the edge and nodes this machine carries
        from dispatcher.topology_run import run_topology

        return run_topology(center, rootfs=args.rootfs, log_format=args.log_format)
    return run(center, rootfs=args.rootfs, log_format=args.log_format)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every sub-command."""
    parser = argparse.ArgumentParser(
        prog="siaga", description="Siaga: emergency dispatch for a city command center.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("render", help="render the Asterisk configuration into a folder (with "
                       "a topology: the edge's and each node's, a folder each)")
    add_config_args(p)
    p.add_argument("--out", required=True, help="folder to write the files into")
    p.add_argument("--rootfs", help="the provisioned root filesystem (default: $SIAGA_ROOTFS)")
    p.set_defaults(func=_cmd_render)

    p = sub.add_parser("provision", help="make sure an Asterisk 20+ is there to run")
    p.add_argument("--rootfs", help="where to build the root filesystem "
                   "(default: $SIAGA_ROOTFS or /var/lib/siaga/rootfs)")
    p.add_argument("--no-system", action="store_true",
                   help="ignore a system Asterisk and use the root filesystem")
    p.set_defaults(func=_cmd_provision)

    p = sub.add_parser("accounts", help="print the SIP accounts to put in softphones")
    add_config_args(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_accounts)

    p = sub.add_parser("up", help="run the command center (Asterisk included)")
    add_config_args(p)
    p.add_argument("--rootfs", help="the provisioned root filesystem (default: $SIAGA_ROOTFS)")
    p.add_argument("--log-format", choices=("text", "json"),
                   default=os.environ.get("SIAGA_LOG_FORMAT", "text"),
                   help="text lines, or one JSON object a line with call_id/incident_id "
                        "(default: $SIAGA_LOG_FORMAT or text)")
    p.set_defaults(func=_cmd_up)

    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:  # the module exists but something it imports does not
                raise
            continue
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``siaga`` command."""
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
