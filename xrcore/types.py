"""Frame-loop data shared by backends, scene and renderer: poses, fields of view, views, frame state.

Conventions follow OpenXR: right-handed, metres, +Y up, -Z forward; quaternions are (x, y, z, w);
field-of-view angles are radians with left and down negative.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Pose:
    """A rigid transform: ``position`` (3,) metres and ``orientation`` unit quaternion (x, y, z, w)."""

    position: tuple[float, float, float] = (0.0, 0.0, 0.0)
    orientation: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 1.0)

    def rotation_matrix(self) -> np.ndarray:
        """(3, 3) float64 rotation matrix of ``orientation``."""
        x, y, z, w = self.orientation
        n = x * x + y * y + z * z + w * w
        s = 2.0 / n if n > 0 else 0.0
        return np.array(
            [
                [1 - s * (y * y + z * z), s * (x * y - z * w), s * (x * z + y * w)],
                [s * (x * y + z * w), 1 - s * (x * x + z * z), s * (y * z - x * w)],
                [s * (x * z - y * w), s * (y * z + x * w), 1 - s * (x * x + y * y)],
            ]
        )

    def matrix(self) -> np.ndarray:
        """(4, 4) float64 local-to-world matrix."""
        m = np.eye(4)
        m[:3, :3] = self.rotation_matrix()
        m[:3, 3] = self.position
        return m

    def inverse_matrix(self) -> np.ndarray:
        """(4, 4) float64 world-to-local matrix (the view matrix when this is an eye pose)."""
        r = self.rotation_matrix()
        m = np.eye(4)
        m[:3, :3] = r.T
        m[:3, 3] = -r.T @ np.asarray(self.position, dtype=np.float64)
        return m

    def forward(self) -> np.ndarray:
        """(3,) unit vector of local -Z in world coordinates."""
        return -self.rotation_matrix()[:, 2]


@dataclass(frozen=True)
class Fov:
    """Asymmetric field of view in radians (OpenXR ``XrFovf``): left and down are negative."""

    angle_left: float = -math.radians(45)
    angle_right: float = math.radians(45)
    angle_up: float = math.radians(45)
    angle_down: float = -math.radians(45)

    def projection(self, near: float = 0.05, far: float = 100.0) -> np.ndarray:
        """(4, 4) float64 OpenGL projection matrix (clip z in -1..1) for this frustum."""
        left, right = math.tan(self.angle_left), math.tan(self.angle_right)
        up, down = math.tan(self.angle_up), math.tan(self.angle_down)
        w, h = right - left, up - down
        m = np.zeros((4, 4))
        m[0, 0] = 2.0 / w
        m[0, 2] = (right + left) / w
        m[1, 1] = 2.0 / h
        m[1, 2] = (up + down) / h
        m[2, 2] = -(far + near) / (far - near)
        m[2, 3] = -2.0 * far * near / (far - near)
        m[3, 2] = -1.0
        return m


@dataclass(frozen=True)
class View:
    """One eye (or a desktop window): where it is, what it sees, and the image size in pixels."""

    pose: Pose
    fov: Fov
    width: int
    height: int
    eye: int = 0  # 0 left, 1 right; a desktop window uses 0

    def view_matrix(self) -> np.ndarray:
        return self.pose.inverse_matrix()


#: The joints of a tracked hand, in ``XR_EXT_hand_tracking``'s order (``XrHandJointEXT``).
HAND_JOINTS: tuple[str, ...] = (
    "palm", "wrist",
    "thumb_metacarpal", "thumb_proximal", "thumb_distal", "thumb_tip",
    "index_metacarpal", "index_proximal", "index_intermediate", "index_distal", "index_tip",
    "middle_metacarpal", "middle_proximal", "middle_intermediate", "middle_distal", "middle_tip",
    "ring_metacarpal", "ring_proximal", "ring_intermediate", "ring_distal", "ring_tip",
    "little_metacarpal", "little_proximal", "little_intermediate", "little_distal", "little_tip",
)  # fmt: skip
HAND_JOINT_COUNT = len(HAND_JOINTS)  # 26
JOINT = {name: i for i, name in enumerate(HAND_JOINTS)}


@dataclass(frozen=True)
class HandJoints:
    """A tracked hand's skeleton (``XR_EXT_hand_tracking``): one pose per joint of
    :data:`HAND_JOINTS`, world metres, and each joint's radius in metres. ``poses`` has
    :data:`HAND_JOINT_COUNT` entries; ``radii`` as many."""

    poses: tuple[Pose, ...]
    radii: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.poses) != HAND_JOINT_COUNT or len(self.radii) != HAND_JOINT_COUNT:
            raise ValueError(f"a hand has {HAND_JOINT_COUNT} joints, got {len(self.poses)} poses and {len(self.radii)} radii")

    def position(self, joint: str | int) -> np.ndarray:
        """(3,) float64 world position of a joint given by name or index."""
        i = JOINT[joint] if isinstance(joint, str) else joint
        return np.asarray(self.poses[i].position, dtype=np.float64)


@dataclass(frozen=True)
class HandInput:
    """One controller or tracked hand at a frame's predicted display time.

    ``grip``: where the hand holds things; ``aim``: the pointer ray origin, -Z along the ray (both
    ``None`` when untracked). ``trigger`` and ``squeeze`` are 0..1; ``thumbstick`` is (x, y) in
    -1..1; ``buttons`` names the buttons held down (e.g. ``"a"``, ``"menu"``, ``"thumbstick"``).
    ``joints``: the hand's skeleton when the runtime tracks the bare hand (``XR_EXT_hand_tracking``)
    or a script plays one, else ``None``; a tracked hand's pinch and fist are read from it
    (:mod:`xrcore.input`: ``pinch_strength``, ``grab_strength``).
    """

    grip: Pose | None = None
    aim: Pose | None = None
    trigger: float = 0.0
    squeeze: float = 0.0
    thumbstick: tuple[float, float] = (0.0, 0.0)
    buttons: frozenset[str] = frozenset()
    joints: HandJoints | None = None

    @property
    def tracked(self) -> bool:
        return self.aim is not None


@dataclass(frozen=True)
class InputState:
    """Both hands (index 0 left, 1 right, like OpenXR's ``/user/hand/left`` and ``/user/hand/right``)."""

    left: HandInput = HandInput()
    right: HandInput = HandInput()

    def hand(self, side: int | str) -> HandInput:
        """``side`` is 0 / ``"left"`` or 1 / ``"right"``."""
        if side in (0, "left"):
            return self.left
        if side in (1, "right"):
            return self.right
        raise ValueError(f"hand must be 0, 1, 'left' or 'right', got {side!r}")


#: Frame events a keyboard sends for what a headset asks with its menu buttons: a training step's
#: hint, and pause/resume (the desktop window's F1 and P keys).
HINT_EVENT = "session:hint"
PAUSE_EVENT = "session:pause"


@dataclass
class FrameState:
    """What one iteration of the frame loop works on.

    ``predicted_display_time`` and ``period`` are seconds on the backend's clock (the simulator's
    fixed-step clock, or XrTime converted to seconds); ``views`` has one entry per eye. ``head`` is
    the head (view-space centre) pose, ``inputs`` the controllers at the predicted display time;
    ``events`` names what happened this frame for the loop's listeners (e.g. ``"keyframe:intro"``).
    """

    index: int
    predicted_display_time: float
    period: float
    views: list[View] = field(default_factory=list)
    should_render: bool = True
    head: Pose = Pose()
    inputs: InputState = InputState()
    events: tuple[str, ...] = ()


#: Environment blend modes (OpenXR ``XrEnvironmentBlendMode``): ``opaque`` (VR: the image hides the
#: room), ``additive`` (optical see-through: light adds to the room, black is transparent),
#: ``alpha`` (passthrough video: the image is composited over the room by its premultiplied alpha).
BLEND_MODES: tuple[str, ...] = ("opaque", "additive", "alpha")
