"""The session loop: backend, scene, renderer, input and tools, frame by frame.

Every way of using medverse runs through here: ``medverse sim`` (the headless simulator),
``medverse view`` (a headset through OpenXR, or a desktop window), and the training and consultation
sessions built on them. Each frame::

    session.step(frame)             # input -> pointer picks -> tools -> intents -> workspace -> scene
    renderer.draw(scene, frame.views)
    backend.submit(frame)

:class:`LocalSession` is one user's side of it: it turns the frame's hands into
:class:`~sessions.tools.HandFrame` (picking both pointer rays against the twin once), lets the tool
belt make intents, applies them through the :class:`~sessions.workspace.Workspace` (the one place that
changes the twin) and lays out what the user sees of it: pointer rays that stop on the surface, hit
cursors, the hovered structure's name, measurements, a gesture's preview, tracked hand joints, and
the panels. Others plug in with :meth:`Workspace.on_applied` (a training runner scores each final
intent, a consultation sends it to the room) or by applying intents of their own (a remote user's).

:func:`run` is the loop over a backend; :func:`simulate` runs it in the headless simulator on a twin
and returns the frame statistics, the PNGs written and every intent applied.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from sessions import intents as it
from sessions.geodesics import GeodesicProcess, Geodesics, InlineGeodesics
from sessions.panels import PanelLine, Panels, hud_line
from sessions.tools import PALETTE, HandEdges, HandFrame, ToolBelt, ToolContext
from sessions.tools.measure import measurement_overlay
from sessions.workspace import Workspace
from xrcore.input import Picker
from xrcore.scene import Label, Scene, Segment, Sphere
from xrcore.stats import FrameStats
from xrcore.types import HandInput, Pose

logger = logging.getLogger(__name__)

#: Pointer rays are cast this far (m); a ray that hits nothing is drawn this long.
POINTER_REACH_M = 3.0
IDLE_RAY_M = 0.3
RAY_COLOR = (0.9, 0.9, 0.95, 1.0)
CURSOR_COLOR = (1.0, 1.0, 1.0, 1.0)
JOINT_COLOR = (0.95, 0.8, 0.7, 1.0)
#: The heads-up line's figures change this often (s): text that changed every frame would have its
#: glyphs laid out and uploaded every frame, and nobody reads figures that flicker at 90 Hz.
HUD_PERIOD_S = 0.25


@dataclass
class SessionConfig:
    """One user's session settings.

    ``user``: who makes the intents (undo is per user); ``left_tool``, ``right_tool``: the tools in
    hand at the start (:data:`sessions.tools.PALETTE`); ``hud``: the heads-up timing line (off in the
    simulator by default: its figures are wall-clock times, and simulated frames are meant to be the
    same bytes on every run);
    ``panels``: the gaze and wrist panels; ``pointer_rays``: draw each hand's ray up to what it hits
    (a desktop mouse, whose ray runs along the line of sight, has none); ``geodesic``: also measure
    along the surface (off by default: the exact solver takes about a second to prepare a structure and
    tens of ms a query, see :mod:`assets.geodesic`), in a process of its own, a measurement being
    applied once its answer arrives (:mod:`sessions.geodesics`); ``geodesic_inline``: answer in the
    frame that asks instead (the simulator: frames nobody watches live, the same intents every run);
    ``instructions``: lines shown at the top of the gaze panel (a training step's text).
    """

    user: str = "me"
    left_tool: str = "select"
    right_tool: str = "select"
    hud: bool = True
    panels: bool = True
    pointer_rays: bool = True
    geodesic: bool = False
    geodesic_inline: bool = False
    instructions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for tool in (self.left_tool, self.right_tool):
            if tool not in PALETTE:
                raise ValueError(f"unknown tool {tool!r}; the palette has {', '.join(PALETTE)}")
        if not self.user.strip():
            raise ValueError("a session needs a user name")


class LocalSession:
    """One user working on a scene's twin: see the module docstring.

    Parameters
    ----------
    scene
        The scene to work on (its marks and placement now belong to the session's workspace).
    config
        :class:`SessionConfig`.
    picker
        A :class:`~xrcore.input.Picker` for the scene's twin; built here when not given (about 0.5 s
        per million triangles).
    """

    def __init__(self, scene: Scene, config: SessionConfig | None = None, picker: Picker | None = None) -> None:
        self.scene = scene
        self.config = config or SessionConfig()
        self.workspace = Workspace(scene)
        self.picker = picker or Picker(scene.twin)
        self.belt = ToolBelt(self.config.left_tool, self.config.right_tool)
        self.edges = (HandEdges(), HandEdges())
        self.panels = Panels(label_angle_deg=scene.label_style.angle, hud=self.config.hud,
                             gaze=self.config.panels, wrist=self.config.panels)  # fmt: skip
        #: distances along the surface for the Measure tool (None: off)
        self.geodesics: Geodesics | None = None
        if self.config.geodesic:
            self.geodesics = (InlineGeodesics if self.config.geodesic_inline else GeodesicProcess)(scene.twin)
        self.ctx = ToolContext(self.workspace, self.picker, self.config.user, geodesics=self.geodesics)
        self.hands: tuple[HandFrame, HandFrame] = (HandFrame("left", HandInput()), HandFrame("right", HandInput()))
        self.feedback = ""
        self.instructions: tuple[str, ...] = self.config.instructions
        #: Python time of each :meth:`step`, ms (what ``bench/interaction.py`` reports)
        self.step_ms = FrameStats(window=100_000)
        self.frame_stats: FrameStats | None = None
        self._hud: tuple[float, PanelLine | None] = (-math.inf, None)
        self.workspace.on_applied(self._on_applied)
        scene.local_pointer_length = 0.0  # the session draws pointer rays that stop on the surface

    # --- per frame ----------------------------------------------------------------------------------

    def step(self, frame: Any) -> list[it.Intent]:
        """Take one frame's input: returns the intents applied this frame (live ones included)."""
        t0 = time.perf_counter()
        scene = self.scene
        scene.update(frame)
        self.ctx.time = float(frame.predicted_display_time)
        intents: list[it.Intent] = []
        for event in frame.events:
            if event.startswith("tool:"):
                _, side, name = event.split(":", 2)
                intents += self.belt.choose(self.ctx, side, name)
        hits = self.picker.pick_hands(frame.inputs, scene, POINTER_REACH_M)
        left = self.edges[0].step("left", frame.inputs.left, hits[0])
        right = self.edges[1].step("right", frame.inputs.right, hits[1])
        self.hands = (left, right)
        intents += self.belt.update(self.ctx, left, right)
        if self.ctx.held:
            intents = self._undo_held(intents)
        intents += self._answered()
        applied = [i for i in intents if self.workspace.apply(i)]
        self._draw_overlay(frame.head, frame.views[0] if frame.views else None)
        self.step_ms.record_cpu((time.perf_counter() - t0) * 1000.0)
        return applied

    def apply(self, intent: it.Intent) -> bool:
        """Apply an intent made elsewhere (a script, a remote user); True when applied."""
        return self.workspace.apply(intent)

    # --- what the user sees -------------------------------------------------------------------------

    def _draw_overlay(self, head: Pose, view: Any) -> None:
        scene = self.scene
        marks: list[Sphere | Segment] = []
        labels: list[Label] = []
        hovered = []
        for hand in self.hands:
            aim = hand.hand.aim
            if aim is None:
                continue
            origin = np.asarray(aim.position, dtype=np.float64)
            if hand.hit is not None:
                hovered.append(hand.hit.index)
                end = origin + aim.forward() * hand.hit.distance_m
                cursor = (float(end[0]), float(end[1]), float(end[2]))
                marks.append(Sphere(cursor, 0.0035, CURSOR_COLOR))
                labels.append(Label(hand.hit.structure, (cursor[0], cursor[1] + 0.012, cursor[2]), CURSOR_COLOR, scale=0.8))
            else:
                end = origin + aim.forward() * IDLE_RAY_M
            if self.config.pointer_rays:
                marks.append(Segment(_t(origin), _t(end), 0.0009, RAY_COLOR))
            if hand.hand.joints is not None:
                jp = hand.hand.joints
                for pose, radius in zip(jp.poses, jp.radii, strict=True):
                    marks.append(Sphere(pose.position, max(radius, 0.004), JOINT_COLOR))
        scene.hover(hovered)
        for m in self.workspace.measurements.values():
            text = f"{m.distance_mm:.1f} mm" + (f" ({m.geodesic_mm:.1f} along surface)" if m.geodesic_mm is not None else "")
            mm, ml = measurement_overlay(self.ctx, np.asarray(m.a_mm), np.asarray(m.b_mm), text)
            marks += mm
            labels += ml
        for _, m in self.ctx.held:
            mm, ml = measurement_overlay(self.ctx, np.asarray(m.a_mm), np.asarray(m.b_mm),
                                         f"{m.distance_mm:.1f} mm (along surface: measuring)")  # fmt: skip
            marks += mm
            labels += ml
        pm, pl = self.belt.preview(self.ctx, *self.hands)
        scene.overlay = marks + pm
        scene.overlay_labels = labels + pl + self._panel_labels(head, view)

    def _panel_labels(self, head: Pose, view: Any) -> list[Label]:
        left, right = self.belt.tool("left"), self.belt.tool("right")
        gaze = [PanelLine(text, scale=1.1) for text in self.instructions]
        gaze.append(PanelLine(f"{right.name}: {right.hint}", (1.0, 0.85, 0.45, 1.0)))
        if self.feedback:
            gaze.append(PanelLine(self.feedback, (0.6, 0.9, 1.0, 1.0)))
        wrist_hand = self.hands[0].hand if self.hands[0].tracked else None
        wrist = [PanelLine(f"L: {left.name}  R: {right.name}", scale=0.9)]
        hud = None
        if self.config.hud and self.frame_stats is not None and self.frame_stats.cpu_ms:
            shown_at, hud = self._hud
            if self.ctx.time - shown_at >= HUD_PERIOD_S or hud is None:
                recent = list(self.frame_stats.cpu_ms)[-20:]
                gpu = list(self.frame_stats.gpu_ms)[-20:]
                hud = hud_line(max(recent), max(gpu) if gpu else None, self.frame_stats.rate_hz)
                self._hud = (self.ctx.time, hud)
        wrist_pose = (wrist_hand.grip or wrist_hand.aim) if wrist_hand is not None else None
        # the gaze panel stays inside the view: a desktop window's 50 degrees is narrower than a headset's
        room = abs(math.degrees(view.fov.angle_down)) - 4.0 * len(gaze) if view is not None else None
        return self.panels.layout(head, gaze, wrist_pose, wrist, hud, max_drop_deg=room)

    def _on_applied(self, intent: it.Intent) -> None:
        self.feedback = it.describe(intent.record())

    # --- measuring along the surface ----------------------------------------------------------------

    def _answered(self) -> list[it.Intent]:
        """The held measurements whose distance along the surface arrived (or was given up), in the
        order they were made."""
        held = self.ctx.held
        if not held:
            return []
        assert self.geodesics is not None
        self.geodesics.poll()
        out: list[it.Intent] = []
        while held and held[0][0].done:
            query, measure = held.pop(0)
            out.append(replace(measure, geodesic_mm=query.mm))
        return out

    def _undo_held(self, intents: list[it.Intent]) -> list[it.Intent]:
        """An undo while a measurement is held takes back that measurement (the user's last change), not
        the change before it."""
        out: list[it.Intent] = []
        for intent in intents:
            if isinstance(intent, it.Undo) and intent.user == self.ctx.user and self.ctx.held:
                _, measure = self.ctx.held.pop()
                self.feedback = f"undone: the measurement of {measure.distance_mm:.1f} mm"
                continue
            out.append(intent)
        return out

    def close(self) -> None:
        """End what the session started beside the frame loop (the distances' process); a measurement
        still held is applied without its distance along the surface."""
        if self.geodesics is not None:
            self.geodesics.close()
            for _, measure in self.ctx.held:
                self.workspace.apply(measure)
            self.ctx.held.clear()


def _t(p: np.ndarray) -> tuple[float, float, float]:
    return (float(p[0]), float(p[1]), float(p[2]))


# --- the loop ---------------------------------------------------------------------------------------


@dataclass
class WrittenFrame:
    """A PNG the session wrote: frame index, path, sha256 of its RGBA pixels, keyframe names."""

    index: int
    path: Path
    sha256: str
    names: tuple[str, ...] = ()


@dataclass
class FrameWriter:
    """Writes chosen frames as PNG (both eyes side by side): every ``every``-th frame and, with
    ``at_keyframes``, the frames of a script's named keyframes (their names in the file name)."""

    out_dir: Path
    every: int = 0
    at_keyframes: bool = True
    written: list[WrittenFrame] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.every < 0:
            raise ValueError(f"every must be >= 0, got {self.every}")
        self.out_dir = Path(self.out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)

    def __call__(self, frame: Any, renderer: Any) -> None:
        names = tuple(e.split(":", 1)[1] for e in frame.events if e.startswith("keyframe:"))
        if not ((self.every and frame.index % self.every == 0) or (self.at_keyframes and names)):
            return
        from xrcore.render.png import write_stereo_png  # noqa: PLC0415

        path = self.out_dir / f"frame_{frame.index:06d}{''.join(f'_{n}' for n in names)}.png"
        self.written.append(WrittenFrame(frame.index, path, write_stereo_png(renderer, path), names))


#: Makes a session from (scene, config, picker): :class:`LocalSession` itself, or a subclass's maker (a
#: consultation's session, which also needs the room).
SessionFactory = Callable[[Scene, "SessionConfig | None", Picker], LocalSession]


def run(
    backend: Any,
    session: LocalSession,
    renderer: Any,
    *,
    max_frames: int | None = None,
    writer: Callable[[Any, Any], None] | None = None,
    on_frame: Callable[[Any], bool | None] | None = None,
) -> FrameStats:
    """Run ``session`` on ``backend`` (started, its context current) until the backend ends, a
    ``max_frames`` limit is reached or ``on_frame(frame)`` returns True. ``writer(frame, renderer)``
    runs after each submit (a :class:`FrameWriter`). Returns the renderer's frame statistics, with
    each frame's wall time (ms, from the session's step to the end of submit) recorded."""
    backend.attach(renderer)
    session.frame_stats = renderer.stats
    for count, frame in enumerate(backend.frames(), start=1):
        t0 = time.perf_counter()
        session.step(frame)
        if frame.should_render:
            renderer.draw(session.scene, frame.views)
        backend.submit(frame)
        renderer.stats.record_frame((time.perf_counter() - t0) * 1000.0)
        if writer is not None:
            writer(frame, renderer)
        if on_frame is not None and on_frame(frame):
            break
        if max_frames is not None and count >= max_frames:
            break
    return renderer.stats  # type: ignore[no-any-return]


def frames_of(script_or_motion: Any, rate_hz: float) -> int | None:
    """Frames that run a script to its end (through the frame nearest its last keyframe): None for a
    motion without an end."""
    duration = getattr(script_or_motion, "duration", None)
    if duration is None:
        return None
    return round(float(duration) * rate_hz) + 1


def _iter_records(session: LocalSession) -> Iterator[dict[str, Any]]:
    for intent in session.workspace.applied:
        yield intent.record()
