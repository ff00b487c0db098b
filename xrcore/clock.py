"""Fixed-step clock: simulation time is a frame counter times a period, never the wall clock.

The simulator advances this clock once per frame, so frame ``n`` always has time ``start + n * period``
whatever the machine is doing: the same script renders the same frames on every run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

logger = logging.getLogger(__name__)


@dataclass
class FixedStepClock:
    """A clock that ticks ``rate_hz`` times a second of simulated time.

    Parameters
    ----------
    rate_hz
        Display rate in Hz (90 for most headsets).
    start
        Time of frame 0, seconds.
    """

    rate_hz: float = 90.0
    start: float = 0.0
    frame: int = 0

    def __post_init__(self) -> None:
        if not self.rate_hz > 0:
            raise ValueError(f"clock rate must be positive, got {self.rate_hz} Hz")

    @property
    def period(self) -> float:
        """Seconds between frames."""
        return 1.0 / self.rate_hz

    @property
    def now(self) -> float:
        """Time of the current frame, seconds; computed from the frame index so it does not drift."""
        return self.start + self.frame * self.period

    def time_of(self, frame: int) -> float:
        """Time of frame ``frame``, seconds."""
        return self.start + frame * self.period

    def tick(self) -> float:
        """Advance one frame; return the new time in seconds."""
        self.frame += 1
        return self.now

    def reset(self) -> None:
        self.frame = 0
