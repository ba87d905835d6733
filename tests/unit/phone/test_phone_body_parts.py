"""The parts a phone puts in a multipart INVITE body are checked before anything is sent."""

from __future__ import annotations

import pytest

from pbx.phone.dialing import BodyPart, check_parts


def test_given_good_parts_when_checked_then_their_media_types() -> None:
    """``type/subtype`` tokens and plain headers pass."""
    parts = [BodyPart("application/pidf+xml", "<presence/>", (("Content-ID", "<a@b>"),)),
             BodyPart("text/plain", "hello")]
    assert check_parts(parts) == [("application", "pidf+xml"), ("text", "plain")]


@pytest.mark.parametrize("part", [
    BodyPart("application", "x"),
    BodyPart("application/pidf xml", "x"),
    BodyPart("application/x\r\nX-Injected: 1", "x"),
    BodyPart("text/plain", "x", (("Content-ID", "<a>\r\nX-Injected: 1"),)),
    BodyPart("text/plain", "x", (("Bad Name", "v"),)),
    BodyPart("text/plain", "nul\0here"),
])
def test_given_a_malformed_part_when_checked_then_refused(part: BodyPart) -> None:
    """A content type that is not two tokens, a header with a line break, a NUL: refused."""
    with pytest.raises(ValueError):
        check_parts([part])
