"""The center's config: one YAML file, loaded and validated into typed objects.

Everything else (Asterisk's configuration, IVR prompts, the database's reference rows) is
generated from the :class:`Center` this module returns. A bad value raises
:class:`~dispatcher.yamlnodes.ConfigError` naming the file, the line and the key, and nothing
is started.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from dispatcher.selftest.settings import SELFTEST_KEYS, SelfTest, parse_selftest
from dispatcher.yamlnodes import ConfigError, Section, Value, load_document

if TYPE_CHECKING:
    # Parsed only when a config has the section (rendering one node loads no edge code).
    from dispatcher.topology import Node, Topology

__all__ = [
    "AGENCY_KINDS",
    "Agency",
    "Button",
    "Callbacks",
    "Center",
    "ConfigError",
    "Security",
    "Endpoint",
    "MetricsAccess",
    "Retention",
    "Tls",
    "load_center",
]

# The six agencies a center bridges to. Keys are stable identifiers used in the dialplan,
# the call log and the API.
AGENCY_KINDS = ("police", "fire", "health", "disaster", "public_order", "transport")
QUEUE_NAME_FORBIDDEN = (",", ";", "|", "\\", '"')
EXTENSION_RE = re.compile(r"^[0-9]{2,8}$")
NUMBER_RE = re.compile(r"^\+?[0-9]{2,20}$")
LANGUAGE_RE = re.compile(r"^[a-z]{2}$")
DEFAULT_STATE_DIR = Path("/var/lib/siaga/center")


@dataclass(frozen=True)
class Endpoint:
    """A network address something listens on."""

    host: str
    port: int


@dataclass(frozen=True)
class Operator:
    """An operator desk: one SIP extension that answers hotline calls."""

    extension: str
    name: str


@dataclass(frozen=True)
class Agency:
    """One of the six agencies: a ring group of extensions and a fallback when none answers."""

    key: str
    name: str
    digit: int
    extensions: tuple[str, ...]
    fallback: str
    ring_seconds: int
    priority: int


@dataclass(frozen=True)
class Button:
    """A physical panic button: a SIP device at a fixed place that calls the panic number."""

    extension: str
    name: str
    lat: float
    lon: float


@dataclass(frozen=True)
class Trunk:
    """A SIP trunk to the public network (optional)."""

    host: str
    port: int
    username: str | None
    password: str | None


@dataclass(frozen=True)
class Tls:
    """Transport security (optional): SIP over TLS with SRTP, and the console over HTTPS.

    ``staff`` is ``"required"`` (staff phones are reached over TLS only and their calls
    must carry SRTP) or ``"optional"`` (SRTP offered, plain RTP and UDP still accepted).
    """

    certificate: Path
    key: Path
    sip_port: int
    staff: str = "required"


@dataclass(frozen=True)
class Queue:
    """Timings of the operators' queue."""

    ring_seconds: int
    overflow_seconds: int
    announce_seconds: int
    overflow: str  # "supervisors" or "agency"
    # Priority (1 most urgent .. 10) of a caller who chose no category (0, no key, bad key).
    default_priority: int = 3


@dataclass(frozen=True)
class Callbacks:
    """Bounds of the list of callbacks owed (abandoned and dropped hotline calls): anyone can
    call and hang up, so a flood must not grow it without end or bury real callers."""

    # Pending entries in all (the few an operator is ringing come on top); beyond it the
    # weakest pending one is evicted.
    max_open: int = 1000
    max_per_source: int = 20  # pending entries from one SIP source address


@dataclass(frozen=True)
class Ivr:
    """The hotline's voice menu."""

    default_language: str
    languages: tuple[str, ...]
    digit_timeout: int
    max_seconds: int
    texts: dict[str, dict[str, str]]


LOOPBACK_NETWORKS = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))


@dataclass(frozen=True)
class MetricsAccess:
    """Who may scrape ``/metrics``: a client address in ``allow``, or the bearer ``token``."""

    enabled: bool = True
    allow: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = LOOPBACK_NETWORKS
    token: str | None = field(default=None, repr=False)  # never in a log line


@dataclass(frozen=True)
class Retention:
    """How long recordings and CEL files are kept; 0 means no limit of that kind."""

    every_minutes: int = 60
    recordings_max_age_days: int = 0
    recordings_max_total_mb: int = 0
    cel_rotate_mb: int = 64
    cel_max_age_days: int = 365
    cel_max_total_mb: int = 1024


