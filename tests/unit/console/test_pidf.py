"""The caller's PIDF-LO location, HEP packets and the INVITE that carries it: hostile input
refused with a reason, good shapes read exactly."""

from __future__ import annotations

import datetime as dt
import struct
from pathlib import Path

import pytest

from dispatcher.console.pidf import (
    MAX_PIDF,
    LocationRefused,
    SipLocation,
    decode_hep,
    invite_location,
    parse_pidf_lo,
)

DATA = Path(__file__).parents[2] / "data" / "location"
HEAD = ('<presence xmlns="urn:ietf:params:xml:ns:pidf" '
        'xmlns:gp="urn:ietf:params:xml:ns:pidf:geopriv10" '
        'xmlns:gml="http://www.opengis.net/gml" xmlns:gs="http://www.opengis.net/pidflo/1.0" '
        'entity="pres:caller@example.net"><tuple id="t1"><status><gp:geopriv>'
        '<gp:location-info>')
TAIL = ('</gp:location-info><gp:usage-rules/><gp:method>{method}</gp:method></gp:geopriv>'
        '</status><timestamp>2026-12-07T10:00:00Z</timestamp></tuple></presence>')


def pidf(shape: str, method: str = "GPS", prolog: str = '<?xml version="1.0"?>') -> bytes:
    return (prolog + HEAD + shape + TAIL.format(method=method)).encode()


def point(pos: str, srs: str = "urn:ogc:def:crs:EPSG::4326") -> str:
    return f'<gml:Point srsName="{srs}"><gml:pos>{pos}</gml:pos></gml:Point>'


def circle(pos: str, radius: str, uom: str = "urn:ogc:def:uom:EPSG::9001") -> str:
    return (f'<gs:Circle srsName="urn:ogc:def:crs:EPSG::4326"><gml:pos>{pos}</gml:pos>'
            f'<gs:radius uom="{uom}">{radius}</gs:radius></gs:Circle>')


def test_given_a_point_when_parsed_then_its_coordinates_method_and_time() -> None:
    """A GML Point in WGS 84 gives its latitude and longitude, method and timestamp."""
    loc = parse_pidf_lo(pidf(point("-6.2088 106.8456")))
    assert loc == SipLocation(-6.2088, 106.8456, None, "GPS",
                              dt.datetime(2026, 12, 7, 10, 0, tzinfo=dt.UTC))


def test_given_a_circle_when_parsed_then_its_radius_in_metres() -> None:
    """A Circle's radius (metres) is the accuracy shown on the card."""
    loc = parse_pidf_lo(pidf(circle("-6.2 106.8", "850"), method="Cell"))
    assert (loc.lat, loc.lon, loc.radius_m, loc.method) == (-6.2, 106.8, 850.0, "Cell")


@pytest.mark.parametrize("document", [
    b"",
    b"<presence><<<\x01",
    b"<presence xmlns='urn:ietf:params:xml:ns:pidf'></presence>",  # no shape
    pidf(point("-6.2")),  # one number
    pidf(point("-6.2 106.8 12")),  # 3-D
    pidf(point("-6.2 106.8") + point("1 2")),  # two shapes
    pidf(point("1e1 2")),  # not plain
    pidf(point("nan 2")),
    pidf(point("-6.2 106.8", srs="urn:ogc:def:crs:EPSG::32748")),  # UTM, not WGS 84
    pidf(circle("-6.2 106.8", "850", uom="urn:ogc:def:uom:EPSG::9002")),  # feet
    pidf(circle("-6.2 106.8", "")),
], ids=["empty", "garbage", "no-shape", "one-number", "3d", "two-shapes", "exponent", "nan",
        "other-crs", "feet", "no-radius"])
def test_given_a_malformed_document_when_parsed_then_refused(document: bytes) -> None:
    """Anything but one plain WGS 84 Point or Circle is refused, with a reason."""
    with pytest.raises(LocationRefused):
        parse_pidf_lo(document)


@pytest.mark.parametrize("pos,radius", [("-90.5 10", None), ("10 180.01", None),
                                        ("91 0", None), ("0 0", "-5"), ("0 0", "100001")])
def test_given_numbers_out_of_range_when_parsed_then_refused(pos: str, radius: str | None
                                                             ) -> None:
    """Latitude within ±90, longitude within ±180, a radius between 0 and 100 km."""
    shape = point(pos) if radius is None else circle(pos, radius)
    with pytest.raises(LocationRefused, match="out of range|not a plain number"):
        parse_pidf_lo(pidf(shape))


def test_given_an_external_entity_when_parsed_then_refused_before_reading_it(
        tmp_path: Path) -> None:
    """XXE: a DOCTYPE declaring a SYSTEM entity is refused; the file is never read."""
    secret = tmp_path / "secret"
    secret.write_text("-6.2 106.8")
    doc = pidf(point("&x;"), prolog=f'<?xml version="1.0"?><!DOCTYPE presence '
                                    f'[<!ENTITY x SYSTEM "file://{secret}">]>')
    with pytest.raises(LocationRefused, match="DOCTYPE"):
        parse_pidf_lo(doc)


def test_given_a_billion_laughs_when_parsed_then_refused() -> None:
    """Nested entities are refused at the DOCTYPE, before any expansion."""
    entities = '<!ENTITY a "-6.2 106.8">' + "".join(
        f'<!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">' for i in range(8))
    doc = pidf(point("&i;"), prolog=f'<?xml version="1.0"?><!DOCTYPE presence [{entities}]>')
    with pytest.raises(LocationRefused, match="DOCTYPE"):
        parse_pidf_lo(doc)


