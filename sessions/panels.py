"""In-scene text panels and the heads-up line, laid out as pinned labels (no OpenGL here).

Three kinds, each a stack of one-line labels the renderer draws as head-facing plates:

* the **gaze panel** floats below the line of sight at a reading distance and follows the gaze
  loosely (it stays put while the user looks within :data:`FOLLOW_CONE_DEG` of it and glides back in
  front when they look away, like the panels of StereoKit and most headset shells): instructions, the
  current tools, short feedback;
* the **wrist panel** rides above the left controller (or hand): each hand's tool;
* the **heads-up line** sits near the top of the view: frame timing, CPU and GPU ms against the frame
  budget (11.1 ms at 90 Hz), switchable.

Sizes are angles (the scene's label style): text stays as readable at arm's length as across the
room, in the headset and in the simulator's PNGs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from xrcore.scene import Color, Label
from xrcore.types import Pose

#: Metres in front of the eyes where the gaze panel floats, and how far below the line of sight.
GAZE_DISTANCE_M = 0.65
GAZE_DROP_DEG = 26.0
#: The gaze panel stays put while the gaze is within this angle of it.
FOLLOW_CONE_DEG = 22.0
#: Fraction of the way back in front it glides each frame once it follows (at 90 Hz: ~0.3 s).
FOLLOW_RATE = 0.12
#: Line spacing, in line heights.
LINE_SPACING = 1.45
TITLE_COLOR: Color = (1.0, 0.85, 0.45, 1.0)
TEXT_COLOR: Color = (0.95, 0.95, 0.95, 1.0)
HUD_OK: Color = (0.55, 1.0, 0.55, 1.0)
HUD_LATE: Color = (1.0, 0.45, 0.35, 1.0)


@dataclass
class PanelLine:
    """One line of a panel: its ``text``, ``color`` and size ``scale`` (1: the scene's label size)."""

    text: str
    color: Color = TEXT_COLOR
    scale: float = 1.0


def stack(lines: Sequence[PanelLine], bottom: np.ndarray, up: np.ndarray, line_m: float) -> list[Label]:
    """Pinned labels for ``lines`` (top line first) stacked upwards from ``bottom`` (3,) world m along
    unit ``up``; ``line_m`` is the height of a scale-1 line there, metres."""
    out: list[Label] = []
    y = 0.0
    for line in reversed(lines):
        p = bottom + up * y
        out.append(Label(line.text, (float(p[0]), float(p[1]), float(p[2])), line.color, pinned=True, scale=line.scale))
        y += line_m * line.scale * LINE_SPACING
    out.reverse()
    return out


@dataclass
class Panels:
    """Lays out the gaze panel, the wrist panel and the heads-up line each frame.

    ``label_angle_deg``: the scene's label size (degrees of visual angle of a line); ``hud``: show the
    heads-up line.
    """

    label_angle_deg: float = 1.5
    hud: bool = True
    gaze: bool = True
    wrist: bool = True
    _anchor: np.ndarray | None = field(default=None, repr=False)
    _following: bool = field(default=False, repr=False)

    def _line_m(self, distance: float) -> float:
        return 2.0 * distance * math.tan(math.radians(self.label_angle_deg) / 2.0)

    def layout(
        self,
        head: Pose,
        gaze_lines: Sequence[PanelLine],
        wrist_pose: Pose | None = None,
        wrist_lines: Sequence[PanelLine] = (),
        hud_line: PanelLine | None = None,
        max_drop_deg: float | None = None,
    ) -> list[Label]:
        """This frame's pinned labels for a user whose head is at ``head``; ``max_drop_deg`` keeps the
        gaze panel at most that far below the line of sight (inside a narrow view)."""
        r = head.rotation_matrix()
        eye = np.asarray(head.position, dtype=np.float64)
        forward, up = -r[:, 2], r[:, 1]
        out: list[Label] = []
        if self.gaze and gaze_lines:
            drop = math.radians(GAZE_DROP_DEG if max_drop_deg is None else max(0.0, min(GAZE_DROP_DEG, max_drop_deg)))
            target = eye + GAZE_DISTANCE_M * (math.cos(drop) * forward - math.sin(drop) * up)
            if self._anchor is None:
                self._anchor = target
            else:
                seen = self._anchor - eye
                cos = float(seen @ (target - eye)) / max(float(np.linalg.norm(seen) * np.linalg.norm(target - eye)), 1e-9)
                if math.degrees(math.acos(min(1.0, max(-1.0, cos)))) > FOLLOW_CONE_DEG or self._following:
                    self._anchor = self._anchor + FOLLOW_RATE * (target - self._anchor)
                    self._following = float(np.linalg.norm(target - self._anchor)) > 0.01
            out += stack(gaze_lines, self._anchor, np.array([0.0, 1.0, 0.0]), self._line_m(GAZE_DISTANCE_M))
        if self.wrist and wrist_pose is not None and wrist_lines:
            base = np.asarray(wrist_pose.position, dtype=np.float64) + np.array([0.0, 0.05, 0.0])
            distance = max(float(np.linalg.norm(base - eye)), 0.1)
            out += stack(wrist_lines, base, np.array([0.0, 1.0, 0.0]), self._line_m(distance) * 0.8)
        if self.hud and hud_line is not None:
            distance = 0.8
            p = eye + distance * forward + 0.32 * distance * up
            out += stack([hud_line], p, up, self._line_m(distance))
        return out


def hud_line(cpu_ms: float | None, gpu_ms: float | None, rate_hz: float) -> PanelLine:
    """The heads-up timing line: CPU and GPU ms per frame against the budget at ``rate_hz``, green
    within budget, red over it."""
    budget = 1000.0 / rate_hz
    cpu = "-" if cpu_ms is None else f"{cpu_ms:.1f}"
    gpu = "-" if gpu_ms is None else f"{gpu_ms:.1f}"
    worst = max(v for v in (cpu_ms, gpu_ms, 0.0) if v is not None)
    return PanelLine(f"CPU {cpu} ms  GPU {gpu} ms  / {budget:.1f} ms", HUD_OK if worst <= budget else HUD_LATE, 0.8)
