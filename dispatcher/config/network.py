"""The config's listening and access sections: sip/ami/http endpoints, http limits, tls,
metrics, security, retention and callbacks bounds.

A mixin of :class:`dispatcher.config.loader.CenterParser`; a bad value raises
:class:`~dispatcher.yamlnodes.ConfigError` naming the file, the line and the key.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

from dispatcher.config.model import (
    LOOPBACK_NETWORKS,
    Callbacks,
    Endpoint,
    HttpLimits,
    MetricsAccess,
    Retention,
    Security,
    Tls,
)
from dispatcher.yamlnodes import Section, Value


class NetworkSections:
    """Parsers of the sections about listening, limits and who may reach what."""

    root: Section
    path: Path

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
