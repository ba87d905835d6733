"""What the hotline and the alerts take from finished journeys (rules that lived in the
server's builder): late missed calls owed a callback once, an incident's hand-off to an
agency, button calls found only in CEL."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from dispatcher.alerts.incident import IncidentInput
from dispatcher.alerts.journeys import button_calls_finished, incident_handed_off
from dispatcher.callbacks.missed import ABANDONED
from dispatcher.callbacks.owed import CallbackList
from dispatcher.hotline.journeys import owe_missed_callbacks
from tests.unit.calllog import calllog_scenarios as sc


def _journey(timeline: Any) -> Any:
    from dispatcher.calllog import journey

    return journey.run(timeline.ami(), sc.DIRECTORY)[0]


def test_given_a_call_abandoned_while_away_when_reconciled_then_one_callback_is_owed() -> None:
    """A hotline call abandoned in the queue, learnt of from CEL, is owed a callback; the
    same call found again (the next pass, or seen live too) is not owed a second one."""
    callbacks = CallbackList()
    record = _journey(sc.abandoned_in_queue(after=20.0, number="0812222"))
    owed = owe_missed_callbacks(callbacks, [record], ["112"], now=sc.T0 + 60)
    assert [(e.number, e.reason) for e in owed] == [("0812222", ABANDONED)]
    assert owe_missed_callbacks(callbacks, [record], ["112"], now=sc.T0 + 61) == []
    assert callbacks.open_count == 1 and callbacks.page(0, 10)[0].missed == 1


def test_given_calls_that_were_not_missed_when_reconciled_then_nothing_is_owed() -> None:
    """An answered call with a real conversation, and a call to another number, owe
    nothing."""
    callbacks = CallbackList()
    answered = _journey(sc.answered_call(talk=60.0))
    elsewhere = _journey(sc.abandoned_in_queue(after=20.0))
    assert owe_missed_callbacks(callbacks, [answered], ["112"], now=sc.T0 + 100) == []
    assert owe_missed_callbacks(callbacks, [elsewhere], ["11245"], now=sc.T0 + 60) == []
    assert callbacks.open_count == 0


class _Alerts:
    """The two things of an AlertService the rules use: ``report`` and ``watcher``."""

    def __init__(self, watcher: Any = None) -> None:
        self.reports: list[tuple[Any, ...]] = []
        self.watcher = watcher

    def report(self, incident_id: int, what: IncidentInput, detail: str = "",
               operator: str | None = None, agency: str | None = None) -> str:
        self.reports.append((incident_id, what, detail, agency))
        return "reported"


def test_given_an_incidents_citizen_with_an_agency_when_handed_off_then_the_incident_is_told(
) -> None:
    """The journey of incident 7's call reaches the police: the incident hears
    hand_to_agency from the police; a call of no incident changes nothing."""
    alerts = _Alerts()
    assert incident_handed_off(alerts, SimpleNamespace(incident_ref=7),  # type: ignore[arg-type]
                               "police") == "reported"
    assert alerts.reports == [(7, IncidentInput.HAND_TO_AGENCY, "police answered", "police")]
    assert incident_handed_off(alerts, SimpleNamespace(incident_ref=None),  # type: ignore[arg-type]
                               "fire") is None
    assert len(alerts.reports) == 1


def test_given_calls_found_in_cel_when_reconciled_then_each_goes_to_the_button_watcher() -> None:
    """Every reconciled call is shown to the button watcher (it keeps the buttons' ones);
    a center without buttons has no watcher and nothing happens."""
    seen: list[str] = []
    watcher = SimpleNamespace(on_finished_call=lambda record: seen.append(record.linkedid))
    records = [SimpleNamespace(linkedid="1.1"), SimpleNamespace(linkedid="2.1")]
    button_calls_finished(_Alerts(watcher), records)  # type: ignore[arg-type]
    assert seen == ["1.1", "2.1"]
    button_calls_finished(_Alerts(None), records)  # type: ignore[arg-type]
    assert seen == ["1.1", "2.1"]
