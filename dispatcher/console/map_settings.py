"""The location keys of the ``console`` section of the center's config (parsed here, kept
out of the loader so other console settings sit beside them without touching these).

``map_tiles``: the tile URL template of the card's map (``https://host/{z}/{x}/{y}.png``);
without it the map still shows the marker, the accuracy circle, the coordinates and a link.
``map_attribution``: the tiles' attribution text. ``sip_location_port``: the loopback UDP
port Asterisk copies SIP messages to (HEP), so the server reads the location a caller's
INVITE carries (None: off). A bad value raises ConfigError naming the file, line and key.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from dispatcher.yamlnodes import Section

__all__ = ["MAP_KEYS", "MapSettings", "parse_map"]

MAP_KEYS = frozenset({"map_tiles", "map_attribution", "sip_location_port"})
_HOST = re.compile(r"^[A-Za-z0-9.-]{1,253}(?::[0-9]{1,5})?$")
_PLACEHOLDERS = re.compile(r"\{[a-z]+\}")


@dataclass(frozen=True)
class MapSettings:
    """Where the card's map gets its tiles, and where SIP locations come in."""

    tiles: str | None = None
    attribution: str = ""
    sip_location_port: int | None = None

    @property
    def tile_origin(self) -> str | None:
        """``scheme://host[:port]`` of the tiles: the only origin the page may load images
        from besides its own (Content-Security-Policy ``img-src``)."""
        if self.tiles is None:
            return None
        parts = urlsplit(self.tiles.replace("{s}", "a"))
        return f"{parts.scheme}://{parts.netloc}"


def parse_map(sec: Section, taken_ports: tuple[int, ...] = ()) -> MapSettings:
    """The map and SIP-location keys of the ``console`` section."""
    tiles_v = sec.get("map_tiles")
    tiles = None
    if not tiles_v.missing:
        tiles = sec.text("map_tiles", max_len=300)
        parts = urlsplit(tiles)
        # {s} is Leaflet's subdomain letter: a host of a.tile..., b.tile... (allowed by the
        # policy as *.tile... is not: the page gets exactly one origin).
        if "{s}" in parts.netloc:
            raise tiles_v.error("must name one host (no {s} subdomains): the page's "
                                "Content-Security-Policy allows exactly that origin")
        if parts.scheme not in ("https", "http") or not _HOST.match(parts.netloc) \
                or parts.query or parts.fragment or any(c in tiles for c in "\"'<> \\;"):
            raise tiles_v.error(f"must be an http(s) URL of a tile server with {{z}}, {{x}} "
                                f"and {{y}}, got {tiles!r}")
        found = set(_PLACEHOLDERS.findall(parts.path))
        if not {"{z}", "{x}", "{y}"} <= found or found - {"{z}", "{x}", "{y}", "{r}"}:
            raise tiles_v.error(f"must hold {{z}}, {{x}} and {{y}} (and nothing else in "
                                f"braces but {{r}}), got {tiles!r}")
    attribution = sec.text("map_attribution", "", max_len=200)
    port_v = sec.get("sip_location_port")
    port = None
    if not port_v.missing:
        port = sec.integer("sip_location_port", 0, lo=1, hi=65535)
        if port in taken_ports:
            raise port_v.error(f"{port} is already used by SIP, AMI or HTTP")
    return MapSettings(tiles, attribution, port)
