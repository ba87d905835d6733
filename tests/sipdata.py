"""The SIP torture messages of RFC 4475 (tests/data/sip/): their list, and their octets.

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
