"""A session in the headless simulator: what ``medverse sim`` and the demo run.

:func:`simulate` places the twin where a user would work on it, builds the simulator backend, the
renderer and a :class:`~sessions.run.LocalSession`, runs a script (or a procedural motion) to its end,
writes the chosen frames as PNG and returns what happened: frame statistics, PNGs and every intent
the scripted user made (kind, structure, points and distances in twin millimetres, time).

Scripts aim hands by name (``"aim": {"hand": "right", "at": "<structure>"}``): :func:`aim_resolver`
turns the hand so its ray lands on the nearest point of that structure's surface that the hand can
see, where the twin is when the run gets there.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from assets.twin import Twin
from sessions.run import FrameWriter, LocalSession, SessionConfig, WrittenFrame, frames_of, run
from xrcore.input import Picker
from xrcore.motion import Aim, Motion, Script, look_rotation, procedural
from xrcore.scene import Scene, frame_twin
from xrcore.types import Pose

logger = logging.getLogger(__name__)

#: How big a twin is shown by default: its largest side, metres (a brain or skull at about twice life
#: size, a whole body at a tabletop size), as a user setting it on a table in front of them would.
WORKING_SIZE_M = 0.4
#: Candidate surface points tried, nearest first, when aiming at a structure.
AIM_CANDIDATES = 256


def working_scene(twin: Twin, size_m: float = WORKING_SIZE_M, centre: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> Scene:
    """A scene with ``twin`` stood upright (RAS+ to +Y up), its centre at ``centre`` (world m) and
    scaled so its largest side is ``size_m`` metres."""
    lo, hi = twin.bounds()
    extent = float(np.max(hi - lo))
    scale = size_m / extent if extent > 0 else 1.0
    pose = frame_twin(twin)
    p = np.asarray(pose.position) * scale + np.asarray(centre)
    return Scene(twin, twin_pose=Pose((float(p[0]), float(p[1]), float(p[2])), pose.orientation), twin_scale=scale)


def aim_resolver(session: LocalSession) -> Any:
    """A :data:`xrcore.motion.AimResolver` over ``session``'s scene. It points a hand at the surface
    point a ray from the hand reaches first: for a structure, the one of its vertices nearest the hand
    that the hand can see; for a point (twin mm), the visible vertex of any structure nearest that
    point (so an aim lands on the surface even when the point given is a little off it). When the twin
    is cut and nothing near a point is visible (in a consultation someone else's cut may have taken that
    part away), the hand aims straight at the point and its ray meets whatever is there now, as a
    person's would."""
    scene, picker = session.scene, session.picker

    def resolve(side: str, hand: np.ndarray, aim: Aim) -> tuple[float, float, float, float]:
        m = scene.model_matrix()
        if aim.point_mm is not None:
            target = np.asarray(aim.point_mm, dtype=np.float64) / 1000.0
            candidates = [(i, s.vertices) for i, s in enumerate(scene.twin.structures) if scene.materials[i].visible]
            what = f"the point {list(aim.point_mm)} mm"
        else:
            index = scene.index(aim.structure or "")
            candidates = [(index, scene.twin.structures[index].vertices)]
            target = None
            what = repr(aim.structure)
        hand_twin = np.linalg.inv(m) @ np.append(hand, 1.0)
        ranked: list[tuple[float, int, np.ndarray]] = []
        for index, verts in candidates:
            v = np.asarray(verts, dtype=np.float64)
            d = np.linalg.norm(v - (target if target is not None else hand_twin[:3]), axis=1)
            for k in np.argsort(d)[:AIM_CANDIDATES]:
                ranked.append((float(d[k]), index, v[k]))
        ranked.sort(key=lambda r: r[0])
        for _, index, vertex in ranked[:AIM_CANDIDATES]:
            world = m[:3, :3] @ vertex + m[:3, 3]
            hit = picker.pick_scene(scene, hand, world - hand)
            # visible: the ray's first hit is this structure, within a millimetre of the vertex
            if hit is not None and hit.index == index and np.linalg.norm(hit.point_mm / 1000.0 - vertex) < 1e-3:
                return look_rotation(hand.tolist(), world.tolist())
        if target is not None and scene.clip_planes:
            point = m[:3, :3] @ target + m[:3, 3]
            return look_rotation(hand.tolist(), point.tolist())
        raise ValueError(f"no visible surface near {what} from the {side} hand at {np.round(hand, 3).tolist()} m")

    return resolve


