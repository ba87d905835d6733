"""SIP test data: the torture messages of RFC 4475 (tests/data/sip/), their list and their
octets; and the SIPp scenario of one call that hostile-caller tests place (:func:`sipp_call`).

Each message is a file named as the RFC names it (``wsinv.sip`` ...), its text as the RFC
prints it. Two conventions turn the text into the octets sent:

* every line ends in CRLF on the wire (the files use LF, as the RFC's text does);
* ``<hex>..</hex>`` stands for octets that cannot be written as text (control characters,
  raw UTF-8, a binary body part, a trailing space an editor would strip) — the RFC's own
  notation, section 2.2.
"""

from __future__ import annotations

import re
from pathlib import Path

SIP_DATA = Path(__file__).resolve().parent / "data" / "sip"

# The RFC's messages by section: (section, name, title), in the RFC's order.
RFC4475 = (
    ("3.1.1", "wsinv", "A Short Tortuous INVITE"),
    ("3.1.1", "intmeth", "Wide Range of Valid Characters"),
    ("3.1.1", "esc01", "Valid Use of the % Escaping Mechanism"),
    ("3.1.1", "escnull", "Escaped Nulls in URIs"),
    ("3.1.1", "esc02", "Use of % When It Is Not an Escape"),
    ("3.1.1", "lwsdisp", "Message with No LWS between Display Name and <"),
    ("3.1.1", "longreq", "Long Values in Header Fields"),
    ("3.1.1", "dblreq", "Extra Trailing Octets in a UDP Datagram"),
    ("3.1.1", "semiuri", "Semicolon-Separated Parameters in URI User Part"),
    ("3.1.1", "transports", "Varied and Unknown Transport Types"),
    ("3.1.1", "mpart01", "Multipart MIME Message"),
    ("3.1.1", "unreason", "Unusual Reason Phrase"),
    ("3.1.1", "noreason", "Empty Reason Phrase"),
    ("3.1.2", "badinv01", "Extraneous Header Field Separators"),
    ("3.1.2", "clerr", "Content Length Larger Than Message"),
    ("3.1.2", "ncl", "Negative Content-Length"),
    ("3.1.2", "scalar02", "Request Scalar Fields with Overlarge Values"),
    ("3.1.2", "scalarlg", "Response Scalar Fields with Overlarge Values"),
    ("3.1.2", "quotbal", "Unterminated Quoted String in Display Name"),
    ("3.1.2", "ltgtruri", "<> Enclosing Request-URI"),
    ("3.1.2", "lwsruri", "Malformed SIP Request-URI (embedded LWS)"),
    ("3.1.2", "lwsstart", "Multiple SP Separating Request-Line Elements"),
    ("3.1.2", "trws", "SP Characters at End of Request-Line"),
    ("3.1.2", "escruri", "Escaped Headers in SIP Request-URI"),
    ("3.1.2", "baddate", "Invalid Time Zone in Date Header Field"),
    ("3.1.2", "regbadct", "Failure to Enclose name-addr URI in <>"),
    ("3.1.2", "badaspec", "Spaces within addr-spec"),
    ("3.1.2", "baddn", "Non-token Characters in Display Name"),
    ("3.1.2", "badvers", "Unknown Protocol Version"),
    ("3.1.2", "mismatch01", "Start Line and CSeq Method Mismatch"),
    ("3.1.2", "mismatch02", "Unknown Method with CSeq Method Mismatch"),
    ("3.1.2", "bigcode", "Overlarge Response Code"),
    ("3.2", "badbranch", "Missing Transaction Identifier"),
    ("3.3", "insuf", "Missing Required Header Fields"),
    ("3.3", "unkscm", "Request-URI with Unknown Scheme"),
    ("3.3", "novelsc", "Request-URI with Known but Atypical Scheme"),
    ("3.3", "unksm2", "Unknown URI Schemes in Header Fields"),
    ("3.3", "bext01", "Proxy-Require and Require"),
    ("3.3", "invut", "Unknown Content-Type"),
    ("3.3", "regaut01", "Unknown Authorization Scheme"),
    ("3.3", "multi01", "Multiple Values in Single Value Required Fields"),
    ("3.3", "mcl01", "Multiple Content-Length Values"),
    ("3.3", "bcast", "200 OK Response with Broadcast Via Header Field Value"),
    ("3.3", "zeromf", "Max-Forwards of Zero"),
    ("3.3", "cparam01", "REGISTER with a Contact Header Parameter"),
    ("3.3", "cparam02", "REGISTER with a url-parameter"),
    ("3.3", "regescrt", "REGISTER with a URL Escaped Header"),
    ("3.3", "sdp01", "Unacceptable Accept Offering"),
    ("3.4", "inv2543", "INVITE with RFC 2543 Syntax"),
)

NAMES = tuple(name for _, name, _ in RFC4475)

_HEX = re.compile(rb"<hex>([0-9A-Fa-f]*)</hex>")


def message(name: str) -> bytes:
    """The octets of the RFC's message ``name``, as they go on the wire."""
    text = (SIP_DATA / f"{name}.sip").read_bytes().replace(b"\n", b"\r\n")
    return _HEX.sub(lambda m: bytes.fromhex(m.group(1).decode()), text)


# One SIPp call: INVITE [service] with an offer of G.711 A-law, ACK the 200, hold, BYE. The
# From is given whole up to its tag (``{from_}`` ends in ``;tag=``); SIPp's own keywords are
# in [brackets]. The call must be answered (the hotline answers at once).
_CALL_SCENARIO = """<?xml version="1.0" encoding="UTF-8" ?>
<scenario name="{name}">
  <send retrans="500">
    <![CDATA[
      INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: {from_}[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:{user}@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=- 53655765 2353687637 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 8
      a=rtpmap:8 PCMA/8000
    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="183" optional="true"/>
  <recv response="200" rrs="true"/>
  <send>
    <![CDATA[
      ACK [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: {from_}[pid]SIPpTag00[call_number]
      [last_To:]
      [routes]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Contact: <sip:{user}@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
  <pause milliseconds="{hold_ms}"/>
  <send retrans="500">
    <![CDATA[
      BYE [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: {from_}[pid]SIPpTag00[call_number]
      [last_To:]
      [routes]
      Call-ID: [call_id]
      CSeq: 2 BYE
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
  <recv response="200" crlf="true"/>
</scenario>
"""


def sipp_call(user: str, hold_ms: int, display: str | None = None, bare: bool = False,
              name: str = "one call") -> bytes:
    """A SIPp scenario (UTF-8 XML) of one call from ``user``: INVITE, ACK, ``hold_ms`` of
    call, BYE.

    The From is ``<sip:user@...>``; with ``display`` that display name is put before it, sent
    as given (quotes and all); ``bare`` sends the URI alone, without angle brackets (RFC 3261
    allows it when there is no display name). ``user`` may hold SIPp keywords, e.g.
    ``5550[call_number]`` for a new number on every call of a run.
    """
    if bare and display is not None:
        raise ValueError("a bare From URI has no display name")
    uri = f"sip:{user}@[local_ip]:[local_port]"
    from_ = (f"{uri};tag=" if bare else f"<{uri}>;tag=" if display is None
             else f"{display} <{uri}>;tag=")
    return _CALL_SCENARIO.format(name=name, from_=from_, user=user,
                                 hold_ms=hold_ms).encode()
