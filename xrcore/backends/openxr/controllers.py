"""Controllers: actions, their suggested bindings, and reading them each frame.

:data:`ACTIONS` and :data:`BINDINGS` (actions and the suggested bindings for the Khronos simple, Oculus
Touch, Valve Index and HTC Vive controllers) are pure data, tested against the OpenXR 1.0
specification. :class:`~xrcore.backends.openxr.backend.OpenXRBackend` creates the action set (once
per instance) and its hand spaces (with each session), reads it into :class:`~xrcore.types.InputState`
each frame (``xrSyncActions``; a bare tracked hand stands in for a missing controller) and sends
haptic pulses through it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import xr

from xrcore.backends.base import BackendError
from xrcore.backends.openxr.hands import hand_aim_pose
from xrcore.types import JOINT, HandInput, HandJoints, InputState, Pose

if TYPE_CHECKING:
    from xrcore.backends.openxr.lifecycle import SessionStateMachine

logger = logging.getLogger("xrcore.backends.openxr")  # the backend's one logger, named as before the split

# --------------------------------------------------------------------------------------------------
# Actions and suggested bindings (OpenXR 1.0, section 6.4 "Interaction Profiles")
# --------------------------------------------------------------------------------------------------

LEFT_HAND = "/user/hand/left"
RIGHT_HAND = "/user/hand/right"
HANDS: tuple[str, str] = (LEFT_HAND, RIGHT_HAND)

SIMPLE_CONTROLLER = "/interaction_profiles/khr/simple_controller"
TOUCH_CONTROLLER = "/interaction_profiles/oculus/touch_controller"
INDEX_CONTROLLER = "/interaction_profiles/valve/index_controller"
VIVE_CONTROLLER = "/interaction_profiles/htc/vive_controller"


@dataclass(frozen=True)
class ActionSpec:
    """One action: ``name`` (the OpenXR action name), ``label`` (shown by the runtime's binding UI)
    and ``kind``: ``"pose"``, ``"float"``, ``"vector2f"``, ``"boolean"`` or ``"vibration"``."""

    name: str
    label: str
    kind: str


#: The actions medverse reads, each with subaction paths for both hands.
ACTIONS: tuple[ActionSpec, ...] = (
    ActionSpec("grip_pose", "Hand grip pose", "pose"),
    ActionSpec("aim_pose", "Pointer aim pose", "pose"),
    ActionSpec("trigger", "Trigger (select, point)", "float"),
    ActionSpec("squeeze", "Squeeze (grab)", "float"),
    ActionSpec("thumbstick", "Thumbstick (move, scale)", "vector2f"),
    ActionSpec("primary", "Primary button", "boolean"),
    ActionSpec("secondary", "Secondary button", "boolean"),
    ActionSpec("menu", "Menu", "boolean"),
    ActionSpec("thumbstick_click", "Thumbstick click", "boolean"),
    ActionSpec("haptic", "Haptic pulse", "vibration"),
)
ACTION_NAMES: tuple[str, ...] = tuple(a.name for a in ACTIONS)


def _both(action: str, component: str) -> tuple[tuple[str, str], ...]:
    return tuple((action, f"{hand}/{component}") for hand in HANDS)


_POSES = _both("grip_pose", "input/grip/pose") + _both("aim_pose", "input/aim/pose")
_HAPTIC = _both("haptic", "output/haptic")

#: Suggested bindings per interaction profile: ``(action name, binding path)`` pairs. Where a
#: controller lacks a component the nearest one stands in (the simple controller's select click for
#: the trigger, the Vive trackpad for the thumbstick, the Vive grip button for squeeze); OpenXR
#: converts a boolean to 0/1 for a float action. System buttons are left to the runtime.
BINDINGS: dict[str, tuple[tuple[str, str], ...]] = {
    SIMPLE_CONTROLLER: _POSES + _HAPTIC
    + _both("trigger", "input/select/click")
    + _both("menu", "input/menu/click"),
    TOUCH_CONTROLLER: _POSES + _HAPTIC
    + _both("trigger", "input/trigger/value")
    + _both("squeeze", "input/squeeze/value")
    + _both("thumbstick", "input/thumbstick")
    + _both("thumbstick_click", "input/thumbstick/click")
    + (("primary", f"{LEFT_HAND}/input/x/click"), ("primary", f"{RIGHT_HAND}/input/a/click"),
       ("secondary", f"{LEFT_HAND}/input/y/click"), ("secondary", f"{RIGHT_HAND}/input/b/click"),
       ("menu", f"{LEFT_HAND}/input/menu/click")),
    INDEX_CONTROLLER: _POSES + _HAPTIC
    + _both("trigger", "input/trigger/value")
    + _both("squeeze", "input/squeeze/value")
    + _both("thumbstick", "input/thumbstick")
    + _both("thumbstick_click", "input/thumbstick/click")
    + _both("primary", "input/a/click")
    + _both("secondary", "input/b/click"),
    VIVE_CONTROLLER: _POSES + _HAPTIC
    + _both("trigger", "input/trigger/value")
    + _both("squeeze", "input/squeeze/click")
    + _both("thumbstick", "input/trackpad")
    + _both("thumbstick_click", "input/trackpad/click")
    + _both("menu", "input/menu/click"),
}

_BINDING_RE = re.compile(r"^(/user/hand/(left|right))/(input|output)/([a-z0-9_-]+)(/[a-z0-9_-]+)?$")


def button_names(profile: str, hand: int) -> dict[str, str]:
    """Boolean action -> button name (as in :attr:`HandInput.buttons`) for ``hand`` (0 left, 1 right).

    The name is the bound component's identifier: ``x`` for ``/user/hand/left/input/x/click``,
    ``trackpad`` for a Vive trackpad click standing in for the thumbstick's. Unknown profiles give
    an empty mapping.
    """
    boolean = {a.name for a in ACTIONS if a.kind == "boolean"}
    names: dict[str, str] = {}
    for action, path in BINDINGS.get(profile, ()):
        m = _BINDING_RE.match(path)
        if action in boolean and m and m.group(1) == HANDS[hand]:
            names[action] = m.group(4)
    return names


# --------------------------------------------------------------------------------------------------
# The backend's part: the action set, input each frame, haptics
# --------------------------------------------------------------------------------------------------


class _ControllerMixin:
    """:class:`~xrcore.backends.openxr.backend.OpenXRBackend`'s controllers: the action set and its
    bindings (made with the first session), the interaction profile in use, input read each frame, haptics."""

    # The backend's state and methods these use, set in OpenXRBackend.__init__ (or defined there).
    instance: Any
    session: Any
    machine: SessionStateMachine
    interaction_profiles: list[str | None]
    _action_set: Any
    _actions: dict[str, Any]
    _hand_paths: list[Any]
    _hand_spaces: dict[tuple[str, int], Any]
    _hand_trackers: list[Any]
    _locate: Callable[[Any, int], Pose | None]
    _locate_joints: Callable[[int, int], HandJoints | None]

    def haptic_pulse(self, hand: int, amplitude: float = 0.5, duration_s: float = 0.05, frequency_hz: float = 0.0) -> None:
        """Vibrate controller ``hand`` (0 left, 1 right); ignored unless the session has input focus."""
        if hand not in (0, 1):
            raise ValueError(f"hand must be 0 or 1, got {hand!r}")
        if not self.machine.input_focused or "haptic" not in self._actions:
            return
        vibration = xr.HapticVibration(duration=max(int(duration_s * 1e9), xr.MIN_HAPTIC_DURATION),
                                       frequency=float(frequency_hz) or xr.FREQUENCY_UNSPECIFIED,
                                       amplitude=min(max(float(amplitude), 0.0), 1.0))
        info = xr.HapticActionInfo(action=self._actions["haptic"], subaction_path=self._hand_paths[hand])
        xr.apply_haptic_feedback(self.session, info, vibration)  # pyopenxr passes it by reference

    def _create_actions(self) -> None:
        if self._action_set is None:  # actions belong to the instance and survive a lost session
            self._hand_paths = [xr.string_to_path(self.instance, h) for h in HANDS]
            self._action_set = xr.create_action_set(self.instance, xr.ActionSetCreateInfo(
                action_set_name="medverse", localized_action_set_name="medverse", priority=0))
            kinds = {"pose": xr.ActionType.POSE_INPUT, "float": xr.ActionType.FLOAT_INPUT,
                     "vector2f": xr.ActionType.VECTOR2F_INPUT, "boolean": xr.ActionType.BOOLEAN_INPUT,
                     "vibration": xr.ActionType.VIBRATION_OUTPUT}
            for spec in ACTIONS:
                self._actions[spec.name] = xr.create_action(self._action_set, xr.ActionCreateInfo(
                    action_name=spec.name, action_type=kinds[spec.kind], localized_action_name=spec.label,
                    subaction_paths=self._hand_paths))
            accepted = 0
            for profile, pairs in BINDINGS.items():
                suggested = [xr.ActionSuggestedBinding(self._actions[a], xr.string_to_path(self.instance, p))
                             for a, p in pairs]
                try:
                    xr.suggest_interaction_profile_bindings(self.instance, xr.InteractionProfileSuggestedBinding(
                        interaction_profile=xr.string_to_path(self.instance, profile), suggested_bindings=suggested))
                    accepted += 1
                except xr.XrException as exc:  # a runtime may not know a profile; the others still work
                    logger.warning("runtime refused bindings for %s: %s", profile, exc)
            if not accepted:
                raise BackendError("the runtime accepted no controller bindings")
        xr.attach_session_action_sets(self.session, xr.SessionActionSetsAttachInfo(action_sets=[self._action_set]))
        self._hand_spaces = {
            (name, hand): xr.create_action_space(self.session, xr.ActionSpaceCreateInfo(
                action=self._actions[name], subaction_path=self._hand_paths[hand]))
            for name in ("grip_pose", "aim_pose") for hand in (0, 1)
        }

    def _update_profiles(self) -> None:
        for hand in (0, 1):
            state = xr.get_current_interaction_profile(self.session, self._hand_paths[hand])
            profile = xr.path_to_string(self.instance, state.interaction_profile) if state.interaction_profile else None
            if profile != self.interaction_profiles[hand]:
                logger.info("%s hand: %s", ("left", "right")[hand], profile or "no controller")
                self.interaction_profiles[hand] = profile

    def _read_inputs(self, display_time: int) -> InputState:
        xr.sync_actions(self.session, xr.ActionsSyncInfo(active_action_sets=[xr.ActiveActionSet(self._action_set, xr.NULL_PATH)]))
        hands = []
        for hand in (0, 1):
            path = self._hand_paths[hand]

            def get(kind: str, name: str) -> Any:
                info = xr.ActionStateGetInfo(action=self._actions[name], subaction_path=path)  # noqa: B023
                return getattr(xr, f"get_action_state_{kind}")(self.session, info)

            grip = aim = None
            if get("pose", "grip_pose").is_active:
                grip = self._locate(self._hand_spaces[("grip_pose", hand)], display_time)
            if get("pose", "aim_pose").is_active:
                aim = self._locate(self._hand_spaces[("aim_pose", hand)], display_time)
            joints = self._locate_joints(hand, display_time) if self._hand_trackers else None
            if joints is not None and aim is None:
                # A bare hand, no controller: the pointer and the grip come from its skeleton.
                aim = hand_aim_pose(joints)
                if grip is None:
                    grip = joints.poses[JOINT["palm"]]
            trigger, squeeze = get("float", "trigger"), get("float", "squeeze")
            stick = get("vector2f", "thumbstick")
            names = button_names(self.interaction_profiles[hand] or "", hand)
            pressed = frozenset(names[a] for a in names if get("boolean", a).current_state)
            hands.append(HandInput(
                grip=grip, aim=aim,
                trigger=float(trigger.current_state) if trigger.is_active else 0.0,
                squeeze=float(squeeze.current_state) if squeeze.is_active else 0.0,
                thumbstick=(float(stick.current_state.x), float(stick.current_state.y)) if stick.is_active else (0.0, 0.0),
                buttons=pressed,
                joints=joints,
            ))
        return InputState(left=hands[0], right=hands[1])
