"""The AMI wire protocol without I/O: bytes in, messages out; actions in, bytes out.

AMI is line based: ``Key: Value`` lines ending in CR LF, a message ending with an empty line.
A connection opens with a one-line banner (``Asterisk Call Manager/11.0.0``). Responses to
``Command`` carry the CLI output as repeated ``Output:`` lines (Asterisk 14 and newer), or, on
older Asterisks, as raw text after ``Response: Follows`` up to ``--END COMMAND--``; both come
out of :class:`AMIParser` as :attr:`Message.output`.

Nothing here knows about sockets or reactors: :class:`AMIParser` is fed whatever bytes arrived
(any split, down to one byte at a time, gives the same messages) and
:func:`serialize_action` returns the bytes to write. Limits on line length and message size are
class attributes, like Twisted's ``LineReceiver.MAX_LENGTH``; a message over a limit is skipped
up to the next message boundary and reported as :class:`Oversized`, so one runaway message
never takes the rest of the stream with it.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

__all__ = [
    "AMIInjectionError",
    "AMIParser",
    "BANNER_PREFIX",
    "IDENTITY_HEADERS",
    "Message",
    "Oversized",
    "check_value",
    "serialize_action",
]

BANNER_PREFIX = "Asterisk Call Manager/"
_BANNER_PREFIX_B = BANNER_PREFIX.encode()
_EOM = b"\r\n\r\n"
_EOL = "\r\n"
_FOLLOWS = b"Response: Follows"
_END_COMMAND = "--END COMMAND--"
# Headers the legacy ``Response: Follows`` format puts before the raw output.
_FOLLOWS_HEADERS = frozenset(("Response", "Privilege", "ActionID", "Message"))
_FORBIDDEN = ("\r", "\n", "\0")
#: Headers that say which event, channel, call, bridge or action a message is about.
IDENTITY_HEADERS = frozenset({
    "Event", "UserEvent", "Response", "ActionID", "Channel", "Uniqueid", "Linkedid",
    "DestChannel", "DestUniqueid", "DestLinkedid", "BridgeUniqueid", "Queue", "Interface",
})


class AMIInjectionError(ValueError):
    """A key or value bound for AMI holds CR, LF or NUL, which would smuggle in extra headers
    or a whole extra action. Nothing was written."""


class Message:
    """One AMI message: a response, an event or the connection banner.

    ``fields`` keeps the headers as Asterisk sent them (first value when a key repeats);
    ``multi`` holds every value of the keys that repeat (``ChanVariable``, ``Variable``...);
    ``output`` holds command output lines; ``unparsed`` holds lines that were not
    ``Key: Value`` (kept, so a caller can log them rather than lose them silently).
    """

    # Most messages have only kind, name and fields: the rest defaults at class level and
    # lands in a lazily created instance dict when present (the parser makes ~10^5/s).
    __slots__ = ("kind", "name", "fields", "__dict__")

    BANNER = "banner"
    RESPONSE = "response"
    EVENT = "event"
    UNKNOWN = "unknown"

    output: list[str] | None = None
    multi: dict[str, list[str]] | None = None
    unparsed: tuple[str, ...] = ()

    def __init__(
        self,
        kind: str,
        name: str,
        fields: dict[str, str],
        output: list[str] | None = None,
        multi: dict[str, list[str]] | None = None,
        unparsed: tuple[str, ...] = (),
    ) -> None:
        self.kind = kind
        self.name = name
        self.fields = fields
        if output is not None:
            self.output = output
        if multi is not None:
            self.multi = multi
        if unparsed:
            self.unparsed = unparsed

    @property
    def ambiguous(self) -> list[str]:
        """Headers naming what the message is about (event, channel, call, action) that
        appear more than once. Asterisk never repeats them; a value holding CR LF (a caller
        ID Asterisk did not escape) can, and then no one can tell which value is real."""
        if not self.multi:
            return []
        return sorted(k for k in self.multi if k in IDENTITY_HEADERS)

    @property
    def action_id(self) -> str | None:
        """The ``ActionID`` this message answers, if any."""
        return self.fields.get("ActionID")

    def get(self, key: str, default: str = "") -> str:
        """A header's (first) value, or ``default``."""
        return self.fields.get(key, default)

    def get_all(self, key: str) -> list[str]:
        """Every value of a header, in order (empty if absent)."""
        if self.multi and key in self.multi:
            return list(self.multi[key])
        value = self.fields.get(key)
        return [] if value is None else [value]

    def __getitem__(self, key: str) -> str:
        return self.fields[key]

    def __contains__(self, key: object) -> bool:
        return key in self.fields

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Message):
            return NotImplemented
        return (
            self.kind == other.kind
            and self.name == other.name
            and self.fields == other.fields
            and (self.output or None) == (other.output or None)
            and (self.multi or None) == (other.multi or None)
            and self.unparsed == other.unparsed
        )

    __hash__ = None  # type: ignore[assignment]  # mutable, compared by value

    def __repr__(self) -> str:
        return f"<Message {self.kind} {self.name!r} {self.fields!r}>"


