"""Avatars: pose records to and from the twin's coordinates, and remote participants drawn in the scene.

Poses travel relative to the twin (docs/consult.md): a sender maps its world head and hands through
the inverse of its twin's placement (position, rotation, uniform scale), a receiver through its own
twin's placement back to its world, so people stand where they stand *round the twin* whatever room
or stage each of them is in, and move with the twin when someone moves it.

:func:`local_poses` makes the record of a frame (head, grip poses of both hands, the pointing hand's
aim as ``pointer``); :func:`avatar_marks` draws one remote: a head
ball with its name, hand balls, and the pointer ray up to what it hits on the twin with a cursor, in
the colour of its role (:data:`ROLE_COLORS`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from net.protocol import PoseRecord, TrackedPoses, WirePose
from xrcore.scene import Label, Scene, Segment, Sphere
from xrcore.types import FrameState, Pose

#: Colour of each role's avatar (linear RGBA): distinct hues, none of them the twin's or the marks'.
ROLE_COLORS: dict[str, tuple[float, float, float, float]] = {
    "surgeon": (0.15, 0.35, 1.0, 1.0),
    "expert": (1.0, 0.1, 0.85, 1.0),
    "trainee": (0.1, 0.95, 0.95, 1.0),
    "observer": (0.6, 0.6, 0.6, 1.0),
    "instructor": (1.0, 0.5, 0.05, 1.0),
}
OTHER_COLOR = (0.8, 0.8, 0.8, 1.0)
#: Sizes of an avatar (world metres at the twin's life size x its scale does not apply: people stay
#: people-sized whatever the twin's scale).
HEAD_RADIUS_M = 0.05
HAND_RADIUS_M = 0.02
RAY_RADIUS_M = 0.0015
CURSOR_RADIUS_M = 0.006
POINTER_REACH_M = 3.0
IDLE_RAY_M = 0.3


def _quat_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ax, ay, az, aw = a
    bx, by, bz, bw = b
    return np.array([aw * bx + ax * bw + ay * bz - az * by, aw * by - ax * bz + ay * bw + az * bx,
                     aw * bz + ax * by - ay * bx + az * bw, aw * bw - ax * bx - ay * by - az * bz])  # fmt: skip


def _conj(q: np.ndarray) -> np.ndarray:
    return np.array([-q[0], -q[1], -q[2], q[3]])


@dataclass(frozen=True)
class TwinFrame:
    """The twin's placement: world = ``position`` + ``scale`` * R(``orientation``) @ twin."""

    position: np.ndarray
    orientation: np.ndarray
    scale: float

    @classmethod
    def of(cls, scene: Scene) -> TwinFrame:
        pose = scene.twin_pose
        q = np.asarray(pose.orientation, dtype=np.float64)
        return cls(np.asarray(pose.position, dtype=np.float64), q / np.linalg.norm(q), float(scene.twin_scale))

    def to_twin(self, pose: Pose) -> WirePose:
        """A world pose as a wire pose in twin coordinates (metres of the twin's own size)."""
        r = Pose((0.0, 0.0, 0.0), tuple(self.orientation)).rotation_matrix()
        p = r.T @ (np.asarray(pose.position) - self.position) / self.scale
        q = _quat_mul(_conj(self.orientation), np.asarray(pose.orientation, dtype=np.float64))
        return WirePose((float(p[0]), float(p[1]), float(p[2])), (float(q[0]), float(q[1]), float(q[2]), float(q[3])))

    def to_world(self, pose: WirePose) -> Pose:
        """A wire pose in twin coordinates as a world pose."""
        r = Pose((0.0, 0.0, 0.0), tuple(self.orientation)).rotation_matrix()
        p = self.position + self.scale * (r @ np.asarray(pose.position))
        q = _quat_mul(self.orientation, np.asarray(pose.orientation, dtype=np.float64))
        return Pose((float(p[0]), float(p[1]), float(p[2])), (float(q[0]), float(q[1]), float(q[2]), float(q[3])))


def local_poses(frame: FrameState, twin: TwinFrame) -> TrackedPoses:
    """The pose record of one frame: head, both grips and the pointing hand's aim (the right hand's
    when it is tracked, else the left's), in twin coordinates."""
    poses: TrackedPoses = {"head": twin.to_twin(frame.head)}
    for side, hand in (("left", frame.inputs.left), ("right", frame.inputs.right)):
        grip = hand.grip or hand.aim
        if grip is not None:
            poses[side] = twin.to_twin(grip)  # type: ignore[literal-required]
        if hand.aim is not None:
            poses["pointer"] = twin.to_twin(hand.aim)
    return poses


def avatar_marks(
    record: PoseRecord,
    name: str,
    role: str,
    twin: TwinFrame,
    pick: Callable[[np.ndarray, np.ndarray], float | None],
    heads_up: str = "",
) -> tuple[list[Sphere | Segment], list[Label]]:
    """One remote participant's avatar: marks and labels in world metres.

    ``pick(origin, direction)`` gives the distance (m) at which a ray first hits the twin, or None;
    ``heads_up`` is a second label line under the name (latency, STALE).
    """
    color = ROLE_COLORS.get(role, OTHER_COLOR)
    marks: list[Sphere | Segment] = []
    labels: list[Label] = []
    if record.head is not None:
        head = twin.to_world(record.head)
        marks.append(Sphere(head.position, HEAD_RADIUS_M, color))
        x, y, z = head.position
        labels.append(Label(f"{name} ({role})" if role else name, (x, y + HEAD_RADIUS_M * 1.5, z), color))
        if heads_up:
            labels.append(Label(heads_up, (x, y + HEAD_RADIUS_M * 1.2, z), color, scale=0.8))
    for pose in (record.left, record.right):
        if pose is not None:
            marks.append(Sphere(twin.to_world(pose).position, HAND_RADIUS_M, color))
    if record.pointer is not None:
        aim = twin.to_world(record.pointer)
        origin = np.asarray(aim.position, dtype=np.float64)
        direction = aim.forward()
        hit = pick(origin, direction)
        end = origin + direction * (hit if hit is not None else IDLE_RAY_M)
        marks.append(Segment(aim.position, (float(end[0]), float(end[1]), float(end[2])), RAY_RADIUS_M, color))
        if hit is not None:
            marks.append(Sphere((float(end[0]), float(end[1]), float(end[2])), CURSOR_RADIUS_M, color))
    return marks, labels