def test_given_an_internal_entity_when_parsed_then_refused() -> None:
    """Even a harmless-looking entity is refused: a location has no use for a DOCTYPE."""
    doc = pidf(point("&x;"), prolog='<!DOCTYPE p [<!ENTITY x "-6.2 106.8">]>')
    with pytest.raises(LocationRefused, match="DOCTYPE"):
        parse_pidf_lo(doc)


def test_given_an_oversize_document_when_parsed_then_refused_unread() -> None:
    """A document above the bound is refused by its size alone."""
    doc = pidf(point("-6.2 106.8") + "<!--" + "x" * MAX_PIDF + "-->")
    with pytest.raises(LocationRefused, match="bytes"):
        parse_pidf_lo(doc)


def test_given_a_deep_document_when_parsed_then_refused() -> None:
    """Depth is bounded (a parser's stack is not the caller's to fill)."""
    deep = "<x>" * 40 + "</x>" * 40
    with pytest.raises(LocationRefused, match="deep"):
        parse_pidf_lo(pidf(point("-6.2 106.8") + deep))


def test_given_a_hostile_method_when_parsed_then_the_method_is_dropped() -> None:
    """A method that is not a short plain word is not kept (the location is)."""
    loc = parse_pidf_lo(pidf(point("1 2"), method="<b>x</b>".replace("<", "&lt;")))
    assert (loc.lat, loc.lon, loc.method) == (1.0, 2.0, None)


# ---- HEP and the INVITE ---------------------------------------------------------------------

def test_given_asterisks_hep_copy_of_an_invite_when_read_then_call_id_and_location() -> None:
    """A HEP v3 packet as Asterisk 22 sent it (captured): its INVITE's PIDF-LO part, named by
    the Geolocation header's cid:, gives the location; the Call-ID joins it to the call."""
    packet = decode_hep((DATA / "asterisk22-invite-pidf.hep").read_bytes())
    assert (packet.capture_id, packet.protocol) == (112, 1)
    call_id, loc = invite_location(packet.payload)  # type: ignore[misc]
    assert call_id == "E8n2y8bs7Fj33.1fWrpBJN7Lv.I17Mgl"
    assert (loc.lat, loc.lon, loc.method) == (-6.2088, 106.8456, "GPS")


@pytest.mark.parametrize("cut", [3, 5, 7, 20, 100])
def test_given_a_cut_hep_packet_when_decoded_then_refused(cut: int) -> None:
    """A packet shorter than it says, or with a chunk running past its end, is refused."""
    data = (DATA / "asterisk22-invite-pidf.hep").read_bytes()
    with pytest.raises(LocationRefused):
        decode_hep(data[:cut])
    with pytest.raises(LocationRefused):
        decode_hep(data[:6] + struct.pack("!HHH", 0, 0x0F, 60000) + data[12:])


def invite(headers: str, body: bytes) -> bytes:
    return (f"INVITE sip:112@127.0.0.1 SIP/2.0\r\nCall-ID: abc-1\r\n{headers}"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def multipart(cid: str, content_type: str, content: bytes) -> bytes:
    return (b"--B\r\nContent-ID: <" + cid.encode() + b">\r\nContent-Type: "
            + content_type.encode() + b"\r\n\r\n" + content
            + b"\r\n--B\r\nContent-Type: application/sdp\r\n\r\nv=0\r\n--B--\r\n")


def test_given_an_invite_without_geolocation_when_read_then_none() -> None:
    """Most INVITEs carry no location: nothing, and no error."""
    assert invite_location(invite("", b"v=0\r\n")) is None
    assert invite_location(b"SIP/2.0 200 OK\r\n\r\n") is None


def test_given_a_location_by_reference_when_read_then_none() -> None:
    """An http: location URI is not fetched (the server never goes where a caller says)."""
    msg = invite("Geolocation: <https://attacker.example/loc>\r\n", b"")
    assert invite_location(msg) is None


def test_given_a_compact_form_invite_when_read_then_the_location() -> None:
    """Compact header names (i, c) and a folded Geolocation header are SIP too."""
    body = multipart("loc@x", "application/pidf+xml", pidf(point("1.5 2.5")))
    msg = (b"INVITE sip:112@h SIP/2.0\r\ni: cid-2\r\nGeolocation:\r\n <cid:loc@x>\r\n"
           b"c: multipart/mixed;boundary=B\r\n\r\n" + body)
    assert invite_location(msg) == ("cid-2", SipLocation(1.5, 2.5, None, "GPS", dt.datetime(
        2026, 12, 7, 10, 0, tzinfo=dt.UTC)))


@pytest.mark.parametrize("cid,ctype", [("other@x", "application/pidf+xml"),
                                       ("loc@x", "text/html")])
def test_given_a_geolocation_pointing_nowhere_good_when_read_then_refused(cid: str,
                                                                          ctype: str) -> None:
    """The cid: must name a part, and that part must be PIDF-LO."""
    body = multipart(cid, ctype, pidf(point("1 2")))
    msg = invite("Geolocation: <cid:loc@x>\r\nContent-Type: multipart/mixed;boundary=B\r\n",
                 body)
    with pytest.raises(LocationRefused):
        invite_location(msg)


def test_given_a_hostile_call_id_when_read_then_refused() -> None:
    """The Call-ID becomes a lookup key: only URI characters pass."""
    body = multipart("loc@x", "application/pidf+xml", pidf(point("1 2")))
    msg = invite("Geolocation: <cid:loc@x>\r\nContent-Type: multipart/mixed;boundary=B\r\n",
                 body).replace(b"Call-ID: abc-1", b"Call-ID: a\"b<script>")
    with pytest.raises(LocationRefused, match="Call-ID"):
        invite_location(msg)
