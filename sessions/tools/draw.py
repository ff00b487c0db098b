"""Draw: hold the trigger to draw a stroke, on the twin's surface where the pointer is on it, in the
air in front of the controller where it is not. A thumbstick click on one of one's own strokes
erases it (others' strokes are theirs to erase).
"""

from __future__ import annotations

import itertools

import numpy as np

from sessions import intents as it
from sessions.tools.base import HandFrame, Overlay, ToolContext
from xrcore.scene import Segment

#: A new point is added once the pen has moved this far (mm, on the twin).
STEP_MM = 1.5
#: How close (mm) the cursor must come to a stroke's point to erase that stroke.
ERASE_RADIUS_MM = 8.0
#: A surface further than this (m) from the controller is out of reach: the stroke goes in the air.
SURFACE_REACH_M = 0.6
PREVIEW_COLOR = (0.5, 1.0, 0.6, 1.0)


class DrawTool:
    name = "draw"
    hint = "hold to draw; delete: erase your stroke"

    def __init__(self) -> None:
        self.points: list[tuple[float, float, float]] = []
        self.on_surface = False

    def _pen_mm(self, ctx: ToolContext, hand: HandFrame) -> tuple[tuple[float, float, float], bool] | None:
        if hand.hit is not None and hand.hit.distance_m <= SURFACE_REACH_M:
            return (float(hand.hit.point_mm[0]), float(hand.hit.point_mm[1]), float(hand.hit.point_mm[2])), True
        tip = hand.tip_world()
        return (ctx.twin_mm(tip), False) if tip is not None else None

    def update(self, ctx: ToolContext, hand: HandFrame) -> list[it.Intent]:
        if "thumbstick" in hand.buttons_pressed and not self.points:
            pen = self._pen_mm(ctx, hand)
            if pen is not None:
                found = self._own_stroke_near(ctx, np.asarray(pen[0]))
                if found is not None:
                    return [it.EraseStroke(ctx.user, ctx.time, found)]
        if hand.pressed:
            self.points = []
            pen = self._pen_mm(ctx, hand)
            self.on_surface = bool(pen and pen[1])
        if hand.press or hand.released:
            pen = self._pen_mm(ctx, hand)
            if pen is not None and (not self.points or np.linalg.norm(np.subtract(pen[0], self.points[-1])) >= STEP_MM):
                self.points.append(pen[0])
        if hand.released and self.points:
            points, self.points = tuple(self.points), []
            return [it.AddStroke(ctx.user, ctx.time, ctx.workspace.new_id(ctx.user, "S"), points, self.on_surface)]
        return []

    def _own_stroke_near(self, ctx: ToolContext, point_mm: np.ndarray) -> str | None:
        best, best_d = None, ERASE_RADIUS_MM
        for mark_id, stroke in ctx.workspace.strokes.items():
            if stroke.user != ctx.user:
                continue
            d = float(np.min(np.linalg.norm(np.asarray(stroke.points_mm) - point_mm, axis=1)))
            if d <= best_d:
                best, best_d = mark_id, d
        return best

    def preview(self, ctx: ToolContext, hand: HandFrame) -> Overlay:
        if len(self.points) < 2:
            return [], []
        world = [ctx.world(p) for p in self.points]
        r = 0.00075 * ctx.scene.twin_scale
        return [Segment(a, b, r, PREVIEW_COLOR) for a, b in itertools.pairwise(world)], []

    def cancel(self) -> None:
        self.points = []
