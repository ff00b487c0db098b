"""GPU time per frame from timestamp queries, read back without stalling a few frames later.

Timestamps (``glQueryCounter``) rather than ``GL_TIME_ELAPSED``: llvmpipe (Mesa 22.3) reports a
TIME_ELAPSED query spanning a whole frame as an absolute time; two timestamps work everywhere.
"""

from __future__ import annotations

import ctypes

import numpy as np

from xrcore.render.glapi import GL, raw_query_iv, raw_query_ui64v
from xrcore.stats import FrameStats

#: Frames whose queries may be in flight at once; a frame finding none free goes unmeasured.
_TIMER_RING = 8


class GpuTimers:
    """A ring of (start, end) timestamp query pairs whose differences go into ``stats`` (milliseconds).

    Parameters
    ----------
    stats
        Receives each frame's GPU time through :meth:`~xrcore.stats.FrameStats.record_gpu`.
    enabled
        False: no queries are made and nothing is measured.
    """

    def __init__(self, stats: FrameStats, enabled: bool) -> None:
        self._stats = stats
        self._in_flight: list[tuple[int, int]] = []  # oldest first
        self._free: list[tuple[int, int]] = []
        if enabled:
            q = [int(x) for x in np.atleast_1d(GL.glGenQueries(2 * _TIMER_RING))]
            self._free = list(zip(q[0::2], q[1::2], strict=True))

    def begin(self) -> tuple[int, int] | None:
        """Collect the finished frames' times, then start timing this one (None: no pair free)."""
        self.collect(wait=False)
        if not self._free:
            return None
        pair = self._free.pop()
        GL.glQueryCounter(pair[0], GL.GL_TIMESTAMP)
        return pair

    def end(self, pair: tuple[int, int] | None) -> None:
        """Stop timing the frame that :meth:`begin` returned ``pair`` for."""
        if pair is None:
            return
        GL.glQueryCounter(pair[1], GL.GL_TIMESTAMP)
        self._in_flight.append(pair)

    def collect(self, wait: bool) -> None:
        """Record the GPU time of each frame in flight whose queries are done, oldest first; with
        ``wait``, of every frame in flight (blocking until the GPU gets there)."""
        while self._in_flight:
            start, end = self._in_flight[0]
            if not wait:
                available = ctypes.c_int(0)
                raw_query_iv(end, GL.GL_QUERY_RESULT_AVAILABLE, ctypes.byref(available))
                if not available.value:
                    break
            t0, t1 = ctypes.c_uint64(0), ctypes.c_uint64(0)
            # the wrapped glGetQueryObjectui64v cannot build its numpy output array; the raw one
            # writes straight into a ctypes integer
            raw_query_ui64v(start, GL.GL_QUERY_RESULT, ctypes.byref(t0))
            raw_query_ui64v(end, GL.GL_QUERY_RESULT, ctypes.byref(t1))
            self._stats.record_gpu((t1.value - t0.value) / 1e6)
            self._in_flight.pop(0)
            self._free.append((start, end))

    def close(self) -> None:
        """Delete the queries (the context must be current)."""
        qs = [q for pair in self._free + self._in_flight for q in pair]
        if qs:
            GL.glDeleteQueries(len(qs), qs)
        self._free, self._in_flight = [], []
