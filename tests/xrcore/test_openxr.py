"""The OpenXR backend against the OpenXR 1.0 specification: session lifecycle, actions and bindings,
environment blend modes, and hand joints (``XR_EXT_hand_tracking``) with the pointer a bare hand gets.

No OpenXR runtime exists on CI machines, so the parts that talk to a runtime are checked where they
can be for real: the loader's refusal (no runtime) and the EGL graphics binding built from a real EGL
context. The reference tables below are transcribed from the specification (section 9.3, "Session
Lifecycle"; section 6.4, "Interaction Profiles"), independently of the backend's own tables.
"""

from __future__ import annotations

import json
import logging
import math
import re
import subprocess
import sys
import textwrap

import pytest

from xrcore.backends import openxr
from xrcore.backends.base import BackendError, BackendUnavailableError
from xrcore.backends.openxr import (
    ACTIONS,
    BINDINGS,
    BLEND_MODE_VALUES,
    GL_DEPTH24_STENCIL8,
    GL_DEPTH_COMPONENT32F,
    GL_RGBA8,
    GL_SRGB8_ALPHA8,
    HANDS,
    SPEC_TRANSITIONS,
    OpenXRBackend,
    OpenXRConfig,
    SessionAction,
    SessionState,
    SessionStateMachine,
    button_names,
    choose_blend_mode,
    choose_format,
    fov_from_xr,
    hand_aim_pose,
    joints_from_xr,
    pose_from_xr,
    seconds,
)
from xrcore.motion import BUTTONS
from xrcore.types import BLEND_MODES, HAND_JOINT_COUNT, JOINT, HandJoints, Pose

# pyopenxr through the backend, which imports it after choosing PyOpenGL's EGL platform.
xr = openxr.xr
A = SessionAction
S = SessionState

# --- the specification's tables ---------------------------------------------------------------------

#: XrSessionState values as the specification's C header defines them.
SPEC_STATE_VALUES = {"UNKNOWN": 0, "IDLE": 1, "READY": 2, "SYNCHRONIZED": 3, "VISIBLE": 4, "FOCUSED": 5,
                     "STOPPING": 6, "LOSS_PENDING": 7, "EXITING": 8}

#: The lifecycle diagram's edges (without LOSS_PENDING, which may follow any live state).
SPEC_EDGES = {("UNKNOWN", "IDLE"), ("IDLE", "READY"), ("READY", "SYNCHRONIZED"), ("SYNCHRONIZED", "VISIBLE"),
              ("VISIBLE", "FOCUSED"), ("FOCUSED", "VISIBLE"), ("VISIBLE", "SYNCHRONIZED"),
              ("SYNCHRONIZED", "STOPPING"), ("STOPPING", "IDLE"), ("IDLE", "EXITING")}

_BOTH = ("left", "right")
#: Interaction profiles: per hand, each component path (relative to /user/hand/<hand>) and its type.
SPEC_PROFILES: dict[str, dict[str, dict[str, str]]] = {}


def _profile(path: str, common: dict[str, str], left: dict[str, str] | None = None,
             right: dict[str, str] | None = None) -> None:
    SPEC_PROFILES[path] = {"left": {**common, **(left or {})}, "right": {**common, **(right or {})}}


_POSE_HAPTIC = {"input/grip/pose": "pose", "input/aim/pose": "pose", "output/haptic": "vibration"}
_profile("/interaction_profiles/khr/simple_controller",
         {"input/select/click": "boolean", "input/menu/click": "boolean", **_POSE_HAPTIC})
_profile("/interaction_profiles/oculus/touch_controller",
         {"input/squeeze/value": "float", "input/trigger/value": "float", "input/trigger/touch": "boolean",
          "input/thumbstick/x": "float", "input/thumbstick/y": "float", "input/thumbstick/click": "boolean",
          "input/thumbstick/touch": "boolean", "input/thumbrest/touch": "boolean", **_POSE_HAPTIC},
         left={"input/x/click": "boolean", "input/x/touch": "boolean", "input/y/click": "boolean",
               "input/y/touch": "boolean", "input/menu/click": "boolean"},
         right={"input/a/click": "boolean", "input/a/touch": "boolean", "input/b/click": "boolean",
                "input/b/touch": "boolean", "input/system/click": "boolean"})
