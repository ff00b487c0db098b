"""Grab: move and rotate the twin with the hand that holds it (squeeze, or a closed fist); with both
hands, move, turn and scale it about their midpoint (StereoKit's and SlicerVirtualReality's two-hand
gesture): the twin keeps its place relative to the hands, and its scale follows the distance between
them, within 0.1x to 10x of life size.

While held the twin follows as live :class:`~sessions.intents.SetTwinPose` intents; letting go of the
last hand sends the final one (what undo goes back from, and what a room is told).
"""

from __future__ import annotations

import numpy as np

from sessions import intents as it
from sessions.tools.base import HandFrame, ToolContext
from sessions.workspace import MAX_SCALE, MIN_SCALE
from xrcore.motion import quat_from_matrix
from xrcore.types import Pose


def _rotation_between(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """(3, 3) shortest-arc rotation taking direction ``u`` to direction ``v``."""
    u = u / np.linalg.norm(u)
    v = v / np.linalg.norm(v)
    axis = np.cross(u, v)
    s, c = float(np.linalg.norm(axis)), float(u @ v)
    if s < 1e-9:
        if c > 0:
            return np.eye(3)
        # opposite: half a turn about any axis perpendicular to u
        perp = np.cross(u, (1.0, 0.0, 0.0) if abs(u[0]) < 0.9 else (0.0, 1.0, 0.0))
        perp /= np.linalg.norm(perp)
        return 2.0 * np.outer(perp, perp) - np.eye(3)
    k = axis / s
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    rotation: np.ndarray = np.eye(3) + s * kx + (1 - c) * (kx @ kx)
    return rotation


def _hand_pose(hand: HandFrame) -> Pose | None:
    return hand.hand.grip or hand.hand.aim


class Grab:
    """The grab gesture of both hands (not a palette tool: a squeeze always grabs)."""

    def __init__(self) -> None:
        self.holding: tuple[str, ...] = ()
        self._start_hands: list[np.ndarray] = []  # (4, 4) hand matrices, or positions for two hands
        self._start_model: tuple[np.ndarray, np.ndarray, float] = (np.eye(3), np.zeros(3), 1.0)

    def _begin(self, ctx: ToolContext, hands: list[HandFrame]) -> None:
        scene = ctx.scene
        self.holding = tuple(h.side for h in hands)
        self._start_model = (scene.twin_pose.rotation_matrix(), np.asarray(scene.twin_pose.position, dtype=np.float64),
                             float(scene.twin_scale))  # fmt: skip
        self._start_hands = [_hand_pose(h).matrix() for h in hands]  # type: ignore[union-attr]

    def update(self, ctx: ToolContext, left: HandFrame, right: HandFrame) -> list[it.Intent]:
        hands = [h for h in (left, right) if h.grab and _hand_pose(h) is not None]
        sides = tuple(h.side for h in hands)
        if sides != self.holding:
            was_holding = bool(self.holding)
            if not hands:
                self.holding = ()
                if was_holding:
                    s = ctx.scene
                    pose = s.twin_pose
                    return [it.SetTwinPose(ctx.user, ctx.time, pose.position, pose.orientation, float(s.twin_scale))]
                return []
            self._begin(ctx, hands)  # a hand joined or left: carry on from where the twin is now
            return []
        if not hands:
            return []
        r0, t0, s0 = self._start_model
        if len(hands) == 1:
            # rigid: the twin moves as the hand moved since the grab began
            delta = _hand_pose(hands[0]).matrix() @ np.linalg.inv(self._start_hands[0])  # type: ignore[union-attr]
            rot, pos, scale = delta[:3, :3] @ r0, delta[:3, :3] @ t0 + delta[:3, 3], s0
        else:
            p0 = [m[:3, 3] for m in self._start_hands]
            p1 = [np.asarray(_hand_pose(h).position, dtype=np.float64) for h in hands]  # type: ignore[union-attr]
            m0, m1 = (p0[0] + p0[1]) / 2, (p1[0] + p1[1]) / 2
            v0, v1 = p0[1] - p0[0], p1[1] - p1[0]
            d0, d1 = float(np.linalg.norm(v0)), float(np.linalg.norm(v1))
            if d0 < 1e-4 or d1 < 1e-4:
                return []
            scale = min(MAX_SCALE, max(MIN_SCALE, s0 * d1 / d0))
            k = scale / s0
            r = _rotation_between(v0, v1)
            # every point of the twin keeps its place relative to the hands' midpoint and axis
            rot, pos = r @ r0, m1 + k * (r @ (t0 - m0))
        q = quat_from_matrix(rot)
        return [it.SetTwinPose(ctx.user, ctx.time, (float(pos[0]), float(pos[1]), float(pos[2])), q, float(scale), live=True)]
