"""Cross-section: a clip plane held in the hand. While the trigger is held the plane passes through
the controller with its normal along the controller's ray, cutting away what lies between the user
and the hand (the renderer caps the cut); let go, and the plane stays where it is. Up to six planes;
a thumbstick click clears them all.
"""

from __future__ import annotations

import numpy as np

from sessions import intents as it
from sessions.tools.base import HandFrame, Overlay, ToolContext
from xrcore.scene import Segment, Sphere

FRAME_COLOR = (1.0, 0.45, 0.35, 1.0)
#: Half size of the square drawn round a held plane, metres.
FRAME_HALF_M = 0.08


def plane_in_twin(
    ctx: ToolContext, point_world: np.ndarray, normal_world: np.ndarray
) -> tuple[tuple[float, float, float], float]:
    """A world plane (through ``point_world`` m, unit ``normal_world``) in twin coordinates: (unit
    normal, offset mm) with ``n . p_mm + offset >= 0`` on the side the world normal points to."""
    m = ctx.scene.model_matrix()
    # p_world = M p_twin; n_w . (p_w - c) >= 0  <=>  (M3^T n_w) . p_t + n_w . (t - c) >= 0
    n_t = m[:3, :3].T @ normal_world
    offset_m = float(normal_world @ (m[:3, 3] - point_world))
    length = float(np.linalg.norm(n_t))
    n_t /= length
    return (float(n_t[0]), float(n_t[1]), float(n_t[2])), offset_m * 1000.0 / length


class SectionTool:
    name = "section"
    hint = "hold to cut, let go to leave the cut"

    def __init__(self) -> None:
        self.holding: str | None = None

    def _plane(self, ctx: ToolContext, hand: HandFrame, live: bool) -> it.AddClipPlane | None:
        aim = hand.aim
        if aim is None or self.holding is None:
            return None
        normal, offset = plane_in_twin(ctx, np.asarray(aim.position, dtype=np.float64), aim.forward())
        return it.AddClipPlane(ctx.user, ctx.time, self.holding, normal, offset, live)

    def update(self, ctx: ToolContext, hand: HandFrame) -> list[it.Intent]:
        if "thumbstick" in hand.buttons_pressed:
            self.holding = None
            return [it.ClearClipPlanes(ctx.user, ctx.time)]
        if hand.pressed and hand.aim is not None:
            self.holding = ctx.workspace.new_id(ctx.user, "P")
        if self.holding is None:
            return []
        plane = self._plane(ctx, hand, live=not hand.released)
        if hand.released or hand.aim is None:
            self.holding = None
        return [plane] if plane is not None else []

    def preview(self, ctx: ToolContext, hand: HandFrame) -> Overlay:
        aim = hand.aim
        if self.holding is None or aim is None:
            return [], []
        r = aim.rotation_matrix()
        c = np.asarray(aim.position, dtype=np.float64)
        corners = [c + FRAME_HALF_M * (sx * r[:, 0] + sy * r[:, 1]) for sx, sy in ((-1, -1), (1, -1), (1, 1), (-1, 1))]
        rods: list[Sphere | Segment] = [Segment(_t(corners[k]), _t(corners[(k + 1) % 4]), 0.0012, FRAME_COLOR) for k in range(4)]
        return rods, []

    def cancel(self) -> None:
        self.holding = None


def _t(p: np.ndarray) -> tuple[float, float, float]:
    return (float(p[0]), float(p[1]), float(p[2]))