_profile("/interaction_profiles/valve/index_controller",
         {"input/system/click": "boolean", "input/system/touch": "boolean", "input/a/click": "boolean",
          "input/a/touch": "boolean", "input/b/click": "boolean", "input/b/touch": "boolean",
          "input/squeeze/value": "float", "input/squeeze/force": "float", "input/trigger/click": "boolean",
          "input/trigger/value": "float", "input/trigger/touch": "boolean", "input/thumbstick/x": "float",
          "input/thumbstick/y": "float", "input/thumbstick/click": "boolean", "input/thumbstick/touch": "boolean",
          "input/trackpad/x": "float", "input/trackpad/y": "float", "input/trackpad/force": "float",
          "input/trackpad/touch": "boolean", **_POSE_HAPTIC})
_profile("/interaction_profiles/htc/vive_controller",
         {"input/system/click": "boolean", "input/squeeze/click": "boolean", "input/menu/click": "boolean",
          "input/trigger/click": "boolean", "input/trigger/value": "float", "input/trackpad/x": "float",
          "input/trackpad/y": "float", "input/trackpad/click": "boolean", "input/trackpad/touch": "boolean",
          **_POSE_HAPTIC})

#: Action types and the component types a suggested binding may connect them to (section 11.4:
#: a boolean component may drive a float action as 0/1; a vector2f action binds the parent
#: identifier of an x/y pair).
COMPATIBLE = {"pose": {"pose"}, "float": {"float", "boolean"}, "boolean": {"boolean"},
              "vibration": {"vibration"}, "vector2f": {"vector2f"}}


def component_type(profile: str, hand: str, component: str) -> str | None:
    table = SPEC_PROFILES[profile][hand]
    if component in table:
        return table[component]
    if f"{component}/x" in table and f"{component}/y" in table:
        return "vector2f"
    return None


# --- session states and the lifecycle ----------------------------------------------------------------


def test_session_state_values_match_the_specification_and_pyopenxr() -> None:
    """SessionState has exactly XrSessionState's names and values, as the registry (via pyopenxr) has them."""
    assert {s.name: s.value for s in SessionState} == SPEC_STATE_VALUES
    assert {s.name: int(s.value) for s in xr.SessionState} == SPEC_STATE_VALUES


def test_allowed_transitions_are_the_lifecycle_diagram() -> None:
    """SPEC_TRANSITIONS holds the diagram's edges plus LOSS_PENDING from every live state, nothing else."""
    edges = {(a.name, b.name) for a, targets in SPEC_TRANSITIONS.items() for b in targets}
    live = {s.name for s in SessionState} - {"LOSS_PENDING", "EXITING"}
    assert edges == SPEC_EDGES | {(s, "LOSS_PENDING") for s in live}
    assert SPEC_TRANSITIONS[S.EXITING] == frozenset() and SPEC_TRANSITIONS[S.LOSS_PENDING] == frozenset()


def run(machine: SessionStateMachine, *states: SessionState) -> list[list[SessionAction]]:
    return [machine.on_state_changed(s) for s in states]


def test_full_lifecycle_begins_renders_reads_input_and_ends() -> None:
    """IDLE..FOCUSED..STOPPING: begin on READY, render when VISIBLE/FOCUSED, input when FOCUSED, end on STOPPING."""
    m = SessionStateMachine()
    m.session_created()
    assert run(m, S.IDLE) == [[]] and not m.frame_loop
    assert run(m, S.READY) == [[A.BEGIN_SESSION]] and m.frame_loop and not m.should_render
    run(m, S.SYNCHRONIZED)
    assert m.frame_loop and not m.should_render and not m.input_focused
    run(m, S.VISIBLE)
    assert m.should_render and not m.input_focused
    run(m, S.FOCUSED)
    assert m.should_render and m.input_focused
    run(m, S.VISIBLE, S.SYNCHRONIZED)
    assert m.frame_loop and not m.should_render
    assert run(m, S.STOPPING) == [[A.END_SESSION]] and not m.frame_loop
    assert run(m, S.IDLE) == [[]]
    # The runtime may start the session again (the headset put back on) ...
    assert run(m, S.READY) == [[A.BEGIN_SESSION]]
    run(m, S.SYNCHRONIZED, S.STOPPING, S.IDLE)
    # ... or end it for good.
    assert run(m, S.EXITING) == [[A.DESTROY_SESSION, A.EXIT]] and m.exited
    assert m.unexpected == 0


