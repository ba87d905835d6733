"""JSON errors of the API: every refusal is ``{"error": code, "reason": text}``.

``code`` is a stable machine-readable word a client can branch on; ``reason`` says in plain
words what was wrong (which field, which limit), for the person reading the logs.

The features refuse in their own words (:mod:`dispatcher.alerts.errors`, the hotline's
``InvalidInput``, the PBX's ``AMINotConnected``...); :data:`HTTP_REFUSALS` is the one place
that says which HTTP status each of them is, and :func:`api_error` applies it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from dispatcher.alerts import errors as alerts
from dispatcher.console import desk_actions
from dispatcher.console import incidents as console_case
from dispatcher.console import recordings as console_recordings
from dispatcher.console import spy as console_spy
from dispatcher.console.actions import NotNow, UnknownAction, UnknownAgency
from dispatcher.console.calls import NotYourCall
from dispatcher.console.location import BadLinkedid
from dispatcher.hotline.service import InvalidInput, NoWayBack
from pbx.ami.errors import AMIActionError, AMINotConnected

__all__ = ["HTTP_REFUSALS", "ApiError", "Refusal", "api_error", "error_body", "json_body"]


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


@dataclass(frozen=True)
class Refusal:
    """How one kind of refusal is answered: its status, and its code, reason and headers
    where the error does not carry its own (None: the error's ``code`` / its message)."""

    status: int
    code: str | None = None
    reason: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


# Every feature error the API answers, by class (a subclass without a row of its own is
# answered as its nearest listed base). An error not listed is a failure: logged, 500.
HTTP_REFUSALS: dict[type[Exception], Refusal] = {
    alerts.MalformedBody: Refusal(400),
    alerts.BadCredentials: Refusal(401, headers={"WWW-Authenticate": 'Bearer realm="siaga"'}),
    alerts.CredentialsRevoked: Refusal(401),
    alerts.NotAllowed: Refusal(403),
    alerts.NotFound: Refusal(404),
    alerts.TransitionRefused: Refusal(409),
    alerts.EnrolmentLinkSpent: Refusal(410),
    alerts.BodyTooLarge: Refusal(413),
    alerts.InvalidField: Refusal(422),
    alerts.RateLimited: Refusal(429),
    alerts.StorageUnavailable: Refusal(503),
    InvalidInput: Refusal(422, "invalid_field"),
    NoWayBack: Refusal(409, "no_way_back"),
    AMIActionError: Refusal(502, "pbx_refused"),
    desk_actions.UnknownAction: Refusal(422, "invalid_field"),
    desk_actions.NoSuchCallback: Refusal(404, "not_found"),
    desk_actions.CallbackNotOwed: Refusal(409, "not_owed"),
    AMINotConnected: Refusal(503, "pbx_unavailable", "the PBX is not connected; try again"),
    NotYourCall: Refusal(403, "not_your_call"),
    BadLinkedid: Refusal(400, "bad_linkedid"),
    console_case.InvalidCaseInput: Refusal(422, "invalid_field"),
    console_case.NoSuchCall: Refusal(404, "no_such_call"),
    console_case.NoIncident: Refusal(404, "no_incident"),
    console_case.CaseConflict: Refusal(409, "incident_conflict"),
    UnknownAction: Refusal(400, "unknown_action"),
    UnknownAgency: Refusal(422, "unknown_agency"),
    NotNow: Refusal(409, "not_now"),
    console_spy.SpyRefused: Refusal(422, "invalid_field"),
    console_spy.NotASupervisor: Refusal(403, "not_a_supervisor"),
    console_spy.UnknownDesk: Refusal(404, "unknown_desk"),
    console_spy.NothingToSpyOn: Refusal(409, "no_call"),
    console_spy.PhoneAway: Refusal(409, "phone_unavailable"),
    console_recordings.NoRecording: Refusal(404, "no_recording"),
}


def api_error(error: BaseException) -> ApiError | None:
    """The HTTP answer to a feature's refusal (:data:`HTTP_REFUSALS`), or None when
    ``error`` is no refusal the API knows (a failure: the caller logs it and answers 500).
    An ``ApiError`` (the API's own refusals) is its own answer."""
    if isinstance(error, ApiError):
        return error
    for cls in type(error).__mro__:
        refusal = HTTP_REFUSALS.get(cls)
        if refusal is not None:
            break
    else:
        return None
    headers = dict(refusal.headers)
    retry_after = getattr(error, "retry_after", None)
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    own = error if isinstance(error, alerts.AlertsError) else None
    code = refusal.code or (own.code if own is not None else "refused")
    reason = refusal.reason or (own.reason if own is not None else str(error))
    return ApiError(refusal.status, code, reason, headers)
