"""A caller's location from SIP, sans-IO: HEP v3 packets, the INVITE inside, its PIDF-LO.

Asterisk copies every SIP message it sends or receives to the server (HEP, ``hep.conf``).
Of those, only an INVITE with a ``Geolocation`` header (RFC 6442) pointing at a body part
(``cid:``) of type ``application/pidf+xml`` (RFC 4119, shapes of RFC 5491) gives a location.
Everything here is the caller's text, so it is hostile until it passes:

* sizes are bounded before anything is parsed (packet, message, body, XML document);
* the XML parser (expat) refuses a DOCTYPE outright, so no entity is ever defined,
  expanded or fetched (no billion laughs, no external entities), and bounds depth and
  element count;
* only a ``gml:Point`` or a ``gs:Circle`` (with a radius in metres) in the WGS 84 system is
  taken, its numbers finite and in range; the method and timestamp are kept only when they
  are short plain words and an RFC 3339 time.

A refusal raises :class:`LocationRefused` (a :class:`ValueError`) with the reason.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import struct
from dataclasses import dataclass
from xml.parsers import expat

__all__ = ["HepPacket", "LocationRefused", "SipLocation", "decode_hep", "invite_location",
           "parse_pidf_lo"]

MAX_PACKET = 65535
MAX_PIDF = 16 * 1024
MAX_DEPTH = 24
MAX_ELEMENTS = 400
MAX_RADIUS_M = 100_000.0

NS_PIDF = "urn:ietf:params:xml:ns:pidf"
NS_GEOPRIV = "urn:ietf:params:xml:ns:pidf:geopriv10"
NS_GML = "http://www.opengis.net/gml"
NS_SHAPES = "http://www.opengis.net/pidflo/1.0"
NS_DM = "urn:ietf:params:xml:ns:pidf:data-model"
# WGS 84 in 2-D (RFC 5491 §3); a shape with no srsName is taken as WGS 84 too.
WGS84 = ("urn:ogc:def:crs:EPSG::4326", "urn:ogc:def:crs:EPSG:4326", "")
METRES = ("urn:ogc:def:uom:EPSG::9001", "urn:ogc:def:uom:EPSG:9001")

_METHOD = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 .-]{0,31}$")
_CALL_ID = re.compile(r"^[-A-Za-z0-9.!%*_+~@:]{1,128}$")


class LocationRefused(ValueError):
    """The packet, message or document gives no location we can trust (with the reason)."""


@dataclass(frozen=True)
class SipLocation:
    """A caller's location as its INVITE stated it."""

    lat: float
    lon: float
    radius_m: float | None = None
    method: str | None = None
    fix_time: dt.datetime | None = None  # the PIDF's timestamp (UTC)


@dataclass(frozen=True)
class HepPacket:
    """The chunks of a HEP v3 packet that the server reads."""

    capture_id: int | None
    auth_key: bytes
    protocol: int | None  # 1: SIP
    payload: bytes


# ---- HEP v3 ----------------------------------------------------------------------------------

_CHUNK_CAPTURE_ID, _CHUNK_AUTH, _CHUNK_PAYLOAD, _CHUNK_PROTO = 0x000C, 0x000E, 0x000F, 0x000B


def decode_hep(packet: bytes) -> HepPacket:
    """Decode a HEP v3 packet (``HEP3``, total length, then vendor/type/length chunks)."""
    if len(packet) > MAX_PACKET or len(packet) < 6 or packet[:4] != b"HEP3":
        raise LocationRefused("not a HEP v3 packet")
    (total,) = struct.unpack_from("!H", packet, 4)
    if total != len(packet):
        raise LocationRefused(f"HEP length {total} but {len(packet)} bytes came")
    offset, capture_id, auth, proto, payload = 6, None, b"", None, b""
    while offset < total:
        if offset + 6 > total:
            raise LocationRefused("a HEP chunk is cut short")
        vendor, kind, length = struct.unpack_from("!HHH", packet, offset)
        if length < 6 or offset + length > total:
            raise LocationRefused(f"HEP chunk {kind} has a bad length {length}")
        body = packet[offset + 6:offset + length]
        if vendor == 0:
            if kind == _CHUNK_CAPTURE_ID and len(body) == 4:
                (capture_id,) = struct.unpack("!I", body)
            elif kind == _CHUNK_AUTH:
                auth = body.rstrip(b"\0")
            elif kind == _CHUNK_PROTO and len(body) == 1:
                proto = body[0]
            elif kind == _CHUNK_PAYLOAD:
                payload = body
        offset += length
    return HepPacket(capture_id, auth, proto, payload)