def test_exit_request_while_running_asks_the_runtime_then_follows_it_out() -> None:
    """A user exit from FOCUSED calls xrRequestExitSession, ends on STOPPING, and exits on EXITING."""
    m = SessionStateMachine()
    run(m, S.IDLE, S.READY, S.SYNCHRONIZED, S.VISIBLE, S.FOCUSED)
    assert m.request_exit() == [A.REQUEST_EXIT] and not m.exited
    assert run(m, S.VISIBLE, S.SYNCHRONIZED, S.STOPPING, S.IDLE, S.EXITING) == [
        [], [], [A.END_SESSION], [], [A.DESTROY_SESSION, A.EXIT]]
    assert m.exited and m.request_exit() == []


def test_exit_request_when_not_running_leaves_at_once_and_never_begins() -> None:
    """In IDLE there is no running session to stop: exit directly; a later READY does not begin."""
    m = SessionStateMachine()
    run(m, S.IDLE)
    assert m.request_exit() == [A.DESTROY_SESSION, A.EXIT]
    m2 = SessionStateMachine()
    run(m2, S.IDLE)
    m2.exit_requested = True
    assert run(m2, S.READY) == [[A.DESTROY_SESSION, A.EXIT]] and not m2.frame_loop


@pytest.mark.parametrize("before", [S.IDLE, S.READY, S.SYNCHRONIZED, S.VISIBLE, S.FOCUSED, S.STOPPING])
def test_loss_pending_from_any_state_destroys_and_recreates_the_session(before: SessionState) -> None:
    """LOSS_PENDING: no xrEndSession, the session is destroyed and a new one is tried; then it starts over."""
    m = SessionStateMachine()
    path = [S.IDLE, S.READY, S.SYNCHRONIZED, S.VISIBLE, S.FOCUSED]
    if before is S.STOPPING:
        path = [S.IDLE, S.READY, S.SYNCHRONIZED, S.STOPPING]
    run(m, *path[: path.index(before) + 1])
    assert m.on_state_changed(S.LOSS_PENDING) == [A.DESTROY_SESSION, A.RECREATE_SESSION]
    assert not m.frame_loop and not m.should_render and not m.exited and m.unexpected == 0
    m.session_created()
    assert run(m, S.IDLE, S.READY) == [[], [A.BEGIN_SESSION]]


def test_loss_pending_after_an_exit_request_exits_instead_of_retrying() -> None:
    """A session lost while the user was leaving is not recreated."""
    m = SessionStateMachine()
    run(m, S.IDLE, S.READY, S.SYNCHRONIZED)
    m.request_exit()
    assert m.on_state_changed(S.LOSS_PENDING) == [A.DESTROY_SESSION, A.EXIT] and m.exited


def test_instance_loss_tears_everything_down_and_retries_unless_leaving() -> None:
    """XrEventDataInstanceLossPending: session and instance go; a new instance is tried unless exiting."""
    m = SessionStateMachine()
    run(m, S.IDLE, S.READY, S.SYNCHRONIZED, S.VISIBLE, S.FOCUSED)
    assert m.on_instance_loss_pending() == [A.DESTROY_SESSION, A.DESTROY_INSTANCE, A.RECREATE_INSTANCE]
    assert not m.frame_loop and m.state is S.UNKNOWN
    m2 = SessionStateMachine()
    run(m2, S.IDLE)
    m2.exit_requested = True
    assert m2.on_instance_loss_pending() == [A.DESTROY_SESSION, A.DESTROY_INSTANCE, A.EXIT]


