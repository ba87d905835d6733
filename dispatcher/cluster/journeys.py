"""Every node's live journeys as one tracker, for what the console reads of them.

Each node's call log follows its own node's AMI (a call lives on one node, and its linkedid
starts with that node's system name), so the call card of a call on node B finds its facts
(category, language, priority, the alert behind it) only in node B's tracker. This reads
like one ``JourneyTracker`` for the card, the console's lists and the card's location:
``facts(linkedid)``, ``journeys`` and ``aliases`` look in every node's tracker, and a
listener added to ``listeners`` hears every node's.
"""

from __future__ import annotations

from collections import ChainMap
from collections.abc import Callable, Sequence
from typing import Any

from dispatcher.calllog.journey import JourneyFacts, JourneyTracker

__all__ = ["ClusterJourneys"]


class _EveryNode:
    """``listeners`` of every node's tracker: what is appended is appended to each."""

    def __init__(self, trackers: Sequence[JourneyTracker]) -> None:
        self._trackers = trackers

    def append(self, listener: Callable[[JourneyFacts], object]) -> None:
        for tracker in self._trackers:
            tracker.listeners.append(listener)

    def remove(self, listener: Callable[[JourneyFacts], object]) -> None:
        for tracker in self._trackers:
            if listener in tracker.listeners:
                tracker.listeners.remove(listener)


class ClusterJourneys:
    """The trackers of every node (``trackers``, in the topology's order), read as one."""

    def __init__(self, trackers: Sequence[JourneyTracker]) -> None:
        self.trackers = list(trackers)
        self.listeners = _EveryNode(self.trackers)

    @property
    def journeys(self) -> ChainMap[str, Any]:
        """Every node's live journeys, by linkedid."""
        return ChainMap(*(t.journeys for t in self.trackers))

    @property
    def aliases(self) -> ChainMap[str, Any]:
        """Every node's merged linkedids, by linkedid."""
        return ChainMap(*(t.aliases for t in self.trackers))

    def facts(self, linkedid: str) -> JourneyFacts | None:
        """The facts of the live journey ``linkedid``, on whichever node holds it."""
        for tracker in self.trackers:
            facts = tracker.facts(linkedid)
            if facts is not None:
                return facts
        return None