# ---- the SIP INVITE ------------------------------------------------------------------------

_COMPACT = {"i": "call-id", "c": "content-type", "l": "content-length"}


def _headers(block: bytes) -> list[tuple[str, str]]:
    lines: list[str] = []
    for raw in block.decode("utf-8", "replace").split("\r\n"):
        if raw[:1] in (" ", "\t") and lines:
            lines[-1] += " " + raw.strip()  # a folded line continues the previous header
        else:
            lines.append(raw)
    out = []
    for line in lines:
        name, sep, value = line.partition(":")
        if sep:
            key = name.strip().lower()
            out.append((_COMPACT.get(key, key), value.strip()))
    return out


def _param(value: str, name: str) -> str | None:
    for part in value.split(";")[1:]:
        key, sep, val = part.partition("=")
        if sep and key.strip().lower() == name:
            return val.strip().strip('"')
    return None


def _cid_uris(values: list[str]) -> list[str]:
    """The ``cid:`` targets of Geolocation header values (``<cid:x>;inserted-by=...``)."""
    found = []
    for value in values:
        for item in value.split(","):
            match = re.match(r"\s*<cid:([^>\s]{1,200})>", item)
            if match:
                found.append(match.group(1))
    return found


def _parts(body: bytes, boundary: str) -> list[tuple[list[tuple[str, str]], bytes]]:
    delimiter = b"--" + boundary.encode("latin-1")
    out = []
    for chunk in body.split(delimiter)[1:]:
        if chunk.startswith(b"--"):
            break  # the closing delimiter
        chunk = chunk.removeprefix(b"\r\n")
        head, sep, content = chunk.partition(b"\r\n\r\n")
        if not sep:
            head, content = b"", chunk.removeprefix(b"\r\n")
        out.append((_headers(head), content.removesuffix(b"\r\n")))
    return out


def invite_location(message: bytes) -> tuple[str, SipLocation] | None:
    """``(Call-ID, location)`` of a SIP INVITE whose Geolocation header points at its
    PIDF-LO body part; None for any other message (a response, another method, no
    Geolocation, a location by reference). Raises :class:`LocationRefused` when the INVITE
    points at a location that is not acceptable."""
    if not message.startswith(b"INVITE "):
        return None
    head, sep, body = message.partition(b"\r\n\r\n")
    if not sep:
        raise LocationRefused("the INVITE has no end of headers")
    headers = _headers(head)
    geolocation = [v for k, v in headers if k == "geolocation"]
    if not geolocation:
        return None
    call_ids = [v for k, v in headers if k == "call-id"]
    if len(call_ids) != 1 or not _CALL_ID.match(call_ids[0]):
        raise LocationRefused("the INVITE's Call-ID is missing, repeated or not plain")
    cids = _cid_uris(geolocation)
    if not cids:
        return None  # by reference (http:, sip:): nothing to read in the message
    content_type = next((v for k, v in headers if k == "content-type"), "")
    if not content_type.lower().startswith("multipart/"):
        raise LocationRefused("Geolocation points into the body but the body is not multipart")
    boundary = _param(content_type, "boundary")
    if not boundary or len(boundary) > 70:
        raise LocationRefused("the multipart body has no usable boundary")
    for part_headers, content in _parts(body, boundary):
        ids = [v.strip().strip("<>") for k, v in part_headers if k == "content-id"]
        kind = next((v for k, v in part_headers if k == "content-type"), "")
        if ids and ids[0] in cids:
            if kind.split(";")[0].strip().lower() != "application/pidf+xml":
                raise LocationRefused(f"the location part is {kind[:40]!r}, not PIDF-LO")
            return call_ids[0], parse_pidf_lo(content)
    raise LocationRefused("no body part has the Content-ID the Geolocation header names")


# ---- PIDF-LO ---------------------------------------------------------------------------------

def _refuse_doctype(*_args: object) -> None:
    raise LocationRefused("a DOCTYPE is refused (no entities in a location)")