def test_transition_outside_the_lifecycle_is_logged_counted_and_followed(caplog: pytest.LogCaptureFixture) -> None:
    """IDLE -> FOCUSED is not allowed: a warning, a count, and the machine follows the runtime."""
    m = SessionStateMachine()
    run(m, S.IDLE)
    with caplog.at_level(logging.WARNING, logger="xrcore.backends.openxr"):
        assert m.on_state_changed(S.FOCUSED) == []
    assert m.unexpected == 1 and m.state is S.FOCUSED
    assert any("IDLE -> FOCUSED" in r.getMessage() for r in caplog.records)


def test_unknown_state_value_is_counted_and_ignored() -> None:
    """A value that is no XrSessionState (a newer runtime, corrupt event) changes nothing and never raises."""
    m = SessionStateMachine()
    run(m, S.IDLE)
    assert m.on_state_changed(99) == [] and m.state is S.IDLE and m.unexpected == 1


def test_each_state_change_is_logged_once_as_old_to_new(caplog: pytest.LogCaptureFixture) -> None:
    """One INFO line per change, 'OLD -> NEW'; a repeated state logs nothing."""
    m = SessionStateMachine()
    with caplog.at_level(logging.INFO, logger="xrcore.backends.openxr"):
        run(m, S.IDLE, S.READY, S.READY, S.SYNCHRONIZED)
    lines = [r.getMessage() for r in caplog.records if r.name == "xrcore.backends.openxr"]
    assert lines == ["session state UNKNOWN -> IDLE", "session state IDLE -> READY", "session state READY -> SYNCHRONIZED"]


# --- actions and bindings ----------------------------------------------------------------------------


def test_action_names_are_valid_openxr_names() -> None:
    """Action names use only lower-case letters, digits, '-', '_' and '.', and are unique (section 11.3)."""
    names = [a.name for a in ACTIONS]
    assert len(set(names)) == len(names)
    assert all(re.fullmatch(r"[a-z0-9_.-]+", n) for n in names)
    assert {a.kind for a in ACTIONS} <= set(COMPATIBLE)


def test_bindings_cover_the_four_controllers() -> None:
    """Simple, Touch, Index and Vive controllers all have suggested bindings, and nothing else does."""
    assert set(BINDINGS) == set(SPEC_PROFILES)


@pytest.mark.parametrize("profile", sorted(SPEC_PROFILES))
def test_every_binding_path_exists_in_its_profile_with_a_compatible_type(profile: str) -> None:
    """Each suggested path names a component the specification lists for that hand, of a type the action accepts."""
    kinds = {a.name: a.kind for a in ACTIONS}
    pairs = BINDINGS[profile]
    assert len(set(pairs)) == len(pairs)
    for action, path in pairs:
        m = re.fullmatch(r"/user/hand/(left|right)/(.+)", path)
        assert m, path
        hand, component = m.groups()
        ctype = component_type(profile, hand, component)
        assert ctype is not None, f"{profile}: {path} is not a component of this profile"
        assert ctype in COMPATIBLE[kinds[action]], f"{profile}: {action} ({kinds[action]}) bound to {ctype} {path}"
        assert "/system/" not in path  # system buttons belong to the runtime


@pytest.mark.parametrize("profile", sorted(SPEC_PROFILES))
def test_poses_trigger_and_haptics_are_bound_on_both_hands(profile: str) -> None:
    """Grip and aim poses, the trigger and the haptic output are bound for each hand of every controller."""
    bound = {(a, p.split("/")[3]) for a, p in BINDINGS[profile]}
    for action in ("grip_pose", "aim_pose", "trigger", "haptic"):
        for hand in _BOTH:
            assert (action, hand) in bound, f"{profile}: {action} not bound on {hand}"


@pytest.mark.parametrize("profile", sorted(SPEC_PROFILES))
def test_squeeze_and_thumbstick_are_bound_wherever_the_controller_has_them(profile: str) -> None:
    """Every controller with a squeeze or a 2-axis stick/pad has them bound on both hands."""
    bound = {(a, p.split("/")[3]) for a, p in BINDINGS[profile]}
    table = SPEC_PROFILES[profile]["left"]
    has_squeeze = any(c.startswith("input/squeeze/") for c in table)
    has_2d = any(c.endswith("/x") for c in table)
    for hand in _BOTH:
        assert ((("squeeze", hand) in bound) == has_squeeze)
        assert ((("thumbstick", hand) in bound) == has_2d)


