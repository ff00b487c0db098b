"""The headless simulator backend: a virtual head-mounted display driven by a fixed-step clock.

Head and hand poses come from a motion (:mod:`xrcore.motion`: a script or a procedural motion) as pure
functions of the clock's time, so a run is reproducible frame for frame. The two eye views have an
asymmetric, Quest-like field of view and an interpupillary distance; frames are rendered offscreen
(EGL) by the renderer. The field of view follows the image's shape: its vertical extent is set so that
a pixel is as tall as it is wide (a sphere stays round in any ``width`` x ``height``).

This module only simulates a headset. The session loop that runs on it, writes PNGs and records
what the user did is :mod:`sessions.run` (``medverse sim``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from xrcore.backends.base import Backend, BackendError, BackendInfo
from xrcore.clock import FixedStepClock
from xrcore.motion import Motion, MotionSample, Orbit
from xrcore.types import Fov, FrameState, Pose, View

logger = logging.getLogger(__name__)

#: Left-eye field of view of a Quest-class headset, radians (OpenXR reports the right eye mirrored):
#: wider towards the temple than towards the nose, more downwards than upwards.
QUEST_LEFT_FOV = Fov(
    angle_left=-math.radians(52.0),
    angle_right=math.radians(42.0),
    angle_up=math.radians(44.0),
    angle_down=-math.radians(50.0),
)


def mirrored(fov: Fov) -> Fov:
    """The other eye's field of view: left and right swapped about the view axis."""
    return Fov(angle_left=-fov.angle_right, angle_right=-fov.angle_left, angle_up=fov.angle_up, angle_down=fov.angle_down)


@dataclass
class SimConfig:
    """Simulator settings.

    ``frames``: frames to produce (``None``: run until stopped); ``rate_hz``: display rate;
    ``width``, ``height``: pixels per eye; ``ipd_m``: interpupillary distance, metres;
    ``left_fov``: the left eye's field of view (the right eye's is its mirror image); its horizontal
    angles are kept and its vertical ones scaled so that pixels are square (:func:`square_pixels`);
    ``motion``: head/hand motion as a function of time (an orbit round the origin when ``None``);
    ``context``: an existing GL context to render with (not closed by the backend); when ``None``
    ``start()`` creates an offscreen EGL context.
    """

    frames: int | None = 180
    rate_hz: float = 90.0
    width: int = 720
    height: int = 800
    ipd_m: float = 0.063
    left_fov: Fov = QUEST_LEFT_FOV
    motion: Motion | None = None
    context: Any = None

    def __post_init__(self) -> None:
        if self.frames is not None and self.frames < 0:
            raise ValueError(f"frames must be >= 0, got {self.frames}")
        if self.width < 1 or self.height < 1:
            raise ValueError(f"eye size must be positive, got {self.width}x{self.height}")
        if not 0.0 < self.ipd_m < 0.1:
            raise ValueError(f"interpupillary distance {self.ipd_m} m is outside 0..0.1 m")
        self.left_fov = square_pixels(self.left_fov, self.width, self.height)


def square_pixels(fov: Fov, width: int, height: int) -> Fov:
    """``fov`` with its vertical angles scaled (about the same centre) so that a ``width`` x ``height``
    image has square pixels: the tangent extent per pixel is the same across and down."""
    across = math.tan(fov.angle_right) - math.tan(fov.angle_left)
    down = math.tan(fov.angle_up) - math.tan(fov.angle_down)
    wanted = across * height / width
    k = wanted / down
    return Fov(fov.angle_left, fov.angle_right, math.atan(math.tan(fov.angle_up) * k), math.atan(math.tan(fov.angle_down) * k))


def eye_views(head: Pose, ipd_m: float, left_fov: Fov, width: int, height: int) -> list[View]:
    """The two eye views of a head pose: eyes ``ipd_m`` apart along the head's +X, same orientation."""
    r = head.rotation_matrix()
    centre = np.asarray(head.position, dtype=np.float64)
    views = []
    for eye, side, fov in ((0, -1.0, left_fov), (1, 1.0, mirrored(left_fov))):
        p = centre + r[:, 0] * (side * ipd_m / 2)
        views.append(View(Pose((float(p[0]), float(p[1]), float(p[2])), head.orientation), fov, width, height, eye))
    return views


