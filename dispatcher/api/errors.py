"""JSON errors of the API: every refusal is ``{"error": code, "reason": text}``.

``code`` is a stable machine-readable word a client can branch on; ``reason`` says in plain
words what was wrong (which field, which limit), for the person reading the logs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

__all__ = ["ApiError", "error_body", "json_body"]


class ApiError(Exception):
    """A refusal with its HTTP status, error code and reason (raised anywhere, sent as JSON)."""

    def __init__(self, status: int, code: str, reason: str,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(f"{status} {code}: {reason}")
        self.status = status
        self.code = code
        self.reason = reason
        self.headers = dict(headers or {})

    def body(self) -> bytes:
        """The JSON body sent to the client."""
        return error_body(self.code, self.reason)


def json_body(document: object) -> bytes:
    """Compact UTF-8 JSON, the form every response body of the API takes."""
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def error_body(code: str, reason: str) -> bytes:
    """The JSON body of an error."""
    return json_body({"error": code, "reason": reason})