@dataclass
class SimRun:
    """What :func:`simulate` did: frames run, PNGs written, frame statistics, renderer facts, the
    intents applied (records), and the session's own CPU time per frame."""

    frames: int
    written: list[WrittenFrame]
    stats: dict[str, Any]
    renderer: dict[str, Any]
    out_dir: Path | None
    intents: list[dict[str, Any]] = field(default_factory=list)
    session_ms: dict[str, Any] = field(default_factory=dict)
    script_frames: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "frames": self.frames,
            "written": [str(w.path) for w in self.written],
            "sha256": [w.sha256 for w in self.written],
            "stats": self.stats,
            "session_ms": self.session_ms,
            "renderer": self.renderer,
            "out_dir": str(self.out_dir) if self.out_dir is not None else None,
            "intents": self.intents,
        }


def simulate(
    twin: Twin,
    *,
    frames: int | None = None,
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
    session: SessionConfig | None = None,
    scene: Scene | None = None,
) -> SimRun:
    """Run a session in the headless simulator over ``twin`` and return what happened.

    Parameters
    ----------
    twin
        The twin; shown upright at the origin, :data:`WORKING_SIZE_M` across (or as ``scene`` has it).
    frames
        Frames to run at ``rate_hz``; ``None`` runs a script to its end (a procedural motion: 180).
        A script cut short by ``frames`` is reported with a warning.
    out_dir, every, at_keyframes
        Where PNGs go (both eyes side by side) and which frames: every Nth, and the script's named
        keyframes. ``out_dir=None`` writes nothing.
    motion
        A procedural motion name (``orbit``, ``look-around``, ``reach-and-point``) framed to the twin,
        or a motion callable such as a :class:`~xrcore.motion.Script`.
    width, height, samples, stereo
        Pixels per eye, MSAA samples and stereo mode (:class:`~xrcore.render.RendererConfig`).
    context
        An existing current GL context to reuse (left open); by default one is made and closed.
    session
        The user's :class:`~sessions.run.SessionConfig`.
    scene
        A scene to use instead of the working placement (its twin must be ``twin``).
    """
    from xrcore.backends.sim import SimBackend, SimConfig  # noqa: PLC0415 - GL only when rendering
    from xrcore.render import Renderer, RendererConfig  # noqa: PLC0415

    _return_free_memory()
    scene = scene if scene is not None else working_scene(twin)
    # the simulator's frames are made, not watched: a distance along the surface is answered in the frame
    # that asks, so that a script gives the same intents on every run
    config = replace(session or SessionConfig(hud=False), geodesic_inline=True)
    local = LocalSession(scene, config, Picker(twin))
    if isinstance(motion, str):
        centre, size = scene.twin_center_and_size()
        motion = procedural(motion, centre.tolist(), size)
    if isinstance(motion, Script):
        motion = motion.with_aims(aim_resolver(local))
    needed = frames_of(motion, rate_hz)
    if frames is None:
        frames = needed if needed is not None else 180
    elif needed is not None and frames < needed:
        logger.warning("the script runs %.2f s (%d frames) but only %d frames were asked for: it stops at %.2f s",
                       needed / rate_hz, needed, frames, frames / rate_hz)  # fmt: skip
    backend = SimBackend(SimConfig(frames=frames, rate_hz=rate_hz, width=width, height=height, motion=motion, context=context))
    writer = FrameWriter(Path(out_dir), every, at_keyframes) if out_dir is not None else None
    backend.start()
    try:
        renderer = Renderer(
            backend.context,
            RendererConfig(width=width, height=height, samples=samples, stereo=stereo, rate_hz=rate_hz),  # type: ignore[arg-type]
        )
        try:
            stats = run(backend, local, renderer, writer=writer)
            local.close()
            info = {
                "stereo": renderer.stereo, "samples": renderer.samples,
                "gl_renderer": backend.context.info.get("renderer"), "gl_version": backend.context.info.get("version"),
                "egl_platform": backend.context.info.get("platform"), "gl_errors": renderer.gl_errors,
                "width": width, "height": height,
            }  # fmt: skip
            result = SimRun(
                stats.frames, list(writer.written) if writer else [], stats.summary(), info,
                writer.out_dir if writer else None, [i.record() for i in local.workspace.applied],
                local.step_ms.summary()["cpu_ms"], needed,
            )  # fmt: skip
        finally:
            renderer.close()
    finally:
        backend.stop()
    logger.info("simulated %d frames of %r: %d intents, %d PNGs",
                result.frames, twin.name, len(result.intents), len(result.written))  # fmt: skip
    return result


def _return_free_memory() -> None:
    """Hand the heap that loading a twin left free back to the OS before the GL driver allocates its
    own (glibc keeps freed small blocks otherwise: tens of MB after a million-triangle load)."""
    import contextlib  # noqa: PLC0415
    import ctypes  # noqa: PLC0415
    import gc  # noqa: PLC0415

    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to do
        ctypes.CDLL("libc.so.6").malloc_trim(0)
