"""Presence: how each remote participant is doing, as the heads-up line shows it.

Every pose or op that arrives from a remote is noted with its arrival time (our clock) and one-way
latency (:meth:`Presence.arrived`, fed by ``Participant.on_pose`` / ``on_op``). The line of a remote
gives its current one-way latency (the median of the last :data:`RECENT_S`), the share of those
within the 30 ms budget, and **STALE** once nothing at all has arrived from it for longer than
:data:`STALE_AFTER_S`: latency figures of a frozen participant are old figures, so they are not shown
as current (a participant frozen for 8 s used to read "100% within budget").
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field

from net.latency import BUDGET_S

#: Nothing from a remote for this long (s) and it is reported STALE.
STALE_AFTER_S = 0.1
#: Latency figures cover the samples of this last stretch (s).
RECENT_S = 1.0
#: The latency figures of a line are worked out again this often (s): a figure that changed every frame
#: could not be read, and each new text costs the renderer its glyphs again. STALE shows at once.
FIGURES_EVERY_S = 0.25


@dataclass
class RemoteHealth:
    """One remote's arrivals: ``last`` arrival time (s, our clock; None before any), and recent
    (arrival time, one-way latency s) samples."""

    name: str
    role: str = ""
    last: float | None = None
    samples: deque[tuple[float, float]] = field(default_factory=lambda: deque(maxlen=512))
    _figures: tuple[float, tuple[float | None, float | None]] | None = field(default=None, repr=False)

    def stale(self, now: float) -> bool:
        """True when nothing has arrived for more than :data:`STALE_AFTER_S` (or ever)."""
        return self.last is None or now - self.last > STALE_AFTER_S

    def figures(self, now: float) -> tuple[float | None, float | None]:
        """(median one-way latency ms, share within budget) of the last :data:`RECENT_S`; None when none.
        Worked out at most every :data:`FIGURES_EVERY_S` (until the first figures, every time)."""
        cached = self._figures
        if cached is not None and 0.0 <= now - cached[0] < FIGURES_EVERY_S:
            return cached[1]
        samples = self.samples
        while samples and now - samples[0][0] > RECENT_S:  # arrivals come in time order
            samples.popleft()
        recent = sorted(lat for _, lat in samples)
        if not recent:
            return None, None
        figures = recent[len(recent) // 2] * 1e3, sum(lat <= BUDGET_S for lat in recent) / len(recent)
        self._figures = (now, figures)
        return figures

    def line(self, now: float) -> str:
        """The heads-up line: ``bob: 3.2 ms, 100% within 30 ms`` or ``bob: STALE (2.4 s)``."""
        if self.stale(now):
            since = "never heard" if self.last is None else f"{now - self.last:.1f} s"
            return f"{self.name}: STALE ({since})"
        latency, share = self.figures(now)
        if latency is None or share is None:
            return f"{self.name}: live, clock syncing"
        return f"{self.name}: {latency:.1f} ms, {share:.0%} within {BUDGET_S * 1e3:.0f} ms"


@dataclass(frozen=True)
class Health:
    """What the frame shows of one remote: its name, heads-up line and whether it is STALE."""

    name: str
    line: str
    stale: bool


class Presence:
    """The health of every remote participant, by index. Arrivals are noted on the network thread and
    read on the frame thread, so every method holds a lock."""

    def __init__(self) -> None:
        self.remotes: dict[int, RemoteHealth] = {}
        self._lock = threading.Lock()

    def arrived(self, index: int, name: str, now: float, latency_s: float | None) -> None:
        """Something from remote ``index`` (called ``name``) arrived at ``now`` with ``latency_s``."""
        with self._lock:
            health = self.remotes.get(index)
            if health is None or health.name != name:
                health = self.remotes[index] = RemoteHealth(name)
            health.last = now
            if latency_s is not None:
                health.samples.append((now, latency_s))

    def forget(self, index: int) -> None:
        """Remote ``index`` left the room."""
        with self._lock:
            self.remotes.pop(index, None)

    def health(self, now: float) -> dict[int, Health]:
        """Every remote's name, line and staleness at ``now``, by index."""
        with self._lock:
            return {i: Health(h.name, h.line(now), h.stale(now)) for i, h in sorted(self.remotes.items())}

    def lines(self, now: float) -> list[str]:
        """One heads-up line per remote, by index."""
        return [h.line for h in self.health(now).values()]