def test_button_names_follow_the_bound_component() -> None:
    """Touch: X/Y on the left, A/B on the right; the Vive trackpad click stands in for the stick click."""
    touch = "/interaction_profiles/oculus/touch_controller"
    assert button_names(touch, 0) == {"primary": "x", "secondary": "y", "menu": "menu", "thumbstick_click": "thumbstick"}
    assert button_names(touch, 1) == {"primary": "a", "secondary": "b", "thumbstick_click": "thumbstick"}
    assert button_names("/interaction_profiles/htc/vive_controller", 1) == {"menu": "menu", "thumbstick_click": "trackpad"}
    assert button_names("/interaction_profiles/unknown/thing", 0) == {}
    assert HANDS == ("/user/hand/left", "/user/hand/right")


@pytest.mark.parametrize("profile", sorted(SPEC_PROFILES))
def test_every_boolean_action_reaches_the_buttons_under_a_name_the_motion_scripts_know(profile: str) -> None:
    """Each bound boolean action of each controller, on each hand, is reported in HandInput.buttons under a
    name xrcore.motion.BUTTONS knows, so a recorded or scripted session names buttons as a headset does."""
    boolean = {a.name for a in ACTIONS if a.kind == "boolean"}
    for hand in (0, 1):
        names = button_names(profile, hand)
        bound = {a for a, p in BINDINGS[profile] if a in boolean and p.startswith(HANDS[hand])}
        assert set(names) == bound
        assert set(names.values()) <= BUTTONS, profile


# --- formats and conversions ------------------------------------------------------------------------


def test_swapchain_format_choice_prefers_srgb_then_falls_back() -> None:
    """sRGB colour when offered, plain RGBA8 otherwise, None when nothing fits; depth likewise."""
    assert choose_format([GL_RGBA8, GL_SRGB8_ALPHA8], (GL_SRGB8_ALPHA8, GL_RGBA8)) == GL_SRGB8_ALPHA8
    assert choose_format([0x881A, GL_RGBA8], (GL_SRGB8_ALPHA8, GL_RGBA8)) == GL_RGBA8
    assert choose_format([0x881A], (GL_SRGB8_ALPHA8, GL_RGBA8)) is None
    assert choose_format([GL_DEPTH24_STENCIL8, GL_DEPTH_COMPONENT32F], (GL_DEPTH_COMPONENT32F,)) == GL_DEPTH_COMPONENT32F


def test_xr_structures_convert_to_medverse_types() -> None:
    """XrPosef, XrFovf and XrTime map onto Pose, Fov and seconds with the same conventions."""
    p = xr.Posef(orientation=xr.Quaternionf(0.0, 0.7071068, 0.0, 0.7071068), position=xr.Vector3f(0.1, 1.6, -0.2))
    pose = pose_from_xr(p)
    assert pose.position == pytest.approx((0.1, 1.6, -0.2))
    assert pose.forward() == pytest.approx((-1.0, 0.0, 0.0), abs=1e-6)  # turned left: looking along -X
    fov = fov_from_xr(xr.Fovf(-0.9, 0.8, 0.85, -0.95))
    assert (fov.angle_left, fov.angle_right, fov.angle_up, fov.angle_down) == pytest.approx((-0.9, 0.8, 0.85, -0.95))
    assert seconds(11_111_111) == pytest.approx(1 / 90, rel=1e-6)
    assert math.isclose(seconds(1_700_000_000_000_000_000), 1.7e9)


def test_config_refuses_nonsense() -> None:
    """A reference space other than stage/local, or near >= far, is a ValueError naming the setting."""
    with pytest.raises(ValueError, match="reference_space"):
        OpenXRConfig(reference_space="floor")
    with pytest.raises(ValueError, match="near_m < far_m"):
        OpenXRConfig(near_m=1.0, far_m=0.5)
    with pytest.raises(ValueError, match="blend must be one of auto, opaque, additive, alpha"):
        OpenXRConfig(blend="passthrough")