@dataclass(frozen=True)
class Oversized:
    """A message skipped because it broke :attr:`AMIParser.MAX_LINE_LENGTH` or
    :attr:`AMIParser.MAX_MESSAGE_SIZE`.

    ``head`` is the start of the message (at most 200 characters) and ``action_id`` its
    ``ActionID`` if one was seen there, so the action waiting for it can be failed.
    """

    limit: str
    head: str
    action_id: str | None

    kind = "oversized"  # class constant, so routing can test .kind on anything parsed


def _decode(data: bytes) -> str:
    # Asterisk sends UTF-8 but passes through whatever bytes a caller ID or a CLI line holds;
    # a bad byte becomes U+FFFD instead of killing the connection. ASCII bytes are never
    # swallowed by a bad sequence, so decoding before splitting on CR LF is safe.
    return data.decode("utf-8", "replace")


def _parse_lines(lines: list[str]) -> Message | None:
    """Build a message from its header lines (the slow, general path)."""
    fields: dict[str, str] = {}
    multi: dict[str, list[str]] | None = None
    output: list[str] | None = None
    unparsed: list[str] = []
    for line in lines:
        # The key ends at the first ": " (as on the fast path); "Key:" is an empty value.
        key, sep, value = line.partition(": ")
        if not sep:
            key, sep, value = line.partition(":")
        if not sep or not key:
            if line:
                unparsed.append(line)
            continue
        if key == "Output":
            if output is None:
                output = []
            output.append(value)
            continue
        if key in fields:
            if multi is None:
                multi = {}
            multi.setdefault(key, [fields[key]]).append(value)
        else:
            fields[key] = value
    if not fields and not unparsed and output is None:
        return None  # nothing but empty lines
    return _classify(fields, output, multi, tuple(unparsed))


def _classify(
    fields: dict[str, str],
    output: list[str] | None = None,
    multi: dict[str, list[str]] | None = None,
    unparsed: tuple[str, ...] = (),
) -> Message:
    name = fields.get("Event")
    if name is not None:
        return Message(Message.EVENT, name, fields, output, multi, unparsed)
    name = fields.get("Response")
    if name is not None:
        return Message(Message.RESPONSE, name, fields, output, multi, unparsed)
    return Message(Message.UNKNOWN, "", fields, output, multi, unparsed)


_SEPARATOR = itertools.repeat(": ")
_ONCE = itertools.repeat(1)


def _join_follows(chunks: list[str]) -> list[str]:
    """Glue back a legacy command response that empty lines inside its output cut apart."""
    joined: list[str] = []
    i, n = 0, len(chunks)
    while i < n:
        chunk = chunks[i]
        i += 1
        if chunk.lstrip("\r\n").startswith("Response: Follows"):
            parts = [chunk]
            while _END_COMMAND not in parts[-1] and i < n:
                parts.append(chunks[i])
                i += 1
            chunk = "\r\n\r\n".join(parts)
        joined.append(chunk)
    return joined


def _parse_follows(text: str) -> Message:
    """A legacy ``Response: Follows`` command response: headers, raw output, end marker."""
    body = text
    end = body.rfind(_END_COMMAND)
    if end >= 0:
        body = body[:end]
    lines = body.replace("\r\n", "\n").split("\n")
    head: list[str] = []
    index = 0
    for index, line in enumerate(lines):  # noqa: B007 -- index is used after the loop
        key, sep, _ = line.partition(":")
        if sep and key in _FOLLOWS_HEADERS:
            head.append(line)
        else:
            break
    else:
        index = len(lines)
    message = _parse_lines(head) or Message(Message.UNKNOWN, "", {})
    out = lines[index:]
    while out and not out[-1]:
        out.pop()
    message.output = out
    return message


