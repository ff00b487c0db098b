"""Instrument: a needle or probe held in the hand, for training steps that guide a tool to a target.

The instrument is drawn as a rod from the hand along its pointer ray, ``length_mm`` long in the twin's
millimetres (it grows and shrinks with the twin, as the real needle would against the anatomy), with a
ball at its tip. It makes no intents: the training runner (:mod:`sessions.training.runner`) reads the
hand's pose every frame and puts the tip in twin coordinates itself, so whatever draws the needle, the
score comes from the pose alone. The runner sets the length and name with :meth:`configure`.
"""

from __future__ import annotations

import numpy as np

from sessions import intents as it
from sessions.tools.base import HandFrame, Overlay, ToolContext
from xrcore.scene import Label, Segment, Sphere

DEFAULT_LENGTH_MM = 40.0
SHAFT_COLOR = (0.82, 0.84, 0.88, 1.0)
TIP_COLOR = (1.0, 0.35, 0.3, 1.0)
#: Shaft radius and tip ball radius, metres (on screen, not in twin scale: a needle stays visible).
SHAFT_RADIUS_M = 0.0012
TIP_RADIUS_M = 0.0025


class InstrumentTool:
    name = "instrument"
    hint = "guide the tip to the target"

    def __init__(self, length_mm: float = DEFAULT_LENGTH_MM, label: str = "needle") -> None:
        self.length_mm = length_mm
        self.label = label

    def configure(self, *, length_mm: float | None = None, name: str | None = None) -> None:
        """Set the instrument's length (twin mm) and what it is called."""
        if length_mm is not None:
            if not np.isfinite(length_mm) or length_mm <= 0:
                raise ValueError(f"an instrument's length must be a positive number of mm, got {length_mm!r}")
            self.length_mm = float(length_mm)
        if name is not None:
            self.label = name

    def tip_world(self, ctx: ToolContext, hand: HandFrame) -> tuple[np.ndarray, np.ndarray] | None:
        """(hand, tip) in world metres, or None when the hand is untracked."""
        aim = hand.aim
        if aim is None:
            return None
        origin = np.asarray(aim.position, dtype=np.float64)
        return origin, origin + aim.forward() * (self.length_mm / 1000.0 * float(ctx.scene.twin_scale))

    def update(self, ctx: ToolContext, hand: HandFrame) -> list[it.Intent]:
        return []

    def preview(self, ctx: ToolContext, hand: HandFrame) -> Overlay:
        ends = self.tip_world(ctx, hand)
        if ends is None:
            return [], []
        origin, tip = ends
        marks: list[Sphere | Segment] = [
            Segment(_t(origin), _t(tip), SHAFT_RADIUS_M, SHAFT_COLOR),
            Sphere(_t(tip), TIP_RADIUS_M, TIP_COLOR),
        ]
        labels: list[Label] = []
        return marks, labels

    def cancel(self) -> None:
        pass


def _t(p: np.ndarray) -> tuple[float, float, float]:
    return (float(p[0]), float(p[1]), float(p[2]))
