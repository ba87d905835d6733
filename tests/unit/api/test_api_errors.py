"""The one table that turns the features' refusals into HTTP (``dispatcher.api.errors``)."""

from __future__ import annotations

import inspect
import json

from dispatcher.alerts import errors as alerts_errors
from dispatcher.api.errors import HTTP_REFUSALS, ApiError, api_error
from dispatcher.hotline.service import InvalidInput, NoWayBack
from pbx.ami.errors import AMIActionError, AMINotConnected
from pbx.ami.protocol import Message


def test_given_every_refusal_of_the_alerts_when_mapped_then_each_has_its_own_row() -> None:
    """A refusal class added to the alerts without a row would be answered as its base (or
    a 500): every one is listed, so its status is a decision, not an accident."""
    refusals = [cls for _, cls in inspect.getmembers(alerts_errors, inspect.isclass)
                if issubclass(cls, alerts_errors.AlertsError)
                and cls is not alerts_errors.AlertsError]
    assert len(refusals) >= 10
    assert [cls.__name__ for cls in refusals if cls not in HTTP_REFUSALS] == []


def test_given_an_alerts_refusal_when_mapped_then_its_code_reason_and_retry_are_kept() -> None:
    """The feature's code and reason become the JSON body; a wait becomes Retry-After; a
    credentials refusal carries the Bearer challenge, a revoked device's does not."""
    limited = api_error(alerts_errors.RateLimited("rate_limited", "slow down", retry_after=3))
    assert limited is not None
    assert (limited.status, limited.headers) == (429, {"Retry-After": "3"})
    assert json.loads(limited.body()) == {"error": "rate_limited", "reason": "slow down"}
    bad = api_error(alerts_errors.BadCredentials("bad_timestamp", "too old"))
    assert bad is not None and bad.status == 401
    assert bad.headers == {"WWW-Authenticate": 'Bearer realm="siaga"'}
    revoked = api_error(alerts_errors.CredentialsRevoked("invalid_credentials", "unknown"))
    assert revoked is not None and (revoked.status, revoked.headers) == (401, {})
    field = api_error(alerts_errors.InvalidField("out_of_range", "lat must be ..."))
    assert field is not None and (field.status, field.code) == (422, "out_of_range")


def test_given_the_hotline_and_pbx_refusals_when_mapped_then_their_codes_are_the_apis() -> None:
    """Errors that carry no code of their own get the table's; the reason is their message
    unless the table words it (the PBX being away says nothing about its internals)."""
    invalid = api_error(InvalidInput("ring_seconds must be 5..120, got 500"))
    assert invalid is not None
    assert (invalid.status, invalid.code, invalid.reason) == (
        422, "invalid_field", "ring_seconds must be 5..120, got 500")
    way = api_error(NoWayBack("no known way back"))
    assert way is not None and (way.status, way.code) == (409, "no_way_back")
    away = api_error(AMINotConnected("not logged in (internal detail)"))
    assert away is not None
    assert (away.status, away.code, away.reason) == (
        503, "pbx_unavailable", "the PBX is not connected; try again")
    answer = Message(Message.RESPONSE, "Error", {"Message": "no"})
    refused = api_error(AMIActionError("Originate", answer))
    assert refused is not None and (refused.status, refused.code) == (502, "pbx_refused")


def test_given_a_subclass_or_a_stranger_when_mapped_then_nearest_row_or_none() -> None:
    """A subclass without a row is answered as its nearest listed base; an error nobody
    listed is no refusal (None: the resource logs it and answers 500); the API's own
    ApiError is its own answer."""

    class TooManyNotes(alerts_errors.InvalidField):
        pass

    nearest = api_error(TooManyNotes("too_long", "note is over 1000 characters"))
    assert nearest is not None and nearest.status == 422
    assert api_error(RuntimeError("boom")) is None
    own = ApiError(405, "method_not_allowed", "no")
    assert api_error(own) is own
