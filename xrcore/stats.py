"""Frame statistics: CPU, GPU and frame times over a rolling window, and dropped frames.

The renderer records one sample per frame: ``cpu_ms`` (Python time spent issuing the frame),
``gpu_ms`` (GPU time from a timer query, known a few frames later, or None) and ``frame_ms`` (the
wall time of the whole frame as the frame loop saw it). A frame is *dropped* when its frame time
exceeds the display period (``1000 / rate_hz`` ms): a headset would have shown the previous image again.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)


def _summary(values: deque[float]) -> dict[str, float | None]:
    if not values:
        return {"median": None, "p99": None, "mean": None, "max": None}
    a = np.fromiter(values, dtype=np.float64, count=len(values))
    return {
        "median": round(float(np.median(a)), 4),
        "p99": round(float(np.percentile(a, 99)), 4),
        "mean": round(float(a.mean()), 4),
        "max": round(float(a.max()), 4),
    }


@dataclass
class FrameStats:
    """Rolling frame-time window.

    Parameters
    ----------
    rate_hz
        Display rate the frames are due at (90 Hz by default); sets the dropped-frame threshold.
    window
        Samples kept per series (the most recent ones).
    """

    rate_hz: float = 90.0
    window: int = 600
    frames: int = 0
    dropped: int = 0
    cpu_ms: deque[float] = field(init=False)
    gpu_ms: deque[float] = field(init=False)
    frame_ms: deque[float] = field(init=False)
    _dropped_window: deque[bool] = field(init=False)

    def __post_init__(self) -> None:
        if self.window < 1:
            raise ValueError(f"window must be >= 1, got {self.window}")
        self.cpu_ms = deque(maxlen=self.window)
        self.gpu_ms = deque(maxlen=self.window)
        self.frame_ms = deque(maxlen=self.window)
        self._dropped_window = deque(maxlen=self.window)

    @property
    def period_ms(self) -> float:
        return 1000.0 / self.rate_hz

    def record_cpu(self, cpu_ms: float) -> None:
        """Python time (ms) the renderer spent issuing one frame."""
        self.cpu_ms.append(float(cpu_ms))

    def record_gpu(self, gpu_ms: float) -> None:
        """GPU time (ms) of one frame, from a timer query (may arrive frames later)."""
        self.gpu_ms.append(float(gpu_ms))

    def record_frame(self, frame_ms: float) -> None:
        """Wall time (ms) of one whole frame; counts it as dropped when over the display period."""
        self.frames += 1
        late = frame_ms > self.period_ms
        self.dropped += int(late)
        self.frame_ms.append(float(frame_ms))
        self._dropped_window.append(late)

    def summary(self) -> dict[str, Any]:
        """Medians, p99, mean and max (ms) of each series over the window, and dropped frames."""
        return {
            "frames": self.frames,
            "rate_hz": self.rate_hz,
            "period_ms": round(self.period_ms, 4),
            "cpu_ms": _summary(self.cpu_ms),
            "gpu_ms": _summary(self.gpu_ms),
            "frame_ms": _summary(self.frame_ms),
            "dropped": self.dropped,
            "dropped_in_window": int(sum(self._dropped_window)),
        }

    def format(self) -> str:
        """One human-readable line: frames, median/p99 of frame, CPU and GPU ms, dropped frames."""
        s = self.summary()

        def fmt(key: str) -> str:
            d = s[key]
            if d["median"] is None:
                return f"{key.split('_')[0]} n/a"
            return f"{key.split('_')[0]} {d['median']:.2f}/{d['p99']:.2f} ms"

        return (
            f"{s['frames']} frames, median/p99: {fmt('frame_ms')}, {fmt('cpu_ms')}, {fmt('gpu_ms')}; "
            f"dropped {s['dropped']} at {s['rate_hz']:g} Hz"
        )
