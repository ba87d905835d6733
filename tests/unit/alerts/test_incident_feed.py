"""The operators' incident feed (``dispatcher.alerts.feed``): memory bounded by time, a
poller that fell behind told how much it missed, and an intake's mirror that answers only
what it holds."""

from __future__ import annotations

from twisted.internet import task

from dispatcher.alerts.feed import IncidentFeed


def fired(d: object) -> list[object]:
    """What a Deferred fired with so far (empty: nothing yet)."""
    got: list[object] = []
    d.addBoth(got.append)  # type: ignore[attr-defined]
    return got


def test_given_events_older_than_the_keep_time_when_a_new_one_is_published_then_they_are_dropped(
        ) -> None:
    """The feed keeps ``keep_seconds`` of events, so its memory follows the event rate, not
    how long the server has been up."""
    clock = task.Clock()
    feed = IncidentFeed(clock, keep_seconds=60)
    for n in range(10):
        feed.publish(n, "new", "alert_received")
        clock.advance(10)
    # Published at 0, 10, ..., 90 s; the last at 90 s keeps those from 30 s on.
    assert [e["seq"] for e in feed.events] == [4, 5, 6, 7, 8, 9, 10]
    clock.advance(1000)
    feed.publish(99, "new", "alert_received")
    assert [e["seq"] for e in feed.events] == [11]


def test_given_a_poller_from_before_the_oldest_kept_event_when_it_asks_then_it_is_told_what_it_missed(  # noqa: E501
        ) -> None:
    """A poller that fell behind gets the oldest events still kept at once, with the number
    of events it can no longer get; one that is up to date missed nothing."""
    clock = task.Clock()
    feed = IncidentFeed(clock, keep_seconds=60)
    for n in range(5):
        feed.publish(n, "new", "alert_received")
        clock.advance(40)
    # Published at 0, 40, 80, 120, 160 s: events 4 and 5 are kept.
    events = feed.since(1)
    assert feed.answer(1, events) == {"events": events, "last": 5, "missed": 2}
    assert [e["seq"] for e in events] == [4, 5]
    assert feed.answer(4, feed.since(4))["missed"] == 0
    assert feed.answer(5, [])["missed"] == 0


def test_given_every_kept_event_expired_when_a_behind_poller_waits_then_it_is_answered_at_once(
        ) -> None:
    """Nothing kept and the poller behind: it is not left waiting for the next event; it
    hears at once how many it missed and where to continue from."""
    clock = task.Clock()
    feed = IncidentFeed(clock, keep=2, keep_seconds=60)
    for n in range(5):
        feed.publish(n, "new", "alert_received")
    feed.events.clear()  # as if the last ones had been dropped too
    got = fired(feed.wait(1, 30))
    assert got == [[]]
    assert feed.answer(1, []) == {"events": [], "last": 5, "missed": 4}
    assert clock.getDelayedCalls() == []


def test_given_a_mirror_when_the_writers_events_arrive_then_waiters_wake_and_repeats_are_ignored(
        ) -> None:
    """An intake's mirror starts after the writer's ``last`` at its hello: it holds pollers
    from there on (earlier ones are the writer's), wakes its waiters with each event it
    receives, and ignores an event it already holds."""
    clock = task.Clock()
    writer = IncidentFeed(clock)
    for n in range(3):
        writer.publish(n, "new", "alert_received")
    mirror = IncidentFeed.mirror(clock, writer.last)
    assert (mirror.holds(2), mirror.holds(3), mirror.holds(10)) == (False, True, True)
    waiting = fired(mirror.wait(3, 30))
    assert waiting == []
    writer.listeners.append(lambda item: mirror.receive([item]))
    writer.publish(7, "new", "alert_received", lat=1.5)
    assert [[(e["seq"], e["incident_id"], e["lat"]) for e in got]  # type: ignore[union-attr]
            for got in waiting] == [[(4, 7, 1.5)]]
    mirror.receive([dict(writer.events[-1])])  # sent twice (a hello raced a batch)
    mirror.receive([dict(writer.events[0])])  # from before the mirror started
    assert [e["seq"] for e in mirror.events] == [4]
    assert mirror.answer(3, mirror.since(3)) == writer.answer(3, writer.since(3))