@dataclass(frozen=True)
class Security:
    """When a source address is blocked for failing SIP authentication (dispatcher.guard)."""

    # Networks the staff phones use: never blocked, whatever they get wrong.
    staff_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    block_after: int = 10  # failed registrations/challenges from one address ...
    window_seconds: int = 60  # ... within this many seconds ...
    block_seconds: int = 600  # ... block it for this long


@dataclass(frozen=True)
class HttpLimits:
    """Connection limits of the HTTP site (``http.limits``; see dispatcher/web/limits.py)."""

    connections: int = 512
    connections_per_source: int = 32
    request_seconds: float = 10.0
    idle_seconds: float = 60.0


@dataclass(frozen=True)
class Center:
    """The whole center, as the config file describes it."""

    name: str
    source: Path
    state_dir: Path
    hotline: tuple[str, ...]
    panic_number: str
    sip: Endpoint
    sip_transport: str
    external_address: str | None
    ami: Endpoint
    http: Endpoint
    database_url: str
    queue: Queue
    ivr: Ivr
    operators: tuple[Operator, ...]
    supervisors: tuple[str, ...]
    agencies: tuple[Agency, ...]
    buttons: tuple[Button, ...]
    trunk: Trunk | None
    recordings: bool = True
    http_limits: HttpLimits = field(default_factory=HttpLimits)
    tls: Tls | None = None
    extras: dict[str, str] = field(default_factory=dict)
    metrics: MetricsAccess = field(default_factory=MetricsAccess)
    retention: Retention = field(default_factory=Retention)
    security: Security = field(default_factory=Security)
    callbacks: Callbacks = field(default_factory=Callbacks)
    selftest: SelfTest = field(default_factory=SelfTest)
    # An edge (Kamailio) in front of several Asterisk nodes (dispatcher.topology); None: one
    # Asterisk. ``node`` is set on the copy of the center one node renders and runs.
    topology: Topology | None = None
    node: Node | None = None

    @property
    def run_dir(self) -> Path:
        """Where the generated Asterisk configuration and Asterisk's runtime files live."""
        return self.state_dir / "run"

    @property
    def recordings_dir(self) -> Path:
        """Where call recordings are written."""
        return self.state_dir / "recordings"

    def agency(self, key: str) -> Agency:
        """The agency with this key."""
        for a in self.agencies:
            if a.key == key:
                return a
        raise KeyError(key)

    def extensions(self) -> dict[str, tuple[str, str | None]]:
        """Every SIP account: extension -> (role, agency key or None)."""
        out: dict[str, tuple[str, str | None]] = {}
        for op in self.operators:
            out[op.extension] = ("operator", None)
        for ext in self.supervisors:
            out[ext] = ("supervisor", None)
        for ag in self.agencies:
            for ext in ag.extensions:
                out[ext] = ("agency", ag.key)
            if ag.fallback not in out and EXTENSION_RE.match(ag.fallback):
                out[ag.fallback] = ("agency", ag.key)
        for b in self.buttons:
            out[b.extension] = ("button", None)
        return out

    def with_overrides(self, **changes: object) -> Center:
        """A copy with some fields replaced (tests use it to pick free ports)."""
        return replace(self, **changes)  # type: ignore[arg-type]


_TOP_KEYS = {"center", "state_dir", "hotline", "sip", "ami", "http", "database", "queue", "ivr",
             "operators", "supervisors", "agencies", "buttons", "trunk", "recordings",
             "metrics", "retention", "security", "callbacks", "tls", "selftest",
             "topology"}


def load_center(path: str | Path, state_dir: str | Path | None = None) -> Center:
    """Load and validate a center's config file.

    ``state_dir`` overrides the file's ``state_dir`` (tests and ``--state-dir`` use it).
    Raises ConfigError on the first problem found.
    """
    path = Path(path)
    root = Section(load_document(path), _TOP_KEYS)
    return _Parser(root, path, state_dir).center()


