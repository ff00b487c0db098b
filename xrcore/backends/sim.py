"""The headless simulator backend: a virtual head-mounted display driven by a fixed-step clock.

Head and hand poses come from a motion (:mod:`xrcore.motion`: a script or a procedural motion) as pure
functions of the clock's time, so a run is reproducible frame for frame. The two eye views have an
asymmetric, Quest-like field of view and an interpupillary distance; frames are rendered offscreen
(EGL) by the renderer and written as PNG on request: every Nth frame and/or at the script's named
keyframes. Each PNG holds both eyes side by side (left eye on the left).

:func:`simulate` runs the whole thing on a twin (what ``medverse sim`` does); :func:`render_frames` is
the short form for callers such as ``medverse demo``: a few orbiting stereo frames to a folder, and
the frame statistics back as a dict.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from xrcore.backends.base import Backend, BackendError, BackendInfo
from xrcore.clock import FixedStepClock
from xrcore.motion import Motion, MotionSample, Orbit
from xrcore.render.png import _PNG_BAND_ROWS, write_png_rows
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
    ``left_fov``: the left eye's field of view (the right eye's is its mirror image);
    ``motion``: head/hand motion as a function of time (an orbit round the origin when ``None``);
    ``out_dir``: where PNGs go (``None``: write nothing); ``every``: write every Nth frame (0: none);
    ``at_keyframes``: also write the frames nearest the motion's named keyframes;
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
    out_dir: Path | None = None
    every: int = 0
    at_keyframes: bool = True
    context: Any = None

    def __post_init__(self) -> None:
        if self.frames is not None and self.frames < 0:
            raise ValueError(f"frames must be >= 0, got {self.frames}")
        if self.width < 1 or self.height < 1:
            raise ValueError(f"eye size must be positive, got {self.width}x{self.height}")
        if not 0.0 < self.ipd_m < 0.1:
            raise ValueError(f"interpupillary distance {self.ipd_m} m is outside 0..0.1 m")
        if self.every < 0:
            raise ValueError(f"every must be >= 0, got {self.every}")
        if self.out_dir is not None:
            self.out_dir = Path(self.out_dir)


@dataclass
class WrittenFrame:
    """A PNG the simulator wrote: frame index, path, and sha256 of the RGBA pixels."""

    index: int
    path: Path
    sha256: str
    names: tuple[str, ...] = ()


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
        self.written: list[WrittenFrame] = []
        self.pulses: list[tuple[float, int, float, float]] = []  # (time s, hand, amplitude, duration s)
        self._owns_context = False
        self._keyframe_frames = self._index_keyframes()
        self._pending: FrameState | None = None
        self._started = False

    def _index_keyframes(self) -> dict[int, tuple[str, ...]]:
        """Map frame index -> names of the keyframes nearest that frame's time."""
        out: dict[int, tuple[str, ...]] = {}
        for t, name in getattr(self.motion, "keyframes", ()):
            index = round((t - self.clock.start) * self.clock.rate_hz)
            out[index] = (*out.get(index, ()), name)
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
            from xrcore.gl.context import create_context

            try:
                self.context = create_context("egl", width=self.config.width, height=self.config.height)
            except Exception as exc:  # the context module's errors vary by driver; say what failed
                raise BackendError(f"simulator cannot create an offscreen EGL context: {exc}") from exc
            self._owns_context = True
        self.context.make_current()
        if self.config.out_dir is not None:
            self.config.out_dir.mkdir(parents=True, exist_ok=True)
        self.clock.reset()
        self.written.clear()
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
            events=tuple(f"keyframe:{n}" for n in names),
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

    def _wants_png(self, frame: FrameState) -> bool:
        if self.config.out_dir is None:
            return False
        if self.config.every and frame.index % self.config.every == 0:
            return True
        return self.config.at_keyframes and bool(frame.events)

    def submit(self, frame: FrameState) -> None:
        if self._pending is None or frame.index != self._pending.index:
            raise BackendError(f"submit() got frame {frame.index}, expected the frame just yielded")
        self._pending = None
        if self.renderer is not None:
            # the simulated display "shows" the frame: wait for the GPU like a compositor would, so
            # frame times and dropped-frame counts mean the same thing as on a headset
            self.renderer.finish()
        if self._wants_png(frame):
            self._write_png(frame)

    def stereo_image(self) -> np.ndarray:
        """(H, 2W, 4) uint8: both eyes of the last rendered frame side by side, top row first."""
        if self.renderer is None:
            raise BackendError("no renderer attached: the frame loop attaches one before rendering")
        return self.renderer.read_stereo()

    def _write_png(self, frame: FrameState) -> None:
        assert self.config.out_dir is not None and self.renderer is not None
        names = tuple(e.split(":", 1)[1] for e in frame.events if e.startswith("keyframe:"))
        suffix = "".join(f"_{n}" for n in names)
        path = self.config.out_dir / f"frame_{frame.index:06d}{suffix}.png"
        digest = hashlib.sha256()
        write_png_rows(path, 2 * self.config.width, self.config.height, self._stereo_bands(), digest)
        self.written.append(WrittenFrame(frame.index, path, digest.hexdigest(), names))

    def _stereo_bands(self) -> Iterator[np.ndarray]:
        """The stereo image (both eyes side by side) a band of rows at a time, top band first."""
        assert self.renderer is not None
        for top in range(0, self.config.height, _PNG_BAND_ROWS):
            yield self.renderer.read_stereo(top, _PNG_BAND_ROWS)

    def haptic_pulse(self, hand: int, amplitude: float = 0.5, duration_s: float = 0.05, frequency_hz: float = 0.0) -> None:
        """Record the pulse (time, hand, amplitude, duration): the simulator has no motor."""
        self.pulses.append((self.clock.now, hand, amplitude, duration_s))

    def stop(self) -> None:
        if self._owns_context and self.context is not None:
            self.context.close()
        self.context = None
        self._owns_context = False
        self._started = False


