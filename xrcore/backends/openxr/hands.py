"""Hand tracking (``XR_EXT_hand_tracking``).

Where the runtime offers ``XR_EXT_hand_tracking`` and the system tracks hands, each hand's 26 joints
are located every frame into :attr:`~xrcore.types.HandInput.joints`; a bare hand (no controller pose)
gets its pointer and grip from its skeleton (:func:`hand_aim_pose`).
"""

from __future__ import annotations

import ctypes
import logging
from typing import Any

import numpy as np
import xr

from xrcore.backends.openxr.handles import _quietly
from xrcore.motion import look_rotation
from xrcore.types import HAND_JOINT_COUNT, JOINT, HandJoints, Pose

logger = logging.getLogger("xrcore.backends.openxr")  # the backend's one logger, named as before the split


def hand_aim_pose(joints: HandJoints) -> Pose:
    """The pointer pose of a bare tracked hand (world metres; the ray runs along its -Z).

    Origin at the index finger's proximal joint (the knuckle); -Z along the line from the wrist
    through that knuckle; +Y as close as possible to the back of the hand (the palm joint's +Y), so
    the ray rolls with the hand. Wrist and knuckle hardly move when the fingers curl, so pinching to
    select leaves the ray where it was; a ray through the index tip, or along the palm joint's -Z
    (which follows the knuckles' flexion), would jump as the pinch closes.
    """
    wrist, knuckle = joints.position("wrist"), joints.position("index_proximal")
    palm = joints.poses[JOINT["palm"]]
    try:
        orientation = look_rotation(wrist.tolist(), knuckle.tolist(), up=palm.rotation_matrix()[:, 1].tolist())
    except ValueError:  # a degenerate skeleton with the knuckle on the wrist: the palm's own direction
        orientation = palm.orientation
    return Pose((float(knuckle[0]), float(knuckle[1]), float(knuckle[2])), orientation)


#: 32-bit words in one XrHandJointLocationEXT (8-byte flags, 7-float pose, radius; 40 bytes).
_JOINT_WORDS = ctypes.sizeof(xr.HandJointLocationEXT) // 4


def joints_from_xr(locations: Any) -> HandJoints | None:
    """A :class:`~xrcore.types.HandJoints` from a filled ``XrHandJointLocationsEXT`` (26 joints).

    None when the hand is not tracked (``isActive`` false) or any joint lacks a valid position or
    orientation: a skeleton with holes would put a fingertip at the origin, so the hand counts as
    untracked until the runtime knows all of it.
    """
    if not locations.is_active or locations.joint_count != HAND_JOINT_COUNT:
        return None
    # Read as one (26, 10) block of 32-bit words rather than joint by joint through ctypes (a third of the
    # time, every frame): XrHandJointLocationEXT is a 64-bit flags word, XrPosef (orientation x y z w,
    # position x y z) and the radius, all 32-bit floats.
    words = np.frombuffer(locations.joint_locations, dtype=np.uint32).reshape(HAND_JOINT_COUNT, _JOINT_WORDS)
    valid = int(xr.SpaceLocationFlags.POSITION_VALID_BIT | xr.SpaceLocationFlags.ORIENTATION_VALID_BIT)
    if ((words[:, 0] & valid) != valid).any():  # the flags' low word holds every bit defined
        return None
    values = words.view(np.float32).astype(np.float64)
    quats, points = values[:, 2:6].tolist(), values[:, 6:9].tolist()
    poses = tuple(Pose((p[0], p[1], p[2]), (q[0], q[1], q[2], q[3])) for p, q in zip(points, quats, strict=True))
    return HandJoints(poses, tuple(values[:, 9].tolist()))


class _HandTrackingMixin:
    """:class:`~xrcore.backends.openxr.backend.OpenXRBackend`'s hand trackers: whether the system tracks
    hands, one tracker per hand made with the session, their joints located each frame, and teardown."""

    # The backend's state these methods use, set in OpenXRBackend.__init__.
    instance: Any
    system: Any
    session: Any
    _space: Any
    _hand_trackers: list[Any]
    _joint_locations: list[Any]
    _locate_hand_joints: Any

    def _system_tracks_hands(self) -> bool:
        """XrSystemHandTrackingPropertiesEXT.supportsHandTracking: the extension alone promises nothing."""
        hands = xr.SystemHandTrackingPropertiesEXT()
        props = xr.SystemProperties(next=hands)  # the structure itself: pyopenxr takes its address
        # pyopenxr's get_system_properties() takes no next chain, so the raw call is made here.
        result = xr.check_result(xr.raw_functions.xrGetSystemProperties(self.instance, self.system, ctypes.byref(props)))
        if result.is_exception():
            raise result
        return bool(hands.supports_hand_tracking)

    def _create_hand_trackers(self) -> None:
        """One XrHandTrackerEXT per hand (left, right), and the buffers their joints are located into.

        A runtime that refuses a tracker leaves the session without hand tracking (logged), not broken.
        """
        # pyopenxr's locate_hand_joints_ext() hands the runtime an empty joint array (jointCount 0),
        # which the extension forbids; the backend calls the runtime's function with its own buffers.
        self._locate_hand_joints = ctypes.cast(xr.get_instance_proc_addr(self.instance, "xrLocateHandJointsEXT"),
                                               xr.PFN_xrLocateHandJointsEXT)
        try:
            for hand in (xr.HandEXT.LEFT, xr.HandEXT.RIGHT):
                self._hand_trackers.append(xr.create_hand_tracker_ext(self.session, xr.HandTrackerCreateInfoEXT(hand=hand)))
        except xr.XrException as exc:
            logger.warning("the runtime refused a hand tracker (%s); hands are not tracked this session", exc)
            self._destroy_hand_trackers()
            return
        self._joint_locations = [
            xr.HandJointLocationsEXT(joint_locations=(xr.HandJointLocationEXT * HAND_JOINT_COUNT)()) for _ in (0, 1)]

    def _locate_joints(self, hand: int, display_time: int) -> HandJoints | None:
        """Hand ``hand``'s (0 left, 1 right) joints at ``display_time`` (XrTime, ns) in the reference space."""
        locations = self._joint_locations[hand]
        info = xr.HandJointsLocateInfoEXT(base_space=self._space, time=display_time)
        result = xr.check_result(self._locate_hand_joints(self._hand_trackers[hand], ctypes.byref(info),
                                                          ctypes.byref(locations)))
        if result.is_exception():
            raise result
        return joints_from_xr(locations)

    def _destroy_hand_trackers(self) -> None:
        for tracker in self._hand_trackers:
            _quietly(xr.destroy_hand_tracker_ext, tracker)
        self._hand_trackers, self._joint_locations = [], []