class _Parser:
    def __init__(self, root: Section, path: Path, state_dir: str | Path | None) -> None:
        self.root = root
        self.path = path
        self.state_override = Path(state_dir) if state_dir else None
        # extension -> (description, Value) for duplicate detection across sections
        self.owners: dict[str, str] = {}

    def claim(self, number: str, owner: str, v: Value) -> None:
        if number in self.owners:
            raise v.error(f"{number} is already {self.owners[number]}")
        self.owners[number] = owner

    def extension(self, v: Value) -> str:
        raw = v.scalar()
        s = str(raw) if isinstance(raw, int) and not isinstance(raw, bool) else raw
        if not isinstance(s, str) or not EXTENSION_RE.match(s):
            raise v.error(f"must be an extension of 2 to 8 digits, got {raw!r}")
        return s

    def endpoint(self, key: str, default_host: str, default_port: int,
                 loopback_only: bool = False, more_keys: frozenset[str] = frozenset()
                 ) -> Endpoint:
        sec = self.root.section(key, {"bind", "port"} | more_keys)
        host = sec.text("bind", default_host)
        try:
            addr = ipaddress.ip_address(host)
        except ValueError:
            raise sec.get("bind").error(f"must be an IP address, got {host!r}") from None
        if loopback_only and not addr.is_loopback:
            raise sec.get("bind").error(
                "must be a loopback address: the manager interface is never exposed")
        return Endpoint(host, sec.integer("port", default_port, lo=1, hi=65535))

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
        http_keys = frozenset({"limits"})
        http = self.endpoint("http", "127.0.0.1", 8080, more_keys=http_keys)
        http_limits = self.http_limits(r.section("http", {"bind", "port"} | http_keys).section(
            "limits", {"connections", "connections_per_source", "request_seconds",
                       "idle_seconds"}))
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

        return Center(
            name=name, source=self.path, state_dir=state_dir, hotline=tuple(hotline),
            panic_number=panic, sip=sip, sip_transport=transport,
            external_address=external_address, ami=ami, http=http, database_url=db_url,
            queue=queue, ivr=ivr, operators=tuple(operators), supervisors=tuple(supervisors),
            agencies=agencies, buttons=buttons, trunk=trunk,
            recordings=r.boolean("recordings", True), http_limits=http_limits, tls=tls,
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
        )

    def topology(self, db_url: str, db_value: Value, transport: str,
                 transport_value: Value) -> Topology | None:
        from dispatcher.topology import TOPOLOGY_KEYS, parse_topology

        return parse_topology(self.root.section("topology", TOPOLOGY_KEYS), db_url, db_value,
                              transport, transport_value)

    def http_limits(self, sec: Section) -> HttpLimits:
        d = HttpLimits()
        return HttpLimits(
            connections=sec.integer("connections", d.connections, lo=1, hi=100_000),
            connections_per_source=sec.integer("connections_per_source",
                                               d.connections_per_source, lo=1, hi=100_000),
            request_seconds=sec.number("request_seconds", d.request_seconds, lo=1, hi=600),
            idle_seconds=sec.number("idle_seconds", d.idle_seconds, lo=1, hi=3600),
        )

    def networks(self, value: Value) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        """A list of addresses or CIDR networks; a bad one is named with its line."""
        nets = []
        for item in value.items():
            raw = item.scalar()
            try:
                nets.append(ipaddress.ip_network(str(raw), strict=False))
            except ValueError:
                raise item.error("must be an IP address or network (CIDR, e.g. 10.1.0.0/16), "
                                 f"got {raw!r}") from None
        return tuple(nets)

    def metrics(self, sec: Section) -> MetricsAccess:
        allow_v = sec.get("allow")
        allow = LOOPBACK_NETWORKS if allow_v.missing else self.networks(allow_v)
        token = None
        if not sec.get("token").missing:
            token = sec.text("token", max_len=200)
            if len(token) < 24 or any(c.isspace() for c in token):
                # A short token is guessed; whitespace would not survive an HTTP header.
                raise sec.get("token").error("must be at least 24 characters, no spaces")
        return MetricsAccess(sec.boolean("enabled", True), allow, token)

    def retention(self, sec: Section) -> Retention:
        default = Retention()
        rec = sec.section("recordings", {"max_age_days", "max_total_mb"})
        cel = sec.section("cel", {"rotate_mb", "max_age_days", "max_total_mb"})
        return Retention(
            every_minutes=sec.integer("every_minutes", default.every_minutes, lo=1, hi=1440),
            recordings_max_age_days=rec.integer("max_age_days", 0, lo=0, hi=36500),
            recordings_max_total_mb=rec.integer("max_total_mb", 0, lo=0, hi=100_000_000),
            cel_rotate_mb=cel.integer("rotate_mb", default.cel_rotate_mb, lo=1, hi=100_000),
            cel_max_age_days=cel.integer("max_age_days", default.cel_max_age_days, lo=0,
                                         hi=36500),
            cel_max_total_mb=cel.integer("max_total_mb", default.cel_max_total_mb, lo=0,
                                         hi=100_000_000),
        )

    def security(self, sec: Section) -> Security:
        nets_v = sec.get("staff_networks")
        return Security(
            staff_networks=() if nets_v.missing else self.networks(nets_v),
            block_after=sec.integer("block_after", 10, lo=2, hi=1000),
            window_seconds=sec.integer("window_seconds", 60, lo=1, hi=86400),
            block_seconds=sec.integer("block_seconds", 600, lo=1, hi=7 * 86400),
        )

    def callbacks(self, sec: Section) -> Callbacks:
        bounds = Callbacks(
            max_open=sec.integer("max_open", Callbacks.max_open, lo=10, hi=100_000),
            max_per_source=sec.integer("max_per_source", Callbacks.max_per_source,
                                       lo=1, hi=100_000),
        )
        if bounds.max_per_source > bounds.max_open:
            raise sec.get("max_per_source").error(
                f"must not exceed callbacks.max_open ({bounds.max_open})")
        return bounds

    def tls(self, sec: Section, taken: tuple[int, ...]) -> Tls | None:
        if sec.value.missing:
            return None
        from dispatcher.tls import TlsFileError, check_pair

        def path(key: str) -> Path:
            p = Path(sec.text(key, max_len=400))
            return p if p.is_absolute() else (self.path.parent / p).resolve()

        cert, key = path("certificate"), path("key")
        try:
            check_pair(cert, key)
        except TlsFileError as exc:
            raise sec.get("certificate" if exc.which == "certificate" else "key").error(
                exc.reason) from None
        port = sec.integer("sip_port", 5061, lo=1, hi=65535)
        if port in taken:
            raise sec.get("sip_port").error(f"{port} is already used by SIP, AMI or HTTP")
        staff = sec.text("staff", "required")
        if staff not in ("required", "optional"):
            raise sec.get("staff").error("must be 'required' or 'optional'")
        return Tls(cert, key, port, staff)

    def ivr(self, sec: Section) -> Ivr:
        default = sec.text("default_language", "id")
        langs_v = sec.get("languages")
        languages = ["id", "en"] if langs_v.missing else []
        if not langs_v.missing:
            for item in langs_v.items():
                lang = item.scalar()
                if not isinstance(lang, str) or not LANGUAGE_RE.match(lang):
                    raise item.error(f"must be a two-letter language code, got {lang!r}")
                languages.append(lang)
        if len(languages) > len(LANGUAGE_KEYS):
            raise langs_v.error(f"at most {len(LANGUAGE_KEYS)} languages")
        if default not in languages:
            raise sec.get("default_language").error(
                f"{default!r} is not among languages {languages}")
        texts: dict[str, dict[str, str]] = {}
        texts_v = sec.get("texts")
        if not texts_v.missing:
            by_lang = Section(texts_v, set(languages))
            for lang in languages:
                lv = by_lang.get(lang)
                if lv.missing:
                    continue
                prompt_sec = Section(lv, set(IVR_PROMPTS))
                texts[lang] = {k: prompt_sec.text(k, max_len=600)
                               for k in IVR_PROMPTS if k in prompt_sec.children}
        return Ivr(
            default_language=default, languages=tuple(languages),
            digit_timeout=sec.integer("digit_timeout", 3, lo=1, hi=10),
            max_seconds=sec.integer("max_seconds", 10, lo=3, hi=30),
            texts=texts,
        )

    def trunk(self, sec: Section) -> Trunk | None:
        if sec.value.missing:
            return None
        return Trunk(
            host=sec.text("host"), port=sec.integer("port", 5060, lo=1, hi=65535),
            username=sec.text("username") if "username" in sec.children else None,
            password=sec.text("password") if "password" in sec.children else None,
        )

    def agencies(self, v: Value, trunk: Trunk | None) -> tuple[Agency, ...]:
        if v.missing:
            raise v.error(f"is required: the six agencies {', '.join(AGENCY_KINDS)}")
        agencies: list[Agency] = []
        digits: dict[int, str] = {}
        fallbacks: list[tuple[str, str, Value]] = []
        for item in v.items():
            sec = Section(item, {"key", "name", "digit", "extensions", "fallback",
                                 "ring_seconds", "priority"})
            key_v = sec.get("key")
            key = sec.text("key")
            if key not in AGENCY_KINDS:
                raise key_v.error(f"must be one of {', '.join(AGENCY_KINDS)}, got {key!r}")
            if any(a.key == key for a in agencies):
                raise key_v.error(f"agency {key} is configured twice")
            digit = sec.integer("digit", lo=1, hi=9)
            if digit in digits:
                raise sec.get("digit").error(f"{digit} is already agency {digits[digit]}")
            digits[digit] = key
            exts_v = sec.get("extensions")
            if exts_v.missing:
                raise exts_v.error("is required: the agency's phones")
            exts: list[str] = []
            for ev in exts_v.items():
                ext = self.extension(ev)
                self.claim(ext, f"agency {key} extension {ext}", ev)
                exts.append(ext)
            if not 1 <= len(exts) <= 10:
                raise exts_v.error("must list 1 to 10 extensions")
            fb_v = sec.get("fallback")
            if fb_v.missing:
                raise fb_v.error("is required: where the call goes when nobody answers")
            fallback = sec.text("fallback")
            if not NUMBER_RE.match(fallback):
                raise fb_v.error(f"must be a phone number or extension, got {fallback!r}")
            fallbacks.append((fallback, key, fb_v))
            agencies.append(Agency(
                key=key, name=sec.text("name", key.replace("_", " ").title()), digit=digit,
                extensions=tuple(exts), fallback=fallback,
                ring_seconds=sec.integer("ring_seconds", 20, lo=5, hi=120),
                priority=sec.integer("priority", 5, lo=1, hi=10),
            ))
        missing = [k for k in AGENCY_KINDS if not any(a.key == k for a in agencies)]
        if missing:
            raise v.error(f"missing agencies: {', '.join(missing)}")
        # A fallback is a supervisor's phone, a phone of its own (an extension: it gets an
        # account), or an outside number dialled through the trunk. It must not be an
        # operator, a hotline number or another agency's phone.
        for number, key, fb_v in fallbacks:
            owner = self.owners.get(number)
            if owner is not None:
                if not owner.startswith("supervisor"):
                    raise fb_v.error(f"{number} is already {owner}")
            elif EXTENSION_RE.match(number):
                self.owners[number] = f"agency {key} fallback {number}"
            elif trunk is None:
                raise fb_v.error(f"{number} needs a trunk to be dialled; none is configured")
        return tuple(agencies)

    def buttons(self, v: Value) -> tuple[Button, ...]:
        if v.missing:
            return ()
        out: list[Button] = []
        for item in v.items():
            sec = Section(item, {"extension", "name", "lat", "lon"})
            ext_v = sec.get("extension")
            if ext_v.missing:
                raise ext_v.error("is required")
            ext = self.extension(ext_v)
            self.claim(ext, f"button {ext}", ext_v)
            out.append(Button(ext, sec.text("name", f"Button {ext}"),
                              sec.number("lat", lo=-90, hi=90),
                              sec.number("lon", lo=-180, hi=180)))
        return tuple(out)


# Keys that switch the IVR's language: the last language listed takes 9, the one before 8,
# the one before 7 (with [id, en]: 8 Bahasa Indonesia, 9 English).
LANGUAGE_KEYS = (7, 8, 9)


def language_keys(languages: tuple[str, ...] | list[str]) -> dict[str, int]:
    """The key that switches the IVR to each language."""
    first = LANGUAGE_KEYS[-1] - len(languages) + 1
    return {lang: first + i for i, lang in enumerate(languages)}


# Prompts the IVR plays; texts in the config override the built-in ones per language.
IVR_PROMPTS = ("welcome", "language", "menu", "connecting", "wait", "agency_failed", "goodbye")