class AMIParser:
    """Turns an AMI byte stream into :class:`Message` (and :class:`Oversized`) items.

    ``feed`` may be called with any slicing of the stream; a message is returned once its
    terminating empty line has arrived. The limits are class attributes so a subclass or an
    instance can tighten them.
    """

    #: Longest accepted line, in bytes, without its CR LF.
    MAX_LINE_LENGTH = 64 * 1024
    #: Largest accepted message, in bytes (command output of a busy system fits easily).
    MAX_MESSAGE_SIZE = 4 * 1024 * 1024

    def __init__(self) -> None:
        self._buffer = b""
        self._want_banner = True
        self._skipping = False
        self._tail = b""  # last bytes seen while skipping: an end marker may straddle reads
        #: The manager protocol version from the banner (``"11.0.0"`` for Asterisk 22).
        self.version: str | None = None

    def feed(self, data: bytes) -> list[Message | Oversized]:
        """Take the next bytes of the stream; return the messages they completed, in order."""
        buf = self._buffer + data if self._buffer else data
        out: list[Message | Oversized] = []
        if self._want_banner:
            buf = self._take_banner(buf, out)
            if self._want_banner:
                self._buffer = buf
                return out
        if self._skipping:
            buf = self._skip(buf)
            if self._skipping:
                self._buffer = b""
                return out
        end = buf.rfind(_EOM)
        if end >= 0:
            complete = buf[:end]
            buf = buf[end + 4:]
            if _FOLLOWS in complete:
                # A legacy command response may hold empty lines; cut it at its end marker.
                complete, buf = self._cut_follows(complete, buf)
            if len(complete) > self.MAX_LINE_LENGTH and max(
                map(len, complete.split(_EOM))
            ) > self.MAX_LINE_LENGTH:
                # Only a message longer than a line can hold a line over the limit.
                self._parse_checked(complete, out)
            elif complete:
                self._parse_block(_decode(complete), out)
        if buf and self._over_limit(buf, out):
            # The unfinished message already breaks a limit: drop it up to its end.
            self._skipping = True
            self._tail = buf[-3:]
            buf = b""
        self._buffer = buf
        return out

    # -- internals -----------------------------------------------------------------------

    def _take_banner(self, buf: bytes, out: list[Message | Oversized]) -> bytes:
        eol = buf.find(b"\r\n")
        if eol < 0:
            prefix = buf[: len(_BANNER_PREFIX_B)]
            if _BANNER_PREFIX_B.startswith(prefix) and len(buf) <= self.MAX_LINE_LENGTH:
                return buf  # could still be the banner: wait for its end
            self._want_banner = False
            return buf
        self._want_banner = False
        if buf.startswith(_BANNER_PREFIX_B) and eol <= self.MAX_LINE_LENGTH:
            line = _decode(buf[:eol])
            self.version = line[len(BANNER_PREFIX):].strip()
            out.append(Message(Message.BANNER, self.version, {}))
            return buf[eol + 2:]
        return buf

    def _cut_follows(self, complete: bytes, rest: bytes) -> tuple[bytes, bytes]:
        """Re-split ``complete + EOM + rest`` so that no legacy command response is cut at an
        empty line inside its output; an unfinished one goes back to the buffer."""
        blocks = complete.split(_EOM)
        done: list[bytes] = []
        i = 0
        while i < len(blocks):
            block = blocks[i]
            if block.lstrip(b"\r\n").startswith(_FOLLOWS):
                j = i
                while b"--END COMMAND--" not in blocks[j]:
                    j += 1
                    if j == len(blocks):
                        # Its end has not arrived: keep it (and what follows) for later.
                        tail = _EOM.join(blocks[i:]) + _EOM + rest
                        return _EOM.join(done), tail
                done.append(_EOM.join(blocks[i:j + 1]))
                i = j + 1
            else:
                done.append(block)
                i += 1
        return _EOM.join(done), rest

    def _parse_block(self, text: str, out: list[Message | Oversized]) -> None:
        """Parse complete messages separated by empty lines (sizes already checked)."""
        chunks = text.split("\r\n\r\n")
        if "Response: Follows" in text:
            chunks = _join_follows(chunks)
            follows = True
        else:
            follows = False
        append = out.append
        split = str.split
        for chunk in chunks:
            if follows and chunk.lstrip("\r\n").startswith("Response: Follows"):
                append(_parse_follows(chunk.lstrip("\r\n")))
                continue
            lines = chunk.split("\r\n")
            try:
                # Fast path, all in C: every line is "Key: Value" and no key repeats.
                fields = dict(map(split, lines, _SEPARATOR, _ONCE))
            except ValueError:
                # Stray empty lines, lines without "Key: Value", or an empty chunk.
                message = _parse_lines(lines)
                if message is not None:
                    append(message)
                continue
            if len(fields) != len(lines) or "Output" in fields:
                append(_parse_lines(lines))
                continue
            event = fields.get("Event")
            if event is not None:
                append(Message("event", event, fields))
            else:
                append(_classify(fields))

    def _parse_checked(self, complete: bytes, out: list[Message | Oversized]) -> None:
        """Parse messages in a large block, enforcing both limits message by message."""
        pieces = complete.split(_EOM)
        i = 0
        while i < len(pieces):
            piece = pieces[i]
            if piece.lstrip(b"\r\n").startswith(_FOLLOWS):
                j = i
                while j < len(pieces) - 1 and b"--END COMMAND--" not in pieces[j]:
                    j += 1
                piece = _EOM.join(pieces[i:j + 1])
                i = j
            i += 1
            too_long = len(piece) > self.MAX_MESSAGE_SIZE and "message"
            if not too_long and len(piece) > self.MAX_LINE_LENGTH:
                if any(len(line) > self.MAX_LINE_LENGTH for line in piece.split(b"\r\n")):
                    too_long = "line"
            if too_long:
                out.append(self._oversized(piece, too_long))
            else:
                self._parse_block(_decode(piece), out)

    def _over_limit(self, buf: bytes, out: list[Message | Oversized]) -> bool:
        """Report an unfinished message that already breaks a limit.

        Only the unfinished last line is measured here; a long line inside a message that
        later completes is caught by :meth:`_parse_checked`, with the same outcome.
        """
        if len(buf) > self.MAX_MESSAGE_SIZE:
            out.append(self._oversized(buf, "message"))
            return True
        last_eol = buf.rfind(b"\r\n")
        if len(buf) - (last_eol + 2 if last_eol >= 0 else 0) > self.MAX_LINE_LENGTH:
            out.append(self._oversized(buf, "line"))
            return True
        return False

    def _skip(self, buf: bytes) -> bytes:
        """Drop bytes up to and including the next empty line; return what follows it."""
        joined = self._tail + buf
        end = joined.find(_EOM)
        if end < 0:
            self._tail = joined[-3:]
            return b""
        self._skipping = False
        self._tail = b""
        return joined[end + 4:]

    def _oversized(self, data: bytes, limit: str) -> Oversized:
        head = _decode(data[:512])
        action_id = None
        for line in head.split("\r\n")[:-1]:
            if line.startswith("ActionID: "):
                action_id = line[len("ActionID: "):]
                break
        label = (
            f"line longer than {self.MAX_LINE_LENGTH} bytes"
            if limit == "line"
            else f"message larger than {self.MAX_MESSAGE_SIZE} bytes"
        )
        return Oversized(limit=label, head=head[:200], action_id=action_id)