# --- environment blend modes ------------------------------------------------------------------------------

OPAQUE, ADDITIVE, ALPHA = 1, 2, 3  # XrEnvironmentBlendMode, as the specification's header defines them


def test_blend_mode_names_are_xrcores_with_the_specification_values() -> None:
    """Every name in xrcore.types.BLEND_MODES maps to its XrEnvironmentBlendMode value, as pyopenxr has it too."""
    assert BLEND_MODE_VALUES == {"opaque": OPAQUE, "additive": ADDITIVE, "alpha": ALPHA}
    assert set(BLEND_MODE_VALUES) == set(BLEND_MODES)
    assert [int(xr.EnvironmentBlendMode[n]) for n in ("OPAQUE", "ADDITIVE", "ALPHA_BLEND")] == [OPAQUE, ADDITIVE, ALPHA]


def test_auto_blend_is_the_runtimes_first_known_mode() -> None:
    """'auto' takes the first mode the runtime lists, passing over values medverse has no name for."""
    assert choose_blend_mode([ALPHA, OPAQUE], "auto") == ("alpha", ("alpha", "opaque"))
    assert choose_blend_mode([1000999000, ADDITIVE], "auto") == ("additive", ("additive",))
    assert choose_blend_mode([OPAQUE, ALPHA], "alpha") == ("alpha", ("opaque", "alpha"))


@pytest.mark.parametrize(("offered", "wanted", "words"), [
    ([OPAQUE, ADDITIVE], "alpha", ("'alpha'", "it offers opaque, additive")),
    ([1000999000], "auto", ("no environment blend mode medverse knows", "1000999000")),
    ([], "opaque", ("no environment blend mode",)),
])
def test_a_blend_mode_not_offered_is_refused_in_one_line(offered: list[int], wanted: str, words: tuple[str, ...]) -> None:
    with pytest.raises(BackendError) as info:
        choose_blend_mode(offered, wanted)
    message = str(info.value)
    assert "\n" not in message and all(w in message for w in words), message


# --- hands --------------------------------------------------------------------------------------------------


def _quat_about(axis: tuple[float, float, float], angle: float) -> tuple[float, float, float, float]:
    s = math.sin(angle / 2)
    return (axis[0] * s, axis[1] * s, axis[2] * s, math.cos(angle / 2))


def _skeleton(pinch: float, turn: Pose) -> HandJoints:
    """A right hand, palm down, fingers along -Z, placed by ``turn``; ``pinch`` 0..1 curls the index finger
    (intermediate, distal and tip) down towards the thumb."""
    local = {name: (0.0, 0.0, -0.01 * i) for name, i in JOINT.items()}
    local.update(palm=(0.0, 0.0, -0.05), wrist=(0.0, 0.0, 0.0), index_proximal=(-0.025, 0.0, -0.09))
    for name, reach in (("index_intermediate", 0.04), ("index_distal", 0.065), ("index_tip", 0.085)):
        bend = pinch * math.pi / 2
        local[name] = (-0.025, -reach * math.sin(bend), -0.09 - reach * math.cos(bend))
    r, t = turn.rotation_matrix(), turn.position
    poses = []
    for name in JOINT:
        p = r @ local[name] + t
        poses.append(Pose((float(p[0]), float(p[1]), float(p[2])), turn.orientation))
    return HandJoints(tuple(poses), (0.01,) * HAND_JOINT_COUNT)


def test_hand_aim_starts_at_the_index_knuckle_and_points_from_the_wrist() -> None:
    """A hand turned 90 degrees left: the ray starts at the index proximal joint, runs along wrist -> knuckle,
    and its up is the back of the hand."""
    turn = Pose((0.1, 1.2, -0.3), _quat_about((0.0, 1.0, 0.0), math.pi / 2))
    joints = _skeleton(0.0, turn)
    aim = hand_aim_pose(joints)
    knuckle, wrist = joints.position("index_proximal"), joints.position("wrist")
    assert aim.position == pytest.approx(tuple(knuckle))
    direction = (knuckle - wrist) / math.dist(knuckle, wrist)
    assert aim.forward() == pytest.approx(direction, abs=1e-9)
    assert aim.rotation_matrix()[:, 1] == pytest.approx([0.0, 1.0, 0.0], abs=1e-9)