class SimBackend(Backend):
    """Frames on a fixed-step clock with poses from a motion; offscreen rendering; PNGs on request."""

    def __init__(self, config: SimConfig | None = None, **overrides: Any) -> None:
        self.config = config or SimConfig(**overrides)
        if config is not None and overrides:
            raise TypeError("give either a SimConfig or keyword settings, not both")
        self.clock = FixedStepClock(self.config.rate_hz)
        self.motion: Motion = self.config.motion or Orbit()
        self.pulses: list[tuple[float, int, float, float]] = []  # (time s, hand, amplitude, duration s)
        self._owns_context = False
        self._keyframe_frames = self._index_keyframes()
        self._pending: FrameState | None = None
        self._started = False

    def _index_keyframes(self) -> dict[int, tuple[str, ...]]:
        """Map frame index -> the motion's events nearest that frame's time: ``keyframe:NAME`` for its
        named keyframes, and whatever else a script reports (``tool:HAND:TOOL``)."""
        events = getattr(self.motion, "events", None)
        if events is None:
            events = tuple((t, f"keyframe:{name}") for t, name in getattr(self.motion, "keyframes", ()))
        out: dict[int, tuple[str, ...]] = {}
        for t, event in events:
            index = round((t - self.clock.start) * self.clock.rate_hz)
            out[index] = (*out.get(index, ()), event)
        return out

    @property
    def info(self) -> BackendInfo:
        return BackendInfo("sim", 2, self.config.width, self.config.height, self.config.rate_hz)

    def start(self) -> None:
        if self._started:
            return
        if self.config.context is not None:
            self.context = self.config.context
        else:
            from xrcore.gl.context import create_context  # noqa: PLC0415 - GL only when the simulator starts

            try:
                self.context = create_context("egl", width=self.config.width, height=self.config.height)
            except Exception as exc:  # the context module's errors vary by driver; say what failed
                raise BackendError(f"simulator cannot create an offscreen EGL context: {exc}") from exc
            self._owns_context = True
        self.context.make_current()
        self.clock.reset()
        self._started = True
        logger.info(
            "simulator started: %dx%d per eye at %g Hz, IPD %.1f mm, %s frames",
            self.config.width, self.config.height, self.config.rate_hz, self.config.ipd_m * 1000,
            self.config.frames if self.config.frames is not None else "unlimited",
        )

    def sample(self, index: int) -> FrameState:
        """The frame state of frame ``index``: a pure function of the index and the configuration."""
        t = self.clock.time_of(index)
        s: MotionSample = self.motion(t)
        names = self._keyframe_frames.get(index, ())
        return FrameState(
            index=index,
            predicted_display_time=t,
            period=self.clock.period,
            views=eye_views(s.head, self.config.ipd_m, self.config.left_fov, self.config.width, self.config.height),
            head=s.head,
            inputs=s.inputs,
            events=names,
        )

    def frames(self) -> Iterator[FrameState]:
        if not self._started:
            raise BackendError("call start() before frames()")
        while self.config.frames is None or self.clock.frame < self.config.frames:
            frame = self.sample(self.clock.frame)
            self._pending = frame
            yield frame
            if self._pending is not None:
                raise BackendError(f"frame {frame.index} was not submitted before the next was requested")
            self.clock.tick()

    def submit(self, frame: FrameState) -> None:
        if self._pending is None or frame.index != self._pending.index:
            raise BackendError(f"submit() got frame {frame.index}, expected the frame just yielded")
        self._pending = None
        if self.renderer is not None:
            # the simulated display "shows" the frame: wait for the GPU like a compositor would, so
            # frame times and dropped-frame counts mean the same thing as on a headset
            self.renderer.finish()

    def haptic_pulse(self, hand: int, amplitude: float = 0.5, duration_s: float = 0.05, frequency_hz: float = 0.0) -> None:
        """Record the pulse (time, hand, amplitude, duration): the simulator has no motor."""
        self.pulses.append((self.clock.now, hand, amplitude, duration_s))

    def stop(self) -> None:
        if self._owns_context and self.context is not None:
            self.context.close()
        self.context = None
        self._owns_context = False
        self._started = False
