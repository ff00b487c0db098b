"""Head and hand motion as pure functions of time: scripted keyframes and procedural motions.

Every motion is a callable ``motion(t) -> MotionSample`` with no hidden state: the same ``t`` gives the
same poses, which is what makes simulator runs reproducible (the Monado simulated-HMD idea: a device
pose is a function of the timestamp it is given).

Script files are JSON::

    {"version": 1,
     "keyframes": [
       {"t": 0.0, "name": "start",
        "head": {"position": [0, 1.6, 0.6], "look_at": [0, 1.5, 0]},
        "right": {"position": [0.2, 1.3, 0.3], "orientation": [0, 0, 0, 1], "trigger": 0.0,
                  "buttons": ["a"]}},
       {"t": 2.0, "head": {"position": [0.3, 1.6, 0.5], "look_at": [0, 1.5, 0]}}]}

Each track (``head``, ``left``, ``right``) is interpolated between the keyframes that name it:
positions, trigger and squeeze linearly, orientations by slerp; buttons are held from the keyframe
that names them until the next keyframe of that track. Before the first and after the last keyframe a
track holds its end value; a hand that no keyframe names is untracked. A hand's pose is its aim pose
(-Z along the pointer ray); its grip pose is the same pose.

Beyond poses, a keyframe may carry what a user does with the tools (``docs/scripts.md`` has the whole
format and examples):

* ``"tool": {"right": "measure"}`` puts a tool in a hand at that keyframe (an event
  ``tool:right:measure`` on the frame nearest it);
* ``"aim": {"hand": "right", "at": "<structure>"}`` (or ``"at_point": [x, y, z]`` in twin millimetres)
  turns that hand so its ray lands on the structure's nearest visible surface point (or the point);
  the hand's ``position`` may then be left out: it is held beside the head. Aims are resolved when
  the run reaches them, by whoever runs the script (``Script.aim_resolver``, set by the session),
  since only it knows where the twin is;
* a hand may carry ``"gesture": "open" | "point" | "pinch" | "fist"`` (or ``"pinch": 0..1`` and
  ``"fist": 0..1``): the hand is then tracked as a bare hand, its 26 joints synthesised round the aim
  pose (:func:`synthetic_hand`), as ``XR_EXT_hand_tracking`` would report them.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from xrcore.types import HandInput, HandJoints, InputState, Pose

logger = logging.getLogger(__name__)

#: Scripts larger than this are refused before parsing (a hand-written script is a few kB).
MAX_SCRIPT_BYTES = 8 * 1024 * 1024
#: Buttons a script may hold down: the union of what the supported controllers have.
BUTTONS = frozenset({"a", "b", "x", "y", "menu", "system", "thumbstick", "trackpad"})
_TRACKS = ("head", "left", "right")
_SIDES = ("left", "right")
_KEYFRAME_KEYS = frozenset({"t", "name", "tool", "aim", *_TRACKS})
_HEAD_KEYS = frozenset({"position", "orientation", "look_at"})
_HAND_KEYS = _HEAD_KEYS | {"trigger", "squeeze", "thumbstick", "buttons", "gesture", "pinch", "fist"}
#: Tools a script may put in a hand (the session's palette).
TOOLS = frozenset({"select", "landmark", "measure", "section", "draw"})
#: Hand shapes a script may play, as (pinch, fist) amounts.
GESTURES: dict[str, tuple[float, float]] = {"open": (0.0, 0.0), "point": (0.0, 0.6), "pinch": (1.0, 0.0), "fist": (0.0, 1.0)}
#: Where a hand is held when a keyframe aims it without a position: head frame, metres (x right, y up,
#: -z forward); the left hand mirrors the right.
HAND_REST = (0.16, -0.26, -0.28)


class ScriptError(ValueError):
    """A motion script is malformed; the message names the file, the field and what was expected."""


@dataclass(frozen=True)
class MotionSample:
    """Where the head and hands are at one instant."""

    head: Pose
    inputs: InputState = InputState()


Motion = Callable[[float], MotionSample]


# --- quaternion helpers (x, y, z, w), pure numpy -------------------------------------------------


def quat_from_matrix(m: np.ndarray) -> tuple[float, float, float, float]:
    """Unit quaternion (x, y, z, w) of a (3, 3) rotation matrix (Shepperd's method, w >= 0)."""
    m = np.asarray(m, dtype=np.float64)
    trace = m[0, 0] + m[1, 1] + m[2, 2]
    if trace > 0:
        s = math.sqrt(trace + 1.0) * 2
        q = ((m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s, 0.25 * s)
    elif m[0, 0] > m[1, 1] and m[0, 0] > m[2, 2]:
        s = math.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2]) * 2
        q = (0.25 * s, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s, (m[2, 1] - m[1, 2]) / s)
    elif m[1, 1] > m[2, 2]:
        s = math.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2]) * 2
        q = ((m[0, 1] + m[1, 0]) / s, 0.25 * s, (m[1, 2] + m[2, 1]) / s, (m[0, 2] - m[2, 0]) / s)
    else:
        s = math.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1]) * 2
        q = ((m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, 0.25 * s, (m[1, 0] - m[0, 1]) / s)
    v = np.array(q)
    v /= np.linalg.norm(v)
    if v[3] < 0:
        v = -v
    return (float(v[0]), float(v[1]), float(v[2]), float(v[3]))


def look_rotation(
    eye: Sequence[float], target: Sequence[float], up: Sequence[float] = (0, 1, 0)
) -> tuple[float, float, float, float]:
    """Orientation whose -Z points from ``eye`` to ``target`` (metres) with +Y as close to ``up`` as possible."""
    forward = np.asarray(target, dtype=np.float64) - np.asarray(eye, dtype=np.float64)
    norm = np.linalg.norm(forward)
    if norm < 1e-9:
        raise ValueError("look_at target coincides with the position")
    z = -forward / norm
    x = np.cross(np.asarray(up, dtype=np.float64), z)
    if np.linalg.norm(x) < 1e-9:  # looking straight up or down: any horizontal right vector will do
        x = np.cross((0.0, 0.0, 1.0), z)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    return quat_from_matrix(np.column_stack([x, y, z]))


def slerp(q0: Sequence[float], q1: Sequence[float], u: float) -> tuple[float, float, float, float]:
    """Spherical interpolation between unit quaternions, ``u`` in 0..1, along the shorter arc."""
    a = np.asarray(q0, dtype=np.float64)
    b = np.asarray(q1, dtype=np.float64)
    dot = float(a @ b)
    if dot < 0:  # q and -q are the same rotation: take the short way round
        b, dot = -b, -dot
    if dot > 0.9995:  # nearly equal: lerp avoids dividing by sin(~0)
        r = a + u * (b - a)
    else:
        theta = math.acos(dot)
        r = (math.sin((1 - u) * theta) * a + math.sin(u * theta) * b) / math.sin(theta)
    r /= np.linalg.norm(r)
    return (float(r[0]), float(r[1]), float(r[2]), float(r[3]))


def _lerp3(a: Sequence[float], b: Sequence[float], u: float) -> tuple[float, float, float]:
    return (a[0] + (b[0] - a[0]) * u, a[1] + (b[1] - a[1]) * u, a[2] + (b[2] - a[2]) * u)


# --- scripts ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Aim:
    """Where a keyframe points a hand: ``structure`` (a name) or ``point_mm`` (twin millimetres)."""

    structure: str | None = None
    point_mm: tuple[float, float, float] | None = None


#: ``resolver(side, hand position (3,) world m, aim) -> orientation`` (x, y, z, w): turns a hand so
#: its ray lands where the aim says; the session supplies it (it knows the twin and where it is).
AimResolver = Callable[[str, np.ndarray, Aim], tuple[float, float, float, float]]


@dataclass(frozen=True)
class _TrackKey:
    t: float
    pose: Pose
    trigger: float = 0.0
    squeeze: float = 0.0
    thumbstick: tuple[float, float] = (0.0, 0.0)
    buttons: frozenset[str] = frozenset()
    aim: Aim | None = None
    placed: bool = True  # False: no position given, held beside the head
    hand_shape: tuple[float, float] | None = None  # (pinch, fist) of a bare tracked hand


@dataclass(frozen=True)
class Script:
    """A validated keyframe script. Call it with a time in seconds to get a :class:`MotionSample`.

    ``keyframes`` lists (time s, name) of the named keyframes, in time order; ``duration`` is the time
    of the last keyframe.
    """

    head: tuple[_TrackKey, ...]
    left: tuple[_TrackKey, ...]
    right: tuple[_TrackKey, ...]
    keyframes: tuple[tuple[float, str], ...] = ()
    duration: float = 0.0
    source: str = "<script>"
    #: (time s, hand, tool) of each ``tool`` choice, in time order
    tools: tuple[tuple[float, str, str], ...] = ()
    aim_resolver: AimResolver | None = field(default=None, compare=False)
    _resolved: dict[tuple[str, int], _TrackKey] = field(default_factory=dict, compare=False, repr=False)

    @property
    def events(self) -> tuple[tuple[float, str], ...]:
        """(time s, event) of every named keyframe (``keyframe:NAME``) and tool choice
        (``tool:HAND:TOOL``), in time order: what a backend reports on the frame nearest each."""
        named = [(t, f"keyframe:{name}") for t, name in self.keyframes]
        chosen = [(t, f"tool:{side}:{tool}") for t, side, tool in self.tools]
        return tuple(sorted(named + chosen, key=lambda e: e[0]))

    def with_aims(self, resolver: AimResolver) -> Script:
        """This script with ``resolver`` turning its aimed hands (a fresh copy: nothing resolved yet)."""
        return replace(self, aim_resolver=resolver, _resolved={})

    def __call__(self, t: float) -> MotionSample:
        head = _sample_track(self.head, t)
        return MotionSample(
            head=head.pose if head is not None else Pose(),
            inputs=InputState(left=self._hand_at("left", t), right=self._hand_at("right", t)),
        )

    def _hand_at(self, side: str, t: float) -> HandInput:
        keys: tuple[_TrackKey, ...] = getattr(self, side)
        if not keys:
            return HandInput()
        if all(k.aim is None and k.placed for k in keys):
            return _hand(_sample_track(keys, t), side)
        # the keys about t, with their aims resolved now (where the twin is when the run gets there)
        lo, hi = _bracket(keys, t)
        resolved = tuple(self._resolve(side, keys, i) for i in sorted({lo, hi}))
        return _hand(_sample_track(resolved, t), side)

    def _resolve(self, side: str, keys: tuple[_TrackKey, ...], i: int) -> _TrackKey:
        found = self._resolved.get((side, i))
        if found is not None:
            return found
        key = keys[i]
        pose = key.pose
        if not key.placed:
            head = _sample_track(self.head, key.t)
            rest = np.array([HAND_REST[0] * (1 if side == "right" else -1), HAND_REST[1], HAND_REST[2], 1.0])
            position = (head.pose.matrix() @ rest)[:3] if head is not None else rest[:3]
            pose = Pose((float(position[0]), float(position[1]), float(position[2])), pose.orientation)
        if key.aim is not None:
            if self.aim_resolver is None:
                raise ScriptError(f"{self.source}: keyframe at {key.t:g} s aims the {side} hand, but nothing resolves aims here")
            try:
                orientation = self.aim_resolver(side, np.asarray(pose.position, dtype=np.float64), key.aim)
            except ValueError as exc:  # an unknown structure, nothing visible: the script's fault
                raise ScriptError(f"{self.source}: keyframe at {key.t:g} s: {exc}") from None
            pose = Pose(pose.position, orientation)
        resolved = replace(key, pose=pose, aim=None, placed=True)
        self._resolved[(side, i)] = resolved
        return resolved


def _bracket(keys: tuple[_TrackKey, ...], t: float) -> tuple[int, int]:
    """Indices of the keys just before and just after ``t`` (the same one at either end); a binary
    search, since scripts may hold thousands of keyframes (recorded sessions)."""
    if t <= keys[0].t:
        return 0, 0
    if t >= keys[-1].t:
        return len(keys) - 1, len(keys) - 1
    lo, hi = 0, len(keys) - 1
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if keys[mid].t <= t:
            lo = mid
        else:
            hi = mid
    return lo, hi


def _hand(key: _TrackKey | None, side: str = "right") -> HandInput:
    if key is None:
        return HandInput()
    joints = synthetic_hand(key.pose, side, *key.hand_shape) if key.hand_shape is not None else None
    return HandInput(
        grip=key.pose,
        aim=key.pose,
        trigger=key.trigger,
        squeeze=key.squeeze,
        thumbstick=key.thumbstick,
        buttons=key.buttons,
        joints=joints,
    )


def synthetic_hand(aim: Pose, side: str, pinch: float, fist: float) -> HandJoints:
    """A plausible 26-joint hand (``XR_EXT_hand_tracking`` order) round an aim pose: fingers along the
    aim's -Z, palm facing down (-Y), thumb on the inside; ``pinch`` 0..1 brings the thumb and index
    tips together (1: touching), ``fist`` 0..1 curls the middle, ring and little fingers to the palm.
    """
    r = aim.rotation_matrix()
    origin = np.asarray(aim.position, dtype=np.float64)
    inward = -1.0 if side == "right" else 1.0  # towards the thumb, along the hand's x

    def world(x: float, y: float, z: float) -> Pose:
        p = origin + r @ np.array([x, y, z])
        return Pose((float(p[0]), float(p[1]), float(p[2])), aim.orientation)

    # hand frame, metres: palm 4 cm behind the aim point, fingers towards -z
    joints: list[Pose] = [world(0, 0, 0.04), world(0, 0, 0.09)]  # palm, wrist
    pinch_point = np.array([inward * 0.01, -0.02, -0.05])
    thumb_open = [np.array([inward * d, -0.005, 0.06 - 0.03 * k]) for k, d in enumerate((0.025, 0.04, 0.05, 0.06))]
    for k, p in enumerate(thumb_open):
        w = pinch * (k / 3.0)
        q = (1 - w) * p + w * pinch_point if k == 3 else (1 - pinch * 0.5 * k / 3) * p + pinch * 0.5 * k / 3 * pinch_point
        joints.append(world(*q))
    for finger, x in (("index", 0.0), ("middle", 1.0), ("ring", 2.0), ("little", 3.0)):
        spread = inward * (0.018 - 0.012 * x)
        curl = fist if finger != "index" else 0.0
        # metacarpal, proximal, intermediate, distal, tip: 2.5 cm apart along -z, curling under the palm
        for k in range(5):
            along = 0.03 - 0.025 * k
            if k >= 2 and curl > 0:
                bend = curl * (k - 1) / 3.0
                along = along * (1 - bend) + 0.03 * bend
                down = -0.03 * bend
            else:
                down = 0.0
            if finger == "index" and k == 4:
                tip = np.array([spread, down, along])
                tip = (1 - pinch) * tip + pinch * pinch_point
                joints.append(world(*tip))
                continue
            joints.append(world(spread, down, along))
    radii = (0.02, 0.02) + (0.012, 0.011, 0.01, 0.009) + (0.011, 0.01, 0.009, 0.008, 0.007) * 4
    return HandJoints(tuple(joints), radii)


def _sample_track(keys: tuple[_TrackKey, ...], t: float) -> _TrackKey | None:
    if not keys:
        return None
    lo, hi = _bracket(keys, t)
    if lo == hi:
        return keys[lo]
    a, b = keys[lo], keys[hi]
    u = (t - a.t) / (b.t - a.t)
    return _TrackKey(
        t=t,
        pose=Pose(_lerp3(a.pose.position, b.pose.position, u), slerp(a.pose.orientation, b.pose.orientation, u)),
        trigger=a.trigger + (b.trigger - a.trigger) * u,
        squeeze=a.squeeze + (b.squeeze - a.squeeze) * u,
        thumbstick=(
            a.thumbstick[0] + (b.thumbstick[0] - a.thumbstick[0]) * u,
            a.thumbstick[1] + (b.thumbstick[1] - a.thumbstick[1]) * u,
        ),
        buttons=a.buttons,
        hand_shape=_lerp_shape(a.hand_shape, b.hand_shape, u),
    )


def _lerp_shape(a: tuple[float, float] | None, b: tuple[float, float] | None, u: float) -> tuple[float, float] | None:
    """A bare hand's (pinch, fist) between two keys; a hand that turns into a controller keeps its shape."""
    if a is None or b is None:
        return a
    return (a[0] + (b[0] - a[0]) * u, a[1] + (b[1] - a[1]) * u)


class _Validator:
    """Walks the parsed JSON and raises ScriptError naming the file and the JSON path of a bad field."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, where: str, message: str) -> ScriptError:
        return ScriptError(f"{self.source}: {where}: {message}")

    def number(self, value: Any, where: str, lo: float = -math.inf, hi: float = math.inf) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise self.fail(where, f"expected a finite number, got {value!r}")
        if not lo <= value <= hi:
            raise self.fail(where, f"expected a number in {lo:g}..{hi:g}, got {value!r}")
        return float(value)

    def vector(self, value: Any, n: int, where: str, what: str) -> tuple[float, ...]:
        if not isinstance(value, list) or len(value) != n:
            got = f"{len(value)} items" if isinstance(value, list) else repr(value)
            raise self.fail(where, f"expected {n} numbers {what}, got {got}")
        return tuple(self.number(v, f"{where}[{i}]") for i, v in enumerate(value))

    def pose(self, obj: dict[str, Any], where: str, position_optional: bool = False) -> Pose:
        if "position" not in obj:
            if not position_optional:
                raise self.fail(where, "missing 'position' ([x, y, z] in metres)")
            if "look_at" in obj or "orientation" in obj:
                raise self.fail(where, "an aimed hand takes its orientation from 'aim': drop 'look_at'/'orientation'")
            return Pose()
        position = self.vector(obj["position"], 3, f"{where}.position", "(x, y, z) in metres")
        if "orientation" in obj and "look_at" in obj:
            raise self.fail(where, "give either 'orientation' or 'look_at', not both")
        if "look_at" in obj:
            target = self.vector(obj["look_at"], 3, f"{where}.look_at", "(x, y, z) in metres")
            try:
                orientation = look_rotation(position, target)
            except ValueError as exc:
                raise self.fail(f"{where}.look_at", str(exc)) from None
        elif "orientation" in obj:
            q = np.array(self.vector(obj["orientation"], 4, f"{where}.orientation", "(x, y, z, w)"))
            norm = float(np.linalg.norm(q))
            if norm < 1e-6:
                raise self.fail(f"{where}.orientation", "quaternion has zero length")
            orientation = (float(q[0] / norm), float(q[1] / norm), float(q[2] / norm), float(q[3] / norm))
        else:
            orientation = (0.0, 0.0, 0.0, 1.0)
        return Pose(position, orientation)  # type: ignore[arg-type]

    def aim(self, obj: Any, where: str) -> tuple[str, Aim]:
        if not isinstance(obj, dict):
            raise self.fail(where, f"expected an object like {{\"hand\": \"right\", \"at\": \"<structure>\"}}, got {obj!r}")
        unknown = sorted(set(obj) - {"hand", "at", "at_point"})
        if unknown:
            raise self.fail(where, f"unknown field(s) {', '.join(unknown)}; allowed: at, at_point, hand")
        side = obj.get("hand", "right")
        if side not in _SIDES:
            raise self.fail(f"{where}.hand", f"expected 'left' or 'right', got {side!r}")
        if ("at" in obj) == ("at_point" in obj):
            raise self.fail(where, "give exactly one of 'at' (a structure name) or 'at_point' ([x, y, z] twin mm)")
        if "at" in obj:
            if not isinstance(obj["at"], str) or not obj["at"].strip():
                raise self.fail(f"{where}.at", f"expected a structure name, got {obj['at']!r}")
            return side, Aim(structure=obj["at"])
        point = self.vector(obj["at_point"], 3, f"{where}.at_point", "(x, y, z) in twin millimetres")
        return side, Aim(point_mm=(point[0], point[1], point[2]))

    def tools(self, obj: Any, where: str, t: float) -> list[tuple[float, str, str]]:
        if isinstance(obj, str):
            obj = {"right": obj}
        if not isinstance(obj, dict) or not obj:
            raise self.fail(where, f"expected a tool name or {{\"left\"|\"right\": tool}}, got {obj!r}")
        out = []
        for side, tool in obj.items():
            if side not in _SIDES:
                raise self.fail(where, f"unknown hand {side!r}; expected 'left' or 'right'")
            if tool not in TOOLS:
                raise self.fail(f"{where}.{side}", f"unknown tool {tool!r}; known: {', '.join(sorted(TOOLS))}")
            out.append((t, side, tool))
        return out

    def track(self, obj: Any, where: str, t: float, hand: bool, aim: Aim | None = None) -> _TrackKey:
        if not isinstance(obj, dict):
            raise self.fail(where, f"expected an object with 'position', got {type(obj).__name__}")
        allowed = _HAND_KEYS if hand else _HEAD_KEYS
        unknown = sorted(set(obj) - allowed)
        if unknown:
            raise self.fail(where, f"unknown field(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}")
        pose = self.pose(obj, where, position_optional=aim is not None)
        if not hand:
            return _TrackKey(t, pose)
        buttons = obj.get("buttons", [])
        if not isinstance(buttons, list) or not all(isinstance(b, str) for b in buttons):
            raise self.fail(f"{where}.buttons", f"expected a list of button names, got {buttons!r}")
        bad = sorted(set(buttons) - BUTTONS)
        if bad:
            raise self.fail(f"{where}.buttons", f"unknown button(s) {', '.join(bad)}; known: {', '.join(sorted(BUTTONS))}")
        stick = self.vector(obj.get("thumbstick", [0.0, 0.0]), 2, f"{where}.thumbstick", "(x, y) in -1..1")
        for i, v in enumerate(stick):
            self.number(v, f"{where}.thumbstick[{i}]", -1.0, 1.0)
        shape = None
        if "gesture" in obj:
            if obj["gesture"] not in GESTURES:
                raise self.fail(f"{where}.gesture", f"unknown gesture {obj['gesture']!r}; known: {', '.join(sorted(GESTURES))}")
            if "pinch" in obj or "fist" in obj:
                raise self.fail(where, "give either 'gesture' or 'pinch'/'fist', not both")
            shape = GESTURES[obj["gesture"]]
        elif "pinch" in obj or "fist" in obj:
            shape = (self.number(obj.get("pinch", 0.0), f"{where}.pinch", 0.0, 1.0),
                     self.number(obj.get("fist", 0.0), f"{where}.fist", 0.0, 1.0))  # fmt: skip
        return _TrackKey(
            t,
            pose,
            trigger=self.number(obj.get("trigger", 0.0), f"{where}.trigger", 0.0, 1.0),
            squeeze=self.number(obj.get("squeeze", 0.0), f"{where}.squeeze", 0.0, 1.0),
            thumbstick=(stick[0], stick[1]),
            buttons=frozenset(buttons),
            aim=aim,
            placed="position" in obj,
            hand_shape=shape,
        )

    def script(self, doc: Any) -> Script:
        if not isinstance(doc, dict):
            raise self.fail("top level", f"expected a JSON object with 'keyframes', got {type(doc).__name__}")
        unknown = sorted(set(doc) - {"version", "keyframes", "description"})
        if unknown:
            raise self.fail("top level", f"unknown field(s) {', '.join(unknown)}; allowed: description, keyframes, version")
        version = doc.get("version", 1)
        if version != 1:
            raise self.fail("version", f"unsupported script version {version!r} (this medverse reads version 1)")
        frames = doc.get("keyframes")
        if not isinstance(frames, list) or not frames:
            raise self.fail("keyframes", "expected a non-empty list of keyframes")
        tracks: dict[str, list[_TrackKey]] = {name: [] for name in _TRACKS}
        named: list[tuple[float, str]] = []
        tools: list[tuple[float, str, str]] = []
        names: set[str] = set()
        last_t = -math.inf
        for i, kf in enumerate(frames):
            where = f"keyframes[{i}]"
            if not isinstance(kf, dict):
                raise self.fail(where, f"expected an object, got {type(kf).__name__}")
            unknown = sorted(set(kf) - _KEYFRAME_KEYS)
            if unknown:
                raise self.fail(where, f"unknown field(s) {', '.join(unknown)}; allowed: {', '.join(sorted(_KEYFRAME_KEYS))}")
            if "t" not in kf:
                raise self.fail(where, "missing 't' (time in seconds)")
            aims: dict[str, Aim] = {}
            t = self.number(kf["t"], f"{where}.t", 0.0)
            if t <= last_t:
                raise self.fail(f"{where}.t", f"times must increase: {t:g} s follows {last_t:g} s")
            last_t = t
            if "name" in kf:
                name = kf["name"]
                if not isinstance(name, str) or not name:
                    raise self.fail(f"{where}.name", f"expected a non-empty string, got {name!r}")
                if name in names:
                    raise self.fail(f"{where}.name", f"keyframe name {name!r} is used twice")
                names.add(name)
                named.append((t, name))
            if "tool" in kf:
                tools += self.tools(kf["tool"], f"{where}.tool", t)
            if "aim" in kf:
                side, aim = self.aim(kf["aim"], f"{where}.aim")
                aims[side] = aim
            for track in _TRACKS:
                if track in kf:
                    tracks[track].append(self.track(kf[track], f"{where}.{track}", t, track != "head", aims.get(track)))
                elif track in aims:  # aimed without a track entry: a hand held beside the head
                    tracks[track].append(self.track({}, f"{where}.{track}", t, True, aims[track]))
        if not tracks["head"]:
            raise self.fail("keyframes", "no keyframe has a 'head' pose")
        return Script(
            head=tuple(tracks["head"]),
            left=tuple(tracks["left"]),
            right=tuple(tracks["right"]),
            keyframes=tuple(named),
            duration=last_t,
            source=self.source,
            tools=tuple(tools),
        )


def parse_script(doc: Any, source: str = "<script>") -> Script:
    """Validate a parsed JSON document and return the :class:`Script`; raises :class:`ScriptError`."""
    return _Validator(source).script(doc)


def load_script(path: str | Path) -> Script:
    """Read and validate a JSON script file; raises :class:`ScriptError` with a one-line reason."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ScriptError(f"{path}: cannot read script: {exc.strerror or exc}") from None
    if size > MAX_SCRIPT_BYTES:
        raise ScriptError(f"{path}: script is {size} bytes, more than the {MAX_SCRIPT_BYTES} byte limit")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ScriptError(f"{path}: cannot read script as UTF-8 text: {exc}") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ScriptError(f"{path}: not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    script = parse_script(doc, str(path))
    logger.info("loaded motion script %s: %.2f s, %d named keyframes", path, script.duration, len(script.keyframes))
    return script


# --- procedural motions -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Orbit:
    """Walk round the twin at ``radius`` m, eyes ``height`` m above its centre, looking at it.

    One turn takes ``period`` s; the right hand points at the centre from below the eyes.
    """

    center: tuple[float, float, float] = (0.0, 0.0, 0.0)
    radius: float = 0.5
    height: float = 0.1
    period: float = 8.0
    keyframes: tuple[tuple[float, str], ...] = field(default=())

    def __call__(self, t: float) -> MotionSample:
        angle = 2 * math.pi * t / self.period
        cx, cy, cz = self.center
        eye = (cx + self.radius * math.sin(angle), cy + self.height, cz + self.radius * math.cos(angle))
        head = Pose(eye, look_rotation(eye, self.center))
        hand_pos = tuple(float(v) for v in head.matrix()[:3] @ np.array([0.15, -0.25, -0.15, 1.0]))
        right = Pose(hand_pos, look_rotation(hand_pos, self.center))  # type: ignore[arg-type]
        return MotionSample(head, InputState(right=HandInput(grip=right, aim=right)))


@dataclass(frozen=True)
class LookAround:
    """Stand ``distance`` m in front of the twin (+Z side) and sweep the gaze: yaw and pitch sinusoids
    of ``yaw`` and ``pitch`` radians amplitude, ``period`` s per sweep; hands untracked."""

    center: tuple[float, float, float] = (0.0, 0.0, 0.0)
    distance: float = 0.5
    yaw: float = math.radians(30)
    pitch: float = math.radians(15)
    period: float = 6.0
    keyframes: tuple[tuple[float, str], ...] = field(default=())

    def __call__(self, t: float) -> MotionSample:
        phase = 2 * math.pi * t / self.period
        yaw = self.yaw * math.sin(phase)
        pitch = self.pitch * math.sin(2 * phase)
        cx, cy, cz = self.center
        eye = (cx, cy, cz + self.distance)
        direction = (math.sin(yaw) * -1 * math.cos(pitch), math.sin(pitch), -math.cos(yaw) * math.cos(pitch))
        target = (eye[0] + direction[0], eye[1] + direction[1], eye[2] + direction[2])
        return MotionSample(Pose(eye, look_rotation(eye, target)))


@dataclass(frozen=True)
class ReachAndPoint:
    """Stand ``distance`` m in front of the twin; the right hand reaches out from the hip, points at
    the centre and pulls the trigger, then returns, once every ``period`` s."""

    center: tuple[float, float, float] = (0.0, 0.0, 0.0)
    distance: float = 0.6
    period: float = 4.0
    keyframes: tuple[tuple[float, str], ...] = field(default=())

    def __call__(self, t: float) -> MotionSample:
        cx, cy, cz = self.center
        eye = (cx, cy + 0.1, cz + self.distance)
        head = Pose(eye, look_rotation(eye, self.center))
        # reach in 0..1: smooth rise and fall over one period
        reach = 0.5 - 0.5 * math.cos(2 * math.pi * (t % self.period) / self.period)
        rest = (cx + 0.2, cy - 0.35, cz + self.distance - 0.05)
        out = (cx + 0.1, cy - 0.05, cz + self.distance - 0.35)
        pos = _lerp3(rest, out, reach)
        down = look_rotation(pos, (pos[0], pos[1] - 1.0, pos[2] - 0.2))
        pointing = look_rotation(pos, self.center)
        aim = Pose(pos, slerp(down, pointing, reach))
        trigger = 1.0 if reach > 0.9 else 0.0
        return MotionSample(head, InputState(right=HandInput(grip=aim, aim=aim, trigger=trigger)))


PROCEDURAL: dict[str, type] = {"orbit": Orbit, "look-around": LookAround, "reach-and-point": ReachAndPoint}


def procedural(name: str, center: Sequence[float], size: float) -> Motion:
    """A procedural motion by name, framed for a twin centred at ``center`` (m) about ``size`` m across.

    Raises ``ValueError`` listing the names for an unknown ``name``.
    """
    if name not in PROCEDURAL:
        raise ValueError(f"unknown motion {name!r}; choose one of {', '.join(sorted(PROCEDURAL))}")
    c = tuple(float(v) for v in center)
    distance = max(0.3, 1.4 * size)
    if name == "orbit":
        return Orbit(center=c, radius=distance, height=0.25 * size)  # type: ignore[arg-type]
    if name == "look-around":
        return LookAround(center=c, distance=distance)  # type: ignore[arg-type]
    return ReachAndPoint(center=c, distance=distance)  # type: ignore[arg-type]