def test_hand_aim_holds_still_while_the_index_finger_pinches() -> None:
    """Curling the index finger from open to a full pinch leaves the ray's origin and direction unchanged."""
    turn = Pose((0.0, 1.3, -0.2), _quat_about((1.0, 0.0, 0.0), -0.4))
    open_aim, pinched_aim = hand_aim_pose(_skeleton(0.0, turn)), hand_aim_pose(_skeleton(1.0, turn))
    assert _skeleton(0.0, turn).position("index_tip") != pytest.approx(_skeleton(1.0, turn).position("index_tip"))
    assert pinched_aim.position == pytest.approx(open_aim.position)
    assert pinched_aim.forward() == pytest.approx(open_aim.forward(), abs=1e-12)


def test_hand_aim_of_a_degenerate_skeleton_is_the_palm_direction() -> None:
    """Knuckle on the wrist (no direction between them): the ray takes the palm's orientation, and never raises."""
    palm = Pose((0.0, 1.0, 0.0), _quat_about((0.0, 0.0, 1.0), 0.3))
    joints = HandJoints((palm,) + (Pose((0.0, 1.0, 0.0)),) * (HAND_JOINT_COUNT - 1), (0.01,) * HAND_JOINT_COUNT)
    aim = hand_aim_pose(joints)
    assert aim.orientation == palm.orientation and aim.position == (0.0, 1.0, 0.0)


def _locations(active: bool, flags: list[int]) -> object:
    buffer = (xr.HandJointLocationEXT * HAND_JOINT_COUNT)()
    for i, location in enumerate(buffer):
        location.location_flags = flags[i]
        location.pose = xr.Posef(orientation=xr.Quaternionf(0.0, 0.6, 0.0, 0.8), position=xr.Vector3f(0.01 * i, 1.0, -0.2))
        location.radius = 0.005 + 0.001 * i
    return xr.HandJointLocationsEXT(is_active=active, joint_locations=buffer)


VALID = int(xr.SpaceLocationFlags.POSITION_VALID_BIT | xr.SpaceLocationFlags.ORIENTATION_VALID_BIT)


def test_joint_locations_convert_to_hand_joints_in_order() -> None:
    """XrHandJointLocationsEXT with every joint valid: 26 poses (position, orientation x y z w) and radii, in
    XrHandJointEXT order."""
    joints = joints_from_xr(_locations(True, [VALID] * HAND_JOINT_COUNT))
    assert joints is not None
    assert joints.position("index_tip") == pytest.approx([0.1, 1.0, -0.2])
    assert joints.poses[JOINT["index_tip"]].orientation == pytest.approx((0.0, 0.6, 0.0, 0.8))
    assert joints.radii[JOINT["little_tip"]] == pytest.approx(0.030)


@pytest.mark.parametrize(("active", "invalid", "flag"), [
    (False, None, 0),
    (True, "little_tip", int(xr.SpaceLocationFlags.POSITION_VALID_BIT)),
    (True, "palm", 0),
], ids=["inactive", "one-orientation-invalid", "one-joint-unknown"])
def test_an_untracked_or_partial_hand_has_no_joints(active: bool, invalid: str | None, flag: int) -> None:
    """An inactive hand, or one with any joint lacking a valid position or orientation, gives None."""
    flags = [VALID] * HAND_JOINT_COUNT
    if invalid is not None:
        flags[JOINT[invalid]] = flag
    assert joints_from_xr(_locations(active, flags)) is None


# --- the real loader and a real EGL context -----------------------------------------------------------


def test_start_without_a_runtime_raises_one_clear_line_and_holds_nothing() -> None:
    """The real loader finds no runtime here: start() raises BackendUnavailableError in one line, nothing left open."""
    backend = OpenXRBackend()
    with pytest.raises(BackendUnavailableError) as info:
        backend.start()
    message = str(info.value)
    assert "no OpenXR runtime" in message and "\n" not in message
    assert backend.instance is None and backend.session is None and backend.context is None


