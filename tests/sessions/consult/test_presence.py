"""The heads-up line of a remote (sessions.consult.presence): figures over the last second, refreshed at
a readable rate, and STALE the moment nothing has arrived for 100 ms."""

from __future__ import annotations

from sessions.consult.presence import FIGURES_EVERY_S, RECENT_S, STALE_AFTER_S, Presence


def test_the_figures_cover_the_last_second_and_change_at_a_readable_rate_while_stale_shows_at_once() -> None:
    presence = Presence()
    t = 100.0
    for k in range(90):  # a second of poses at 90 Hz, 2 ms one way
        presence.arrived(1, "bob", t + k / 90, 0.002)
    now = t + 89 / 90
    assert presence.lines(now) == ["bob: 2.0 ms, 100% within 30 ms"]
    # a burst of late ones: the line keeps its figures for a quarter of a second, then shows the new ones
    for k in range(100):
        presence.arrived(1, "bob", now + 0.002 * (k + 1), 0.040)
    soon = now + 0.2
    assert soon - now < FIGURES_EVERY_S
    assert presence.lines(soon) == ["bob: 2.0 ms, 100% within 30 ms"]
    later = now + FIGURES_EVERY_S + 0.01
    presence.arrived(1, "bob", later, 0.040)
    line = presence.lines(later)[0]
    assert line.startswith("bob: 40.0 ms, ") and line != "bob: 40.0 ms, 100% within 30 ms", line
    # only the last second is kept
    assert all(later - t_k <= RECENT_S for t_k, _ in presence.remotes[1].samples)
    # frozen: STALE as soon as nothing has come for longer than the threshold, cached figures or not
    assert presence.lines(later + STALE_AFTER_S + 0.01) == [f"bob: STALE ({STALE_AFTER_S + 0.01:.1f} s)"]
