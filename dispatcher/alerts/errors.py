"""The alerts feature's refusals, in its own words: what was wrong, never how HTTP says it.

Each refusal carries a stable ``code`` (a word a client can branch on, e.g. ``missing_field``)
and a ``reason`` in plain words (which field, which limit). Its class says what kind of
refusal it is; ``dispatcher.api.errors`` maps each class to an HTTP status in one table, so
the feature stays usable from anything (the API, the command line, tests) and the status
codes live in the layer that speaks HTTP.
"""

from __future__ import annotations

__all__ = [
    "AlertsError",
    "BadCredentials",
    "BodyTooLarge",
    "CredentialsRevoked",
    "EnrolmentLinkSpent",
    "InvalidField",
    "MalformedBody",
    "NotAllowed",
    "NotFound",
    "RateLimited",
    "StorageUnavailable",
    "TransitionRefused",
]


class AlertsError(Exception):
    """A refusal of the alerts feature: ``code`` (stable word) and ``reason`` (plain words).

    ``retry_after`` is the whole seconds after which trying again may succeed, when the
    refusal is one that passes (a rate limit, the database away), else None.
    """

    def __init__(self, code: str, reason: str, retry_after: int | None = None) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.retry_after = retry_after


class MalformedBody(AlertsError):
    """The body is not one JSON object in UTF-8 (nothing in it could be read)."""


class BodyTooLarge(AlertsError):
    """The body is over the size the feature reads."""


class InvalidField(AlertsError):
    """A field is missing, unknown, of the wrong type, out of range or too long."""


class BadCredentials(AlertsError):
    """The request does not prove it comes from an enrolled device (missing, malformed or
    wrong token or signature, a timestamp outside the window, a replayed signature)."""


class CredentialsRevoked(AlertsError):
    """The device's credentials changed or went away between the check and the commit."""


class NotAllowed(AlertsError):
    """Who asked is known, and may not do this (a button posting an alert, a wrong
    enrolment code)."""


class NotFound(AlertsError):
    """No such alert (for this device) or incident."""


class TransitionRefused(AlertsError):
    """The incident's state does not allow this input."""


class EnrolmentLinkSpent(AlertsError):
    """The one-time enrolment link was used already, or has expired: it will never work."""


class RateLimited(AlertsError):
    """Too many requests from this device or address; ``retry_after`` says when to retry."""


class StorageUnavailable(AlertsError):
    """The database did not take the change: nothing was stored, retrying is safe."""