class _Reader:
    """Collects the few elements that make a location, refusing anything out of bounds."""

    def __init__(self) -> None:
        self.stack: list[str] = []
        self.elements = 0
        self.text: list[str] = []
        self.shapes: list[tuple[str, str]] = []  # (Point|Circle, srsName)
        self.pos: list[str] = []
        self.radius: list[tuple[str, str]] = []  # (text, uom)
        self.method: list[str] = []
        self.timestamp: list[str] = []
        self._radius_uom = ""

    def start(self, name: str, attrs: dict[str, str]) -> None:
        self.elements += 1
        if self.elements > MAX_ELEMENTS or len(self.stack) >= MAX_DEPTH:
            raise LocationRefused("the location document is too deep or too long")
        self.stack.append(name)
        self.text = []
        if name in (f"{NS_GML} Point", f"{NS_SHAPES} Circle"):
            self.shapes.append((name.rsplit(" ", 1)[1], attrs.get("srsName", "")))
        elif name == f"{NS_SHAPES} radius":
            self._radius_uom = attrs.get("uom", "")

    def data(self, text: str) -> None:
        if sum(map(len, self.text)) < 256:
            self.text.append(text)

    def end(self, name: str) -> None:
        self.stack.pop()
        text = "".join(self.text).strip()
        self.text = []
        if name == f"{NS_GML} pos" and self.stack and self.stack[-1] in (
                f"{NS_GML} Point", f"{NS_SHAPES} Circle"):
            self.pos.append(text)
        elif name == f"{NS_SHAPES} radius":
            self.radius.append((text, self._radius_uom))
        elif name == f"{NS_GEOPRIV} method":
            self.method.append(text)
        elif name in (f"{NS_PIDF} timestamp", f"{NS_DM} timestamp"):
            self.timestamp.append(text)


def _number(text: str, what: str, lo: float, hi: float) -> float:
    if not re.fullmatch(r"[-+]?[0-9]{1,3}(?:\.[0-9]{1,12})?|[0-9]{1,6}(?:\.[0-9]{1,6})?",
                        text):
        raise LocationRefused(f"{what} is not a plain number: {text[:40]!r}")
    value = float(text)
    if not math.isfinite(value) or not lo <= value <= hi:
        raise LocationRefused(f"{what} {value} is out of range [{lo}, {hi}]")
    return value


def _timestamp(texts: list[str]) -> dt.datetime | None:
    for text in texts[:1]:
        try:
            when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return None
        if when.tzinfo is None:
            return None
        return when.astimezone(dt.UTC)
    return None


def parse_pidf_lo(document: bytes) -> SipLocation:
    """The location of a PIDF-LO document: one ``gml:Point`` or ``gs:Circle`` in WGS 84.

    Raises :class:`LocationRefused` for anything else: too large, not well-formed, a
    DOCTYPE (entities), too deep or long, no shape, several shapes, another coordinate
    system, numbers that are not plain or out of range.
    """
    if len(document) > MAX_PIDF:
        raise LocationRefused(f"the location document is {len(document)} bytes "
                              f"(at most {MAX_PIDF})")
    reader = _Reader()
    parser = expat.ParserCreate(namespace_separator=" ")
    # Entities off: a DOCTYPE (the only place entities are declared) stops the parse before
    # anything in it is read; external entities are never fetched.
    parser.StartDoctypeDeclHandler = _refuse_doctype
    parser.EntityDeclHandler = _refuse_doctype
    parser.ExternalEntityRefHandler = _refuse_doctype
    parser.StartElementHandler = reader.start
    parser.EndElementHandler = reader.end
    parser.CharacterDataHandler = reader.data
    try:
        parser.Parse(document, True)
    except expat.ExpatError as exc:
        raise LocationRefused(f"the location document is not well-formed XML: {exc}") from None
    if len(reader.shapes) != 1 or len(reader.pos) != 1:
        raise LocationRefused("the document must hold exactly one Point or Circle with "
                              "one position")
    shape, srs = reader.shapes[0]
    if srs not in WGS84:
        raise LocationRefused(f"the coordinates are in {srs[:60]!r}, not WGS 84")
    numbers = reader.pos[0].split()
    if len(numbers) != 2:
        raise LocationRefused("a position is two numbers: latitude and longitude")
    lat = _number(numbers[0], "the latitude", -90.0, 90.0)
    lon = _number(numbers[1], "the longitude", -180.0, 180.0)
    radius = None
    if shape == "Circle":
        if len(reader.radius) != 1:
            raise LocationRefused("a Circle has one radius")
        text, uom = reader.radius[0]
        if uom not in METRES:
            raise LocationRefused(f"the radius is in {uom[:60]!r}, not metres")
        radius = _number(text, "the radius", 0.0, MAX_RADIUS_M)
    methods = [m for m in reader.method if _METHOD.match(m)]
    return SipLocation(lat, lon, radius, methods[0] if methods else None,
                       _timestamp(reader.timestamp))
