"""The center's config as typed objects: the :class:`Center` and its parts.

``dispatcher.config.loader`` builds them from the YAML file; everything else reads them.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from dispatcher.console.map_settings import MapSettings
from dispatcher.console.settings import ConsoleSettings
from dispatcher.selftest.settings import SelfTest

if TYPE_CHECKING:
    # Parsed only when a config has the section (rendering one node loads no edge code).
    from dispatcher.topology import Node, Topology

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
    # Processes taking alerts on the API's socket (0: the server's own process alone).
    http_intake_processes: int = 0
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
    # The card's map tiles and the SIP-location port (dispatcher.console.map_settings).
    console_map: MapSettings = field(default_factory=MapSettings)
    # The operator's console: when the call card flags a repeat caller.
    console: ConsoleSettings = field(default_factory=ConsoleSettings)

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


# Keys that switch the IVR's language: the last language listed takes 9, the one before 8,
# the one before 7 (with [id, en]: 8 Bahasa Indonesia, 9 English).
LANGUAGE_KEYS = (7, 8, 9)


def language_keys(languages: tuple[str, ...] | list[str]) -> dict[str, int]:
    """The key that switches the IVR to each language."""
    first = LANGUAGE_KEYS[-1] - len(languages) + 1
    return {lang: first + i for i, lang in enumerate(languages)}


# Prompts the IVR plays; texts in the config override the built-in ones per language.
IVR_PROMPTS = ("welcome", "language", "menu", "connecting", "wait", "agency_failed", "goodbye")