def test_egl_graphics_binding_describes_a_real_egl_context() -> None:
    """From a real EGL context: display, the context's own config, the context, and a working eglGetProcAddress."""
    # In a child process: making and closing an EGL context here could disturb other tests' contexts
    # (Mesa shares one display per platform and eglTerminate would end them all).
    script = textwrap.dedent("""
        import ctypes, json
        from xrcore.gl.context import create_context
        from xrcore.backends.openxr import egl_graphics_binding
        from OpenGL import EGL
        ctx = create_context("egl", width=64, height=64)
        b = egl_graphics_binding(ctx)
        def addr(p):
            return ctypes.cast(p, ctypes.c_void_p).value
        wanted, got = EGL.EGLint(), EGL.EGLint()
        EGL.eglQueryContext(ctx._egl_display, ctx._egl_context, EGL.EGL_CONFIG_ID, ctypes.pointer(wanted))
        EGL.eglGetConfigAttrib(b.display, b.config, EGL.EGL_CONFIG_ID, ctypes.pointer(got))
        renderable = EGL.EGLint()
        EGL.eglGetConfigAttrib(b.display, b.config, EGL.EGL_RENDERABLE_TYPE, ctypes.pointer(renderable))
        proc = b.get_proc_address(b"glClear")
        print(json.dumps({
            "display": addr(b.display) == addr(ctx._egl_display),
            "context": addr(b.context) == addr(ctx._egl_context),
            "config_id": [wanted.value, got.value],
            "opengl_bit": bool(renderable.value & EGL.EGL_OPENGL_BIT),
            "proc": bool(ctypes.cast(proc, ctypes.c_void_p).value),
            "type": int(b.type),
        }))
        ctx.close()
    """)
    out = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["display"] and result["context"]
    assert result["config_id"][0] == result["config_id"][1] > 0
    assert result["opengl_bit"] and result["proc"]
    assert result["type"] == int(xr.StructureType.GRAPHICS_BINDING_EGL_MNDX)


def test_importing_the_backend_leaves_pyopengl_on_egl() -> None:
    """pyopenxr forces PyOpenGL's GLX platform at import on Linux; the backend puts EGL back."""
    import OpenGL.platform

    assert "EGL" in type(OpenGL.platform.PLATFORM).__name__
    assert openxr.xr is xr


# --- which OpenGL binding ------------------------------------------------------------------------------

OPENGL, EGL_EXT = "XR_KHR_opengl_enable", "XR_MNDX_egl_enable"


def test_binding_choice_prefers_egl_then_xlib_where_there_is_a_display() -> None:
    """EGL whenever the runtime offers it (display or not); Xlib/GLX without it only when DISPLAY is set."""
    assert openxr.choose_binding({OPENGL, EGL_EXT}, None) == "egl"
    assert openxr.choose_binding({OPENGL, EGL_EXT}, ":0") == "egl"
    assert openxr.choose_binding({OPENGL}, ":0") == "xlib"


@pytest.mark.parametrize(("offered", "display", "words"), [
    ({OPENGL}, None, ("XR_MNDX_egl_enable", "DISPLAY is not set")),
    ({OPENGL}, "", ("XR_MNDX_egl_enable", "DISPLAY is not set")),
    ({EGL_EXT}, ":0", ("XR_KHR_opengl_enable",)),
])
def test_no_possible_binding_is_refused_in_one_line(offered: set[str], display: str | None,
                                                     words: tuple[str, ...]) -> None:
    with pytest.raises(BackendUnavailableError) as info:
        openxr.choose_binding(offered, display)
    message = str(info.value)
    assert "\n" not in message and all(w in message for w in words)


def test_xlib_binding_refuses_a_context_that_is_not_glx(gl_context: object) -> None:
    """The shared EGL context has no GLX handles: a one-line BackendError, not a binding with null fields."""
    with pytest.raises(openxr.BackendError) as info:
        openxr.xlib_graphics_binding(gl_context)
    assert "GLX context" in str(info.value) and "'egl'" in str(info.value) and "\n" not in str(info.value)
