"""The reactor-lag probe: how late scheduled work ran, driven by ``task.Clock``."""

from __future__ import annotations

from twisted.internet.task import Clock

from dispatcher.metrics.lag import ReactorLag


def test_given_a_blocked_reactor_when_the_probe_ticks_late_then_the_lag_is_recorded() -> None:
    """On time: no lag. A tick 0.7 s late (the reactor thread blocked): latest 0.7, max 0.7;
    on time again: latest 0, the max is kept."""
    clock = Clock()
    probe = ReactorLag(clock, interval=0.1)
    probe.startService()
    clock.pump([0.1] * 5)
    assert probe.latest == 0.0 and probe.max == 0.0
    clock.advance(0.8)  # the tick due at 0.1 s from the last runs 0.7 s late
    assert abs(probe.latest - 0.7) < 1e-9 and abs(probe.max - 0.7) < 1e-9
    clock.pump([0.1] * 3)
    assert probe.latest == 0.0 and abs(probe.max - 0.7) < 1e-9
    probe.stopService()
