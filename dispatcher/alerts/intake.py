"""Parsing and validating an alert's JSON body (sans-IO: bytes and a time in, an AlertRequest out).

Everything an alert carries may end up in a log line, a page or an AMI action, so the rules are
strict: known fields only, exact types (``true`` is not a number), ranges, lengths, and no
control character anywhere (CR/LF would let a value forge AMI headers). A refusal raises
:class:`~dispatcher.alerts.errors.InvalidField` (or ``MalformedBody``, ``BodyTooLarge``)
naming the field and the rule.

Location fields are accepted in this API's own names (``lat``, ``lon``, ``accuracy_m``,
``fix_time``) and in the names of Advanced Mobile Location (AML) messages phones send to
emergency services (``lt``, ``lg``, ``rd``, ``top``), plus the common ``latitude``,
``longitude``, ``accuracy``. One name per value: giving two spellings of the same value is an
error rather than a guess.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from dataclasses import dataclass
from typing import Any

from dispatcher.alerts.errors import BodyTooLarge, InvalidField, MalformedBody

__all__ = [
    "ALERT_TYPES",
    "MAX_BODY_BYTES",
    "AlertRequest",
    "Location",
    "parse_json_object",
    "validate_alert",
    "validate_identifier",
]

ALERT_TYPES = ("panic", "medical", "fire", "crime", "other")
MAX_BODY_BYTES = 16 * 1024
MAX_NOTE_CHARS = 1000
# Identifiers chosen by clients (alert ids, device ids): UUIDs, ULIDs, slugs.
IDENTIFIER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
# A phone number to call back: digits, optionally a leading +. Nothing else ever reaches a
# dial string.
CALLBACK_RE = re.compile(r"^\+?[0-9]{3,20}$")
# Any C0 control character, DEL, and the Unicode line/paragraph separators.
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f\u2028\u2029\x85]")
AML_TIME_RE = re.compile(r"^[0-9]{14}$")
# A fix from the future beyond clock skew, or older than this, is refused.
MAX_FIX_FUTURE = dt.timedelta(minutes=10)
MAX_FIX_AGE = dt.timedelta(days=7)
MAX_ACCURACY_M = 100_000.0

_TOP_FIELDS = {"alert_id", "device_id", "type", "location", "callback_number", "note"}
# Each location value and the names it may be given under.
_LOCATION_NAMES = {
    "lat": ("lat", "latitude", "lt"),
    "lon": ("lon", "longitude", "lg"),
    "accuracy_m": ("accuracy_m", "accuracy", "rd"),
    "fix_time": ("fix_time", "top"),
}
_ALL_LOCATION_NAMES = {name for names in _LOCATION_NAMES.values() for name in names}


@dataclass(frozen=True)
class Location:
    """Where the citizen is, as the phone measured it."""

    lat: float
    lon: float
    accuracy_m: float | None
    fix_time: dt.datetime | None


@dataclass(frozen=True)
class AlertRequest:
    """A validated alert, ready to be stored."""

    alert_id: str
    device_id: str
    type: str
    location: Location | None
    callback_number: str | None
    note: str | None


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"key {key!r} appears twice")
        out[key] = value
    return out


# One decoder for every body: json.loads with hooks builds a new one per call.
_DECODER = json.JSONDecoder(object_pairs_hook=_no_duplicates, parse_constant=_reject_constant)


def parse_json_object(body: bytes, max_bytes: int = MAX_BODY_BYTES) -> dict[str, Any]:
    """Decode a request body that must be one JSON object of at most ``max_bytes``.

    Refuses (``MalformedBody``) invalid UTF-8, invalid JSON, NaN/Infinity, duplicate keys
    (two parsers could read them differently), and anything but an object; ``BodyTooLarge``
    beyond the limit.
    """
    if len(body) > max_bytes:
        raise BodyTooLarge("too_large", f"the body is over {max_bytes} bytes")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedBody("malformed_json", f"the body is not UTF-8 ({exc.reason})") from None
    try:
        document = _DECODER.decode(text)
    except (ValueError, RecursionError) as exc:
        raise MalformedBody("malformed_json", f"the body is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise MalformedBody("malformed_json", "the body must be a JSON object")
    return document


def validate_identifier(value: object, field: str) -> str:
    """A client-chosen identifier: 1 to 128 of letters, digits, ``.``, ``_``, ``:``, ``-``."""
    if not isinstance(value, str):
        raise InvalidField("invalid_field", f"{field} must be a string")
    if not IDENTIFIER_RE.match(value):
        raise InvalidField("invalid_field", f"{field} must be 1 to 128 letters, digits, '.', "
                           "'_', ':' or '-', starting with a letter or digit")
    return value


def _number(value: object, field: str, lo: float, hi: float) -> float:
    # bool is an int in Python; JSON true is not a coordinate.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidField("invalid_field", f"{field} must be a number")
    number = float(value)
    if not math.isfinite(number) or not lo <= number <= hi:
        raise InvalidField("out_of_range", f"{field} must be between {lo:g} and {hi:g}")
    return number


def _fix_time(value: object, field: str, now: dt.datetime) -> dt.datetime:
    if not isinstance(value, str) or len(value) > 40 or _CONTROL_RE.search(value):
        raise InvalidField("invalid_field", f"{field} must be an ISO 8601 time with a zone, "
                           "or an AML time YYYYMMDDhhmmss (UTC)")
    try:
        if AML_TIME_RE.match(value):
            when = dt.datetime.strptime(value, "%Y%m%d%H%M%S").replace(tzinfo=dt.UTC)
        else:
            when = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidField("invalid_field", f"{field} is not a valid time: {value!r}") from None
    if when.tzinfo is None:
        raise InvalidField("invalid_field", f"{field} must carry a time zone (e.g. Z or +07:00)")
    when = when.astimezone(dt.UTC)
    if when > now + MAX_FIX_FUTURE:
        raise InvalidField("out_of_range", f"{field} is in the future")
    if when < now - MAX_FIX_AGE:
        raise InvalidField("out_of_range", f"{field} is more than {MAX_FIX_AGE.days} days old")
    return when


def _location(value: object, now: dt.datetime) -> Location:
    if not isinstance(value, dict):
        raise InvalidField("invalid_field", "location must be an object")
    unknown = sorted(set(value) - _ALL_LOCATION_NAMES)
    if unknown:
        raise InvalidField("unknown_field", f"location has unknown field(s): {', '.join(unknown)}")
    picked: dict[str, tuple[str, object]] = {}
    for canonical, names in _LOCATION_NAMES.items():
        given = [n for n in names if n in value]
        if len(given) > 1:
            raise InvalidField("invalid_field",
                               f"location gives {canonical} twice ({' and '.join(given)})")
        if given:
            picked[canonical] = (f"location.{given[0]}", value[given[0]])
    for required in ("lat", "lon"):
        if required not in picked:
            raise InvalidField("missing_field", f"location.{required} is required")
    lat = _number(picked["lat"][1], picked["lat"][0], -90, 90)
    lon = _number(picked["lon"][1], picked["lon"][0], -180, 180)
    accuracy = None
    if "accuracy_m" in picked and picked["accuracy_m"][1] is not None:
        accuracy = _number(picked["accuracy_m"][1], picked["accuracy_m"][0], 0, MAX_ACCURACY_M)
    fix = None
    if "fix_time" in picked and picked["fix_time"][1] is not None:
        fix = _fix_time(picked["fix_time"][1], picked["fix_time"][0], now)
    return Location(lat, lon, accuracy, fix)


def validate_alert(document: dict[str, Any], now: dt.datetime) -> AlertRequest:
    """Check a parsed alert body field by field; ``now`` (aware UTC) bounds the fix time."""
    unknown = sorted(set(document) - _TOP_FIELDS)
    if unknown:
        raise InvalidField("unknown_field", f"unknown field(s): {', '.join(unknown)}")
    for required in ("alert_id", "device_id", "type"):
        if required not in document:
            raise InvalidField("missing_field", f"{required} is required")
    alert_id = validate_identifier(document["alert_id"], "alert_id")
    device_id = validate_identifier(document["device_id"], "device_id")
    kind = document["type"]
    if not isinstance(kind, str) or kind not in ALERT_TYPES:
        raise InvalidField("invalid_field", f"type must be one of {', '.join(ALERT_TYPES)}")
    location = None
    if document.get("location") is not None:
        location = _location(document["location"], now)
    callback = document.get("callback_number")
    if callback is not None:
        if not isinstance(callback, str) or not CALLBACK_RE.match(callback):
            raise InvalidField("invalid_field", "callback_number must be 3 to 20 digits, "
                               "optionally after a '+'")
    note = document.get("note")
    if note is not None:
        if not isinstance(note, str):
            raise InvalidField("invalid_field", "note must be a string")
        if len(note) > MAX_NOTE_CHARS:
            raise InvalidField("too_long", f"note is over {MAX_NOTE_CHARS} characters")
        if _CONTROL_RE.search(note):
            raise InvalidField("invalid_field", "note must not hold control characters "
                               "(CR, LF, NUL, ...): send one line")
        note = note.strip() or None
    return AlertRequest(alert_id, device_id, kind, location, callback, note)