@dataclass
class SimRun:
    """What :func:`simulate` did: frames run, PNGs written, frame statistics, renderer facts."""

    frames: int
    written: list[WrittenFrame]
    stats: dict[str, Any]
    renderer: dict[str, Any]
    out_dir: Path | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "frames": self.frames,
            "written": [str(w.path) for w in self.written],
            "sha256": [w.sha256 for w in self.written],
            "stats": self.stats,
            "renderer": self.renderer,
            "out_dir": str(self.out_dir) if self.out_dir is not None else None,
        }


def simulate(
    twin: Any,
    *,
    frames: int = 180,
    out_dir: str | Path | None = None,
    every: int = 0,
    at_keyframes: bool = True,
    motion: str | Motion = "orbit",
    width: int = 720,
    height: int = 800,
    rate_hz: float = 90.0,
    samples: int = 4,
    stereo: str = "auto",
    context: Any = None,
    scene_setup: Any = None,
) -> SimRun:
    """Run the headless simulator over ``twin`` and return what happened.

    Parameters
    ----------
    twin
        An :class:`assets.twin.Twin`; it is stood upright (RAS+ to +Y up) and centred at the origin.
    frames
        Frames to run on the fixed-step clock (at ``rate_hz``).
    out_dir, every, at_keyframes
        Where PNGs go (both eyes side by side) and which frames: every Nth, and the script's named
        keyframes. ``out_dir=None`` writes nothing.
    motion
        A procedural motion name (``orbit``, ``look-around``, ``reach-and-point``), framed to the
        twin's size, or any motion callable (e.g. a :class:`~xrcore.motion.Script`).
    width, height, samples, stereo
        Pixels per eye, MSAA samples and stereo mode (see :class:`~xrcore.render.RendererConfig`).
    context
        An existing current GL context to reuse (left open); by default one is made and closed.
    scene_setup
        Optional callable taking the :class:`~xrcore.scene.Scene` before the first frame (clip
        planes, colours, landmarks).
    """
    from xrcore.backends.base import run_frames  # noqa: PLC0415
    from xrcore.motion import procedural  # noqa: PLC0415
    from xrcore.render import Renderer, RendererConfig  # noqa: PLC0415 - GL only when rendering
    from xrcore.scene import Scene, frame_twin  # noqa: PLC0415

    _return_free_memory()
    scene = Scene(twin, twin_pose=frame_twin(twin))
    if scene_setup is not None:
        scene_setup(scene)
    if isinstance(motion, str):
        centre, size = scene.twin_center_and_size()
        motion = procedural(motion, centre, size)
    backend = SimBackend(
        SimConfig(
            frames=frames, rate_hz=rate_hz, width=width, height=height, motion=motion,
            out_dir=Path(out_dir) if out_dir is not None else None, every=every,
            at_keyframes=at_keyframes, context=context,
        )
    )  # fmt: skip
    backend.start()
    try:
        renderer = Renderer(
            backend.context,
            RendererConfig(width=width, height=height, samples=samples, stereo=stereo, rate_hz=rate_hz),  # type: ignore[arg-type]
        )
        try:
            stats = run_frames(backend, scene, renderer)
            info = {
                "stereo": renderer.stereo,
                "samples": renderer.samples,
                "gl_renderer": backend.context.info.get("renderer"),
                "gl_version": backend.context.info.get("version"),
                "egl_platform": backend.context.info.get("platform"),
                "gl_errors": renderer.gl_errors,
                "width": width,
                "height": height,
            }
            run = SimRun(stats.frames, list(backend.written), stats.summary(), info, backend.config.out_dir)
        finally:
            renderer.close()
    finally:
        backend.stop()
    logger.info("simulated %d frames of %r, wrote %d PNGs", run.frames, getattr(twin, "name", "?"), len(run.written))
    return run


def _return_free_memory() -> None:
    """Hand the heap that loading a twin left free back to the OS before the GL driver allocates its
    own (glibc keeps freed small blocks otherwise: tens of MB after a million-triangle load)."""
    import ctypes  # noqa: PLC0415
    import gc  # noqa: PLC0415

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to do
        pass


def render_frames(twin: Any, out_dir: str | Path, *, frames: int = 90, every: int = 30, **options: Any) -> dict[str, Any]:
    """Render ``frames`` stereo frames of ``twin`` orbiting it, writing every ``every``-th frame as a
    PNG (both eyes side by side) into ``out_dir``; returns :meth:`SimRun.as_dict` (paths, hashes,
    frame statistics in ms). Extra ``options`` go to :func:`simulate` (``width``, ``motion``...)."""
    return simulate(twin, frames=frames, out_dir=out_dir, every=every, **options).as_dict()
