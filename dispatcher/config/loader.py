"""Loading the center's config: one YAML file, validated into a :class:`Center`.

A bad value raises :class:`~dispatcher.yamlnodes.ConfigError` naming the file, the line and
the key, and nothing is started.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import TYPE_CHECKING

from dispatcher.config.directory import DirectorySections
from dispatcher.config.model import (
    DEFAULT_STATE_DIR,
    QUEUE_NAME_FORBIDDEN,
    Center,
    Endpoint,
    Operator,
    Queue,
    language_keys,
)
from dispatcher.config.network import NetworkSections
from dispatcher.console.map_settings import MAP_KEYS, parse_map
from dispatcher.console.settings import CONSOLE_KEYS, parse_console
from dispatcher.selftest.settings import SELFTEST_KEYS, parse_selftest
from dispatcher.yamlnodes import Section, Value, load_document

if TYPE_CHECKING:
    from dispatcher.topology import Topology

__all__ = ["CenterParser", "load_center"]

_TOP_KEYS = {"center", "state_dir", "hotline", "sip", "ami", "http", "database", "queue", "ivr",
             "operators", "supervisors", "agencies", "buttons", "trunk", "recordings",
             "metrics", "retention", "security", "callbacks", "tls", "selftest",
             "topology", "console"}


def load_center(path: str | Path, state_dir: str | Path | None = None) -> Center:
    """Load and validate a center's config file.

    ``state_dir`` overrides the file's ``state_dir`` (tests and ``--state-dir`` use it).
    Raises ConfigError on the first problem found.
    """
    path = Path(path)
    root = Section(load_document(path), _TOP_KEYS)
    return CenterParser(root, path, state_dir).center()

class CenterParser(DirectorySections, NetworkSections):
    """Reads the top level and the sections with no parser of their own; the rest come from
    the mixins, by concern."""

    def __init__(self, root: Section, path: Path, state_dir: str | Path | None) -> None:
        self.root = root
        self.path = path
        self.state_override = Path(state_dir) if state_dir else None
        # extension -> (description, Value) for duplicate detection across sections
        self.owners: dict[str, str] = {}
    def center(self) -> Center:
        r = self.root
        info = r.section("center", {"name"})
        name = info.text("name", "Siaga command center")

        if self.state_override is not None:
            state_dir = self.state_override
        else:
            raw_state = r.text("state_dir", str(DEFAULT_STATE_DIR), max_len=400)
            state_dir = Path(raw_state)
            if not state_dir.is_absolute():
                state_dir = (self.path.parent / state_dir).resolve()

        hot = r.section("hotline", {"numbers", "panic_number"})
        numbers_v = hot.get("numbers")
        if numbers_v.missing:
            raise numbers_v.error("is required: the numbers citizens dial (e.g. 112)")
        hotline: list[str] = []
        for item in numbers_v.items():
            number = self.extension(item)
            self.claim(number, f"hotline number {number}", item)
            hotline.append(number)
        if not hotline:
            raise numbers_v.error("needs at least one number")
        panic_v = hot.get("panic_number")
        panic = self.extension(panic_v) if not panic_v.missing else "1990"
        self.claim(panic, f"the panic number {panic}", panic_v)

        sip_sec = r.section("sip", {"bind", "port", "transport", "external_address"})
        sip_host = sip_sec.text("bind", "0.0.0.0")
        try:
            ipaddress.ip_address(sip_host)
        except ValueError:
            raise sip_sec.get("bind").error(f"must be an IP address, got {sip_host!r}") from None
        sip = Endpoint(sip_host, sip_sec.integer("port", 5060, lo=1, hi=65535))
        transport = sip_sec.text("transport", "udp")
        if transport not in ("udp", "tcp"):
            raise sip_sec.get("transport").error("must be udp or tcp")
        external = sip_sec.get("external_address")
        external_address = None if external.missing else sip_sec.text("external_address")

        ami = self.endpoint("ami", "127.0.0.1", 5038, loopback_only=True)
        http_keys = frozenset({"limits", "intake_processes"})
        http = self.endpoint("http", "127.0.0.1", 8080, more_keys=http_keys)
        http_limits = self.http_limits(r.section("http", {"bind", "port"} | http_keys).section(
            "limits", {"connections", "connections_per_source", "request_seconds",
                       "idle_seconds"}))
        # Processes taking alerts on the API's socket (dispatcher/api/intake_process.py);
        # 0 keeps everything in the server's own process (a small center).
        intake_processes = r.section("http", {"bind", "port"} | http_keys).integer(
            "intake_processes", 0, lo=0, hi=32)
        if ami.port == sip.port:
            raise r.section("ami", {"bind", "port"}).get("port").error(
                f"{ami.port} is already the SIP port")
        if http.port in (ami.port, sip.port):
            raise r.section("http", {"bind", "port"}).get("port").error(
                f"{http.port} is already used by SIP or AMI")

        tls = self.tls(r.section("tls", {"certificate", "key", "sip_port", "staff"}),
                       (sip.port, ami.port, http.port))

        db = r.section("database", {"url"})
        db_url = db.text("url", f"sqlite:///{state_dir / 'siaga.db'}", max_len=1000)
        if not re.match(r"^(sqlite|postgresql)(\+\w+)?://", db_url):
            raise db.get("url").error("must be a sqlite:/// or postgresql:// URL")

        q = r.section("queue", {"ring_seconds", "overflow_seconds", "announce_seconds",
                                "overflow", "default_priority"})
        queue = Queue(
            ring_seconds=q.integer("ring_seconds", 15, lo=5, hi=120),
            overflow_seconds=q.integer("overflow_seconds", 60, lo=10, hi=3600),
            announce_seconds=q.integer("announce_seconds", 30, lo=0, hi=600),
            overflow=q.text("overflow", "supervisors"),
            default_priority=q.integer("default_priority", 3, lo=1, hi=10),
        )
        if queue.overflow not in ("supervisors", "agency"):
            raise q.get("overflow").error("must be 'supervisors' or 'agency'")

        ivr_sec = r.section("ivr", {"default_language", "languages", "digit_timeout",
                                    "max_seconds", "texts"})
        ivr = self.ivr(ivr_sec)

        operators: list[Operator] = []
        ops_v = r.get("operators")
        if ops_v.missing:
            raise ops_v.error("is required: at least one operator desk")
        for i, item in enumerate(ops_v.items()):
            sec = Section(item, {"extension", "name"})
            ext_v = sec.get("extension")
            if ext_v.missing:
                raise ext_v.error("is required")
            ext = self.extension(ext_v)
            self.claim(ext, f"operator {ext}", ext_v)
            desk_name = sec.text("name", f"Operator {i + 1}", max_len=60)
            if any(c in desk_name for c in QUEUE_NAME_FORBIDDEN):
                # The name is a field of a queues.conf member line: a comma would shift the
                # fields after it, a semicolon would cut the line as a comment.
                raise sec.get("name").error(
                    f"must not contain any of {' '.join(QUEUE_NAME_FORBIDDEN)}")
            operators.append(Operator(ext, desk_name))
        if not operators:
            raise ops_v.error("needs at least one operator")

        supervisors: list[str] = []
        sup_v = r.get("supervisors")
        if not sup_v.missing:
            for item in sup_v.items():
                ext = self.extension(item)
                self.claim(ext, f"supervisor {ext}", item)
                supervisors.append(ext)
        if queue.overflow == "supervisors" and not supervisors:
            raise q.get("overflow").error("is 'supervisors' but no supervisors are configured")

        trunk = self.trunk(r.section("trunk", {"host", "port", "username", "password"}))
        agencies = self.agencies(r.get("agencies"), trunk)
        buttons = self.buttons(r.get("buttons"))
        # The IVR's language keys (see LANGUAGE_KEYS) share the keypad with agency digits.
        for lang, key in language_keys(ivr.languages).items():
            clash = next((a.key for a in agencies if a.digit == key), None)
            if clash is not None:
                raise ivr_sec.get("languages").error(
                    f"language {lang} takes key {key}, already agency {clash}'s digit")

        # One console section; the map's keys and the card's keys each read their own.
        console = r.section("console", set(MAP_KEYS) | set(CONSOLE_KEYS))
        return Center(
            name=name, source=self.path, state_dir=state_dir, hotline=tuple(hotline),
            panic_number=panic, sip=sip, sip_transport=transport,
            external_address=external_address, ami=ami, http=http, database_url=db_url,
            queue=queue, ivr=ivr, operators=tuple(operators), supervisors=tuple(supervisors),
            agencies=agencies, buttons=buttons, trunk=trunk,
            recordings=r.boolean("recordings", True), http_limits=http_limits, tls=tls,
            http_intake_processes=intake_processes,
            metrics=self.metrics(r.section("metrics", {"enabled", "allow", "token"})),
            retention=self.retention(r.section("retention", {"every_minutes", "recordings",
                                                             "cel"})),
            security=self.security(r.section("security", {
                "staff_networks", "block_after", "window_seconds", "block_seconds"})),
            callbacks=self.callbacks(r.section("callbacks", {"max_open", "max_per_source"})),
            selftest=parse_selftest(r.section("selftest", SELFTEST_KEYS),
                                    {op.extension for op in operators}),
            topology=self.topology(db_url, db.get("url"), transport,
                                   sip_sec.get("transport")),
            console_map=parse_map(console, (sip.port, ami.port, http.port)),
            console=parse_console(console),
        )

    def topology(self, db_url: str, db_value: Value, transport: str,
                 transport_value: Value) -> Topology | None:
        from dispatcher.topology import TOPOLOGY_KEYS, parse_topology

        return parse_topology(self.root.section("topology", TOPOLOGY_KEYS), db_url, db_value,
                              transport, transport_value)