def check_value(value: str, what: str = "value") -> str:
    """Return ``value`` if it may go into an AMI header, else raise :class:`AMIInjectionError`.

    For anything that comes from outside (a caller ID, an HTTP body, an app) before it is
    handed to an action.
    """
    if not isinstance(value, str):
        raise TypeError(f"AMI {what} must be str, not {type(value).__name__}")
    for bad in _FORBIDDEN:
        if bad in value:
            raise AMIInjectionError(f"AMI {what} holds {bad!r}: {value[:80]!r}")
    return value


def serialize_action(
    name: str,
    fields: Mapping[str, object] | Iterable[tuple[str, object]] = (),
    action_id: str | None = None,
) -> bytes:
    """The bytes of one AMI action; raises :class:`AMIInjectionError` and returns nothing
    when any key or value holds CR, LF or NUL.

    ``fields`` is a mapping or a sequence of pairs (pairs allow repeated keys such as
    ``Variable``); a value that is a list or tuple becomes one header per item. ``None``
    values are left out. Numbers are written with ``str()``.
    """
    check_value(name, "action name")
    pairs: list[tuple[str, str]] = [("Action", name)]
    if action_id is not None:
        pairs.append(("ActionID", check_value(str(action_id), "ActionID")))
    items = fields.items() if isinstance(fields, Mapping) else fields
    for key, value in items:
        check_value(key, "key")
        if key.strip() != key or ":" in key or not key:
            raise AMIInjectionError(f"AMI key {key!r} is not a header name")
        if value is None:
            continue
        values = value if isinstance(value, (list, tuple)) else (value,)
        for item in values:
            if isinstance(item, bool):
                text = "true" if item else "false"
            else:
                text = str(item)
            pairs.append((key, check_value(text, f"value of {key}")))
    # Everything was checked before anything is built: a bad value produces no bytes.
    return ("".join(f"{k}: {v}\r\n" for k, v in pairs) + "\r\n").encode("utf-8")
