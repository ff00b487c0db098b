"""Landmark: place a named point on the surface under the pointer (snapped to the surface the ray
hits), drag an existing one along the surface to move it, and delete one with the thumbstick click.

A trigger pull on the surface places a new landmark (L1, L2, ...), unless the cursor is within
:data:`GRAB_RADIUS_MM` of an existing landmark: then the landmark follows the cursor while the
trigger is held and is moved where it is let go. A thumbstick click on a landmark deletes it.
"""

from __future__ import annotations

import numpy as np

from sessions import intents as it
from sessions.tools.base import HandFrame, Overlay, ToolContext
from xrcore.scene import Sphere

#: How close (mm, on the twin) the cursor must be to a landmark to pick it up or delete it.
GRAB_RADIUS_MM = 6.0
_DRAG_COLOR = (1.0, 0.95, 0.5, 1.0)


def nearest_landmark(ctx: ToolContext, point_mm: np.ndarray, radius_mm: float = GRAB_RADIUS_MM) -> str | None:
    """The id of the landmark nearest ``point_mm`` within ``radius_mm``, or None."""
    best, best_d = None, radius_mm
    for mark_id, lm in ctx.workspace.landmarks.items():
        d = float(np.linalg.norm(np.asarray(lm.point_mm) - point_mm))
        if d <= best_d:
            best, best_d = mark_id, d
    return best


class LandmarkTool:
    name = "landmark"
    hint = "press: place a landmark, or drag one"

    def __init__(self) -> None:
        self.dragging: str | None = None

    def update(self, ctx: ToolContext, hand: HandFrame) -> list[it.Intent]:
        hit = hand.hit
        if "thumbstick" in hand.buttons_pressed and hit is not None:
            found = nearest_landmark(ctx, hit.point_mm)
            if found is not None:
                return [it.DeleteLandmark(ctx.user, ctx.time, found)]
        if hand.pressed and hit is not None:
            found = nearest_landmark(ctx, hit.point_mm)
            if found is not None:
                self.dragging = found
                return []
            mark_id = ctx.workspace.new_id(ctx.user, "L")
            point = tuple(float(v) for v in hit.point_mm)
            return [it.PlaceLandmark(ctx.user, ctx.time, mark_id, ctx.workspace.landmark_label(), point, hit.structure)]  # type: ignore[arg-type]
        if hand.released and self.dragging is not None:
            mark_id, self.dragging = self.dragging, None
            if hit is not None and mark_id in ctx.workspace.landmarks:
                point = tuple(float(v) for v in hit.point_mm)
                return [it.MoveLandmark(ctx.user, ctx.time, mark_id, point, hit.structure)]  # type: ignore[arg-type]
        return []

    def preview(self, ctx: ToolContext, hand: HandFrame) -> Overlay:
        if self.dragging is None or hand.hit is None:
            return [], []
        return [Sphere(ctx.world(hand.hit.point_mm), 0.003 * ctx.scene.twin_scale, _DRAG_COLOR)], []

    def cancel(self) -> None:
        self.dragging = None
