"""Log lines for machines: one JSON object per log event (``siaga up --log-format json``).

Every line has ``time`` (UTC, ISO 8601), ``level``, ``namespace`` and ``message``; a line about
a call carries ``call_id`` (Asterisk's linkedid, the id the call log keeps) and a line about
an incident ``incident_id``, so a log shipper can follow one call or incident through the
server. Log calls name those ids as fields: ``call_id=``/``linkedid=`` and
``incident_id=``/``incident=``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import IO, Any

from twisted.logger import ILogObserver, LogLevel, formatEvent
from zope.interface import provider

# The event fields that name a call or an incident, the preferred name first.
CALL_FIELDS = ("call_id", "linkedid")
INCIDENT_FIELDS = ("incident_id", "incident")


def _first(event: dict[str, Any], names: tuple[str, ...]) -> str | None:
    for name in names:
        value = event.get(name)
        if value is not None and value != "":
            return str(value)
    return None


def event_record(event: dict[str, Any]) -> dict[str, Any]:
    """The JSON-ready record of one Twisted log event."""
    level = event.get("log_level", LogLevel.info)
    stamp = event.get("log_time")
    record: dict[str, Any] = {
        "time": (datetime.fromtimestamp(stamp, tz=UTC).isoformat(timespec="milliseconds")
                 if stamp is not None else None),
        "level": getattr(level, "name", str(level)),
        "namespace": event.get("log_namespace", "-"),
        "message": formatEvent(event),
    }
    call = _first(event, CALL_FIELDS)
    if call is not None:
        record["call_id"] = call
    incident = _first(event, INCIDENT_FIELDS)
    if incident is not None:
        record["incident_id"] = incident
    failure = event.get("log_failure")
    if failure is not None:
        record["error"] = failure.getTraceback()
    return record


def json_lines_observer(out: IO[str]) -> ILogObserver:
    """An observer writing one JSON object a line to ``out``, flushed per event."""

    @provider(ILogObserver)
    def observe(event: dict[str, Any]) -> None:
        out.write(json.dumps(event_record(event), ensure_ascii=False, default=str) + "\n")
        out.flush()

    return observe
