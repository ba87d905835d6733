"""The sans-IO AMI parser and serializer, on traffic recorded from Asterisk 22."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pbx.ami.protocol import (
    AMIInjectionError,
    AMIParser,
    Message,
    Oversized,
    check_value,
    serialize_action,
)

DATA = Path(__file__).resolve().parents[2] / "data" / "ami"
# Recorded by tests/data/ami/capture.py: login, list actions, queue calls between Local
# channels with UTF-8 caller names, command output, a repeated key (TestEvent's State).
SESSION = (DATA / "asterisk22-session.raw").read_bytes()
# The session's first ~9 KB (up to a message end): banner, challenge, login, FullyBooted,
# command output, CoreStatus, EndpointList, QueueStatus lists and the first call's events.
HEAD = SESSION[: SESSION.index(b"\r\n\r\n", 9000) + 4]


def parse_all(*chunks: bytes, parser: AMIParser | None = None) -> list[Message | Oversized]:
    """Feed ``chunks`` in order to one parser; return everything it produced."""
    parser = parser or AMIParser()
    out: list[Message | Oversized] = []
    for chunk in chunks:
        out.extend(parser.feed(chunk))
    return out


def test_given_recorded_session_when_parsed_whole_then_every_message_is_found() -> None:
    """The recording parses into the banner, every response and every event it holds."""
    messages = parse_all(SESSION)
    assert messages[0] == Message("banner", "11.0.0", {})
    events = [m for m in messages if m.kind == "event"]
    responses = [m for m in messages if m.kind == "response"]
    # Counted independently: blocks between empty lines, by their first header.
    blocks = SESSION.split(b"\r\n", 1)[1].split(b"\r\n\r\n")
    assert len(events) == sum(b.startswith(b"Event: ") for b in blocks)
    assert len(responses) == sum(b.startswith(b"Response: ") for b in blocks)
    assert len(messages) == 1 + len(events) + len(responses)
    assert all(not m.unparsed for m in messages)
    names = {m.name for m in events}
    assert {"FullyBooted", "Newchannel", "Hangup", "QueueCallerJoin", "BridgeEnter"} <= names


def test_given_recorded_head_when_split_at_every_byte_then_messages_are_the_same() -> None:
    """Splitting the stream in two at any byte changes nothing in what comes out."""
    whole = parse_all(HEAD)
    assert len(whole) > 30
    for cut in range(len(HEAD) + 1):
        assert parse_all(HEAD[:cut], HEAD[cut:]) == whole, f"split at byte {cut}"


def test_given_recorded_session_when_fed_one_byte_at_a_time_then_messages_are_the_same() -> None:
    """The worst fragmentation (one byte per read) still yields the same messages."""
    whole = parse_all(SESSION)
    parser = AMIParser()
    out: list[Message | Oversized] = []
    for i in range(len(SESSION)):
        out.extend(parser.feed(SESSION[i : i + 1]))
    assert out == whole


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(0, len(SESSION)), max_size=40))
def test_given_recorded_session_when_split_anywhere_many_times_then_same(cuts: list[int]) -> None:
    """Any number of splits at any places gives the same messages as one read."""
    points = sorted(set(cuts))
    chunks = [SESSION[a:b] for a, b in zip([0, *points], [*points, len(SESSION)], strict=True)]
    assert parse_all(*chunks) == parse_all(SESSION)


def test_given_command_response_of_asterisk_22_then_output_lines_are_collected() -> None:
    """Asterisk 22 answers ``Command`` with ``Output:`` lines, kept in order (empty ones too)."""
    data = (
        b"Response: Success\r\nActionID: c1\r\nMessage: Command output follows\r\n"
        b"Output: Channel   Location\r\nOutput: \r\nOutput: 0 active channels\r\n\r\n"
    )
    [message] = parse_all(data)
    assert message.kind == "response" and message.action_id == "c1"
    assert message.output == ["Channel   Location", "", "0 active channels"]
    assert "Output" not in message.fields


def test_given_recorded_command_output_then_it_names_asterisk_22() -> None:
    """The recorded ``core show version`` answer carries the version in its output."""
    [version] = [m for m in parse_all(SESSION) if m.output and "Asterisk 22" in m.output[0]]
    assert version.get("Message") == "Command output follows"


LEGACY = (
    b"Response: Follows\r\nPrivilege: Command\r\nActionID: old-1\r\n"
    b"Name/username  Host\nlisted: yes\n\n\r\n\r\nafter a blank line\n--END COMMAND--\r\n\r\n"
    b"Event: Ping\r\nActionID: x\r\n\r\n"
)


def test_given_legacy_follows_response_when_split_anywhere_then_output_is_whole() -> None:
    """Older Asterisks end command output with ``--END COMMAND--``; empty lines inside it
    (even CR LF CR LF) do not end the message, at any split."""
    whole = parse_all(LEGACY)
    assert [m.kind for m in whole] == ["response", "event"]
    follows = whole[0]
    assert follows.name == "Follows" and follows.action_id == "old-1"
    assert follows.output == [
        "Name/username  Host",
        "listed: yes",
        "",
        "",
        "",
        "after a blank line",
    ]
    for cut in range(len(LEGACY) + 1):
        assert parse_all(LEGACY[:cut], LEGACY[cut:]) == whole, f"split at byte {cut}"


def test_given_non_utf8_bytes_then_replaced_and_the_stream_goes_on() -> None:
    """Bytes that are not UTF-8 become U+FFFD; nothing raises, later messages are intact."""
    data = (
        b"Event: NewCallerid\r\nCallerIDName: Bu\xffdi \xc3\x28 \xe2\x82\r\n\r\n"
        b"Event: Hangup\r\nUniqueid: 1.2\r\n\r\n"
    )
    first, second = parse_all(data)
    assert first.get("CallerIDName") == "Bu\ufffddi \ufffd( \ufffd"
    assert second == Message("event", "Hangup", {"Event": "Hangup", "Uniqueid": "1.2"})


def test_given_utf8_character_split_across_reads_then_it_is_decoded_whole() -> None:
    """A multi-byte character cut between two reads is not mangled."""
    data = "Event: NewCallerid\r\nCallerIDName: Warga Ñandú 😀\r\n\r\n".encode()
    emoji_at = data.index("😀".encode())
    for cut in range(emoji_at - 8, emoji_at + 5):
        [message] = parse_all(data[:cut], data[cut:])
        assert message.get("CallerIDName") == "Warga Ñandú 😀"


def test_given_lines_without_key_then_message_is_kept_and_lines_reported() -> None:
    """A line that is not ``Key: Value`` does not lose the message; it is reported."""
    data = b"Event: VarSet\r\nno colon here\r\n: no key\r\nVariable: X\r\nValue:\r\n\r\n"
    [message] = parse_all(data)
    assert message.name == "VarSet"
    assert message.fields == {"Event": "VarSet", "Variable": "X", "Value": ""}
    assert message.unparsed == ("no colon here", ": no key")


def test_given_message_with_neither_event_nor_response_then_kind_is_unknown() -> None:
    """Garbage between messages comes out as an 'unknown' message, not an exception."""
    [garbage, event] = parse_all(b"hello\r\n\r\nEvent: Ping\r\n\r\n")
    assert garbage.kind == "unknown" and garbage.unparsed == ("hello",)
    assert event.name == "Ping"


def test_given_repeated_keys_then_all_values_are_kept() -> None:
    """Keys such as ChanVariable repeat; the first is in fields, all in get_all()."""
    [message] = parse_all(
        b"Event: Newexten\r\nChanVariable: A=1\r\nChanVariable: B=2\r\nUniqueid: 9\r\n\r\n"
    )
    assert message.get("ChanVariable") == "A=1"
    assert message.get_all("ChanVariable") == ["A=1", "B=2"]
    assert message.get_all("Uniqueid") == ["9"]
    assert message.get_all("Missing") == []


def test_given_stream_without_banner_then_messages_still_parse() -> None:
    """A stream picked up mid-way (no banner) parses the same messages."""
    body = SESSION[SESSION.index(b"\r\n") + 2 :]
    assert parse_all(body) == parse_all(SESSION)[1:]


def test_given_stray_empty_lines_between_messages_then_they_are_ignored() -> None:
    """Extra CR LF between messages is not a message, whatever the split."""
    data = b"Event: A\r\n\r\n\r\n\r\nEvent: B\r\n\r\n\r\nEvent: C\r\n\r\n"
    whole = parse_all(data)
    assert [m.name for m in whole] == ["A", "B", "C"]
    for cut in range(len(data) + 1):
        assert parse_all(data[:cut], data[cut:]) == whole


class SmallParser(AMIParser):
    """Tight limits so a test can break them with a few bytes."""

    MAX_LINE_LENGTH = 40
    MAX_MESSAGE_SIZE = 200


OVERSIZE = (
    b"Event: Before\r\n\r\n"
    b"Response: Success\r\nActionID: big-line\r\nValue: " + b"x" * 100 + b"\r\n\r\n"
    b"Event: Middle\r\n\r\n"
    b"Response: Success\r\nActionID: big-msg\r\n" + b"Line: 0123456789\r\n" * 20 + b"\r\n"
    b"Event: After\r\nName: \xc3\x91\r\n\r\n"
)


def test_given_oversized_line_or_message_when_split_anywhere_then_skipped_and_reported() -> None:
    """A message over a limit is dropped up to its end and reported with its ActionID; the
    messages around it come through, at any split."""
    whole = parse_all(OVERSIZE, parser=SmallParser())
    kinds = [(type(m).__name__, getattr(m, "name", None) or m.action_id) for m in whole]
    assert kinds == [
        ("Message", "Before"),
        ("Oversized", "big-line"),
        ("Message", "Middle"),
        ("Oversized", "big-msg"),
        ("Message", "After"),
    ]
    assert whole[-1].get("Name") == "Ñ"
    for cut in range(len(OVERSIZE) + 1):
        split = parse_all(OVERSIZE[:cut], OVERSIZE[cut:], parser=SmallParser())
        assert [m for m in split if isinstance(m, Message)] == [
            m for m in whole if isinstance(m, Message)
        ], f"split at byte {cut}"
        assert [m.action_id for m in split if isinstance(m, Oversized)] == ["big-line", "big-msg"]


def test_given_endless_line_then_memory_stays_bounded() -> None:
    """A peer that never ends its line cannot make the parser buffer without limit."""
    parser = SmallParser()
    reported = parser.feed(b"Event: Flood\r\nData: ")
    for _ in range(1000):
        reported += parser.feed(b"y" * 1000)
        assert len(parser._buffer) <= SmallParser.MAX_MESSAGE_SIZE
    assert [type(m) for m in reported] == [Oversized]
    after = parser.feed(b"\r\n\r\nEvent: Next\r\n\r\n")
    assert after == [Message("event", "Next", {"Event": "Next"})]


def test_given_fields_when_serialized_then_bytes_are_an_ami_action() -> None:
    """Mapping or pairs, lists repeat the key, None is left out, bools are true/false."""
    data = serialize_action(
        "Originate",
        [
            ("Channel", "Local/100@callers"),
            ("Variable", ["A=1", "B=Ñ"]),
            ("Account", None),
            ("Async", True),
            ("Timeout", 30000),
        ],
        action_id="a-1",
    )
    assert (
        data
        == (
            "Action: Originate\r\nActionID: a-1\r\nChannel: Local/100@callers\r\n"
            "Variable: A=1\r\nVariable: B=Ñ\r\nAsync: true\r\nTimeout: 30000\r\n\r\n"
        ).encode()
    )


@pytest.mark.parametrize("bad", ["\r", "\n", "\0", "\r\n", "x\r\nAction: Command"])
@pytest.mark.parametrize("where", ["name", "key", "value", "list item", "action_id"])
def test_given_cr_lf_nul_anywhere_when_serialized_then_refused(bad: str, where: str) -> None:
    """CR, LF or NUL in the name, a key, a value or the ActionID raise AMIInjectionError."""
    name, fields, action_id = "Setvar", {"Variable": "X", "Value": "ok"}, "id-1"
    if where == "name":
        name = "Setvar" + bad
    elif where == "key":
        fields = {"Variable" + bad: "X"}
    elif where == "value":
        fields = {"Value": "Budi" + bad}
    elif where == "list item":
        fields = {"Variable": ["A=1", "B=" + bad]}
    else:
        action_id = "id" + bad
    with pytest.raises(AMIInjectionError):
        serialize_action(name, fields, action_id)


@pytest.mark.parametrize("key", ["", " Channel", "Chan:nel", "Channel "])
def test_given_key_that_is_not_a_header_name_then_refused(key: str) -> None:
    """Keys that would not read back as themselves (empty, colon, spaces) are refused."""
    with pytest.raises(AMIInjectionError):
        serialize_action("Hangup", {key: "PJSIP/op1-00000001"})


def test_check_value_accepts_clean_text_and_refuses_control_characters() -> None:
    """The helper for outside values returns clean text and refuses CR/LF/NUL and non-str."""
    assert check_value("Warga Ñandú <0812>") == "Warga Ñandú <0812>"
    for bad in ("a\rb", "a\nb", "a\0b"):
        with pytest.raises(AMIInjectionError):
            check_value(bad, "caller name")
    with pytest.raises(TypeError):
        check_value(b"bytes")  # type: ignore[arg-type]


header_key = st.from_regex(r"[A-Za-z][A-Za-z0-9_-]{0,15}", fullmatch=True)
header_value = st.text(st.characters(blacklist_characters="\r\n\0", codec="utf-8"), max_size=40)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(header_key, header_value), max_size=8, unique_by=lambda kv: kv[0]))
def test_property_serialized_action_parses_back_to_the_same_fields(
    pairs: list[tuple[str, str]],
) -> None:
    """Whatever clean keys and values go in, the parser reads the very same ones back."""
    pairs = [(k, v) for k, v in pairs if k not in ("Action", "ActionID", "Output")]
    data = serialize_action("UserEvent", pairs, action_id="p-1")
    [message] = parse_all(data)
    assert message.fields == {"Action": "UserEvent", "ActionID": "p-1", **dict(pairs)}


@settings(max_examples=200, deadline=None)
@given(header_value, st.sampled_from(["\r", "\n", "\0"]), header_value)
def test_property_any_value_with_a_control_character_is_refused(
    before: str, bad: str, after: str
) -> None:
    """Wherever CR, LF or NUL hides in a value, serialization raises and returns nothing."""
    with pytest.raises(AMIInjectionError):
        serialize_action("Setvar", {"Value": before + bad + after}, action_id="p-2")


line_text = st.text(st.characters(blacklist_characters="\r\n", codec="utf-8"), max_size=12)
any_line = st.one_of(
    st.builds(lambda k, v: f"{k}: {v}", st.sampled_from(["Event", "Channel", "Uniqueid",
                                                          "Output", "ActionID", "Response"]),
              line_text),
    st.builds(lambda k, v: f"{k}: {v}", header_key, line_text),
    st.builds(lambda k: f"{k}:", header_key),
    line_text.filter(lambda t: t.strip() != ""),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(any_line, min_size=1, max_size=6), min_size=1, max_size=5),
       st.lists(st.integers(0, 400), max_size=6))
def test_property_fast_and_careful_parsing_agree_at_any_split(
    messages: list[list[str]], cuts: list[int],
) -> None:
    """For any mix of good lines, repeated keys, 'Key:' lines, values holding ': ' and
    garbage, the result is the one of the careful line-by-line reading of each message,
    whatever the split of the stream."""
    from pbx.ami.protocol import _parse_lines

    messages = [m for m in messages if not m[0].startswith("Response: Follows")]
    data = "".join("\r\n".join(m) + "\r\n\r\n" for m in messages).encode()
    expected = [_parse_lines(m) for m in messages]
    expected = [m for m in expected if m is not None]
    points = sorted({c % (len(data) + 1) for c in cuts})
    chunks = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    assert parse_all(b"Asterisk Call Manager/11.0.0\r\n", *chunks) == [
        Message("banner", "11.0.0", {}), *expected]
