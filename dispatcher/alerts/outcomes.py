"""What alert intake answers and counts: an alert taken, and the outcomes since start."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from twisted.python.failure import Failure

from dispatcher.alerts.errors import AlertsError

__all__ = ["AlertAccepted", "AlertCounts"]


@dataclass
class AlertCounts:
    """Alerts seen since start (metrics): received, stored, retries of a stored one, and
    refusals by error code."""

    received: int = 0
    committed: int = 0
    duplicates: int = 0
    refused: dict[str, int] = field(default_factory=dict)

    def count(self, result: Any) -> Any:
        """Count one alert's outcome (an AlertAccepted, or a Failure); pass it on unchanged."""
        if isinstance(result, Failure):
            code = result.value.code if isinstance(result.value, AlertsError) else "error"
            self.refused[code] = self.refused.get(code, 0) + 1
        elif result.created:
            self.committed += 1
        else:
            self.duplicates += 1
        return result


@dataclass(frozen=True)
class AlertAccepted:
    """An alert taken: its incident and the incident's state; ``created`` False when the
    alert was stored before (a retry of the same ``alert_id``)."""

    alert_id: str
    incident_id: int
    state: str
    created: bool
