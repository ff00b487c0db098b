"""The state bridge: a user's intents and the room's shared state, kept equal.

The room's :class:`net.state.SharedState` is the truth everyone converges on; a user's
:class:`~sessions.workspace.Workspace` shows it. :class:`StateBridge` joins them:

- **outgoing**: a local final intent (``Workspace.on_applied``) is applied optimistically (the tools
  already did), then the keys it touched (a landmark, a measurement, a stroke, the clip planes, the
  twin's placement, the selection) are compared with the shared state and each difference becomes a
  state op (:meth:`Room.make_op`). Undo works the same way: what the undone change touched is
  compared and sent.
- **incoming**: whenever the shared state changed (an op from the room, a late joiner's snapshot),
  :meth:`reconcile` compares it with the workspace and applies the differences *through the
  workspace*, as the intents of the mark's author (``remote`` intents): nothing bypasses it.
- **no echo**: intents the bridge applies itself are never sent back (``_applying``), and a reconciled
  workspace has no difference left to send anyway.
- **refusal** (the role policy, a room's answer): the ops a local intent needs are worked out first,
  and ``permit(op)`` (``net.roles.check`` with the participant's role now) may refuse any of them
  before one is made; the optimistic change is then rolled back by reconciling the touched keys from
  the shared state, which never saw it, and the reason is shown as feedback (:attr:`feedback`) and
  kept in :attr:`refusals`. So a refused intent is never sent and changes nothing locally. An
  ``OpRefusedError`` from the room's ``make_op`` (a grant or revoke that reached the net thread
  first) is handled the same way, and :meth:`refused` is also the way in for a refusal that comes back
  from the room after sending (a peer's or the relay's ``STATE_REFUSAL``).

Units on the wire (docs/protocol.md, "positions are metres in the twin's room frame"): landmark
positions, stroke points and clip planes in the twin's own coordinates in **metres** (intents use
millimetres; the wire rounds to 0.1 mm), measurements in twin millimetres, the twin transform in world
metres. A clip plane ``{normal: n, d}`` is the plane n·p + d = 0 of twin points p (metres); the side
kept is n·p + d >= 0, as the intent's ``normal . p + offset_mm >= 0`` and the scene's ``ClipPlane``
(so ``d = offset_mm / 1000``).

This is the one place that turns shared state into scene changes: a live participant
(:class:`~sessions.consult.room.ConsultSession`) and a replay (:mod:`sessions.recording.replay`, over a
:class:`StateView`) both reconcile through :class:`StateBridge`, and :func:`op_intents` is the inverse
of what the bridge sends, for scoring a recorded participant.

Mark ids: a workspace id ``alice/L3`` travels as ``alice:L3`` (``/`` is not an op id character); the
part before the first ``:`` names the author, who alone may erase the mark.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from net.errors import ProtocolError
from net.protocol import MAX_CLIP_PLANES, MAX_STROKE_POINTS, OpKind, StateOp, validate_payload
from net.state import OpRefusedError, SharedState
from sessions import intents as it
from sessions.workspace import Workspace
from xrcore.scene import SceneError

logger = logging.getLogger(__name__)

#: Who a reconciled change is attributed to when the room does not say.
ROOM_USER = "room"

Key = tuple[str, str]  # (collection, key) of the workspace: ("landmarks", "alice/L1"), ("pose", "twin")
Planned = tuple[OpKind, dict[str, Any]]  # an op to make: kind and payload


class Room(Protocol):
    """What the bridge needs of a room: its shared state and a way to make (apply and send) an op.
    :class:`net.participant.Participant` is one; tests use two states passing ops by hand."""

    @property
    def state(self) -> SharedState: ...

    def make_op(self, kind: OpKind | int, payload: Any) -> StateOp: ...


def op_id(mark_id: str) -> str:
    """A workspace mark id as an op id: ``alice/L3`` -> ``alice:L3``."""
    return mark_id.replace("/", ":", 1)


def mark_id(ident: str) -> str:
    """An op id as a workspace mark id: ``alice:L3`` -> ``alice/L3`` (an id without ``:`` stays)."""
    return ident.replace(":", "/", 1)


def author(ident: str) -> str:
    """Who made the mark of op id (or mark id) ``ident``: the part before ``:`` or ``/``."""
    for sep in (":", "/"):
        if sep in ident:
            return ident.split(sep, 1)[0]
    return ROOM_USER


def _metres(point_mm: tuple[float, ...] | list[float]) -> list[float]:
    return [round(float(c) / 1000.0, 4) for c in point_mm]


def _mm(position_m: list[float]) -> tuple[float, float, float]:
    return (round(position_m[0] * 1000.0, 3), round(position_m[1] * 1000.0, 3), round(position_m[2] * 1000.0, 3))


def room_plane_id(index: int) -> str:
    """The workspace id of room clip plane ``index`` when no local plane holds it."""
    return f"{ROOM_USER}/P{index}"


def _structures_label(structures: tuple[str | None, str | None]) -> str:
    """A measurement's two structures as its label (``a | b``, empty names for none); '' when too long."""
    text = " | ".join(s or "" for s in structures)
    return text if len(text) <= 128 and text.isprintable() and text != " | " else ""


def _structures(label: str) -> tuple[str | None, str | None]:
    parts = label.split(" | ")
    if len(parts) != 2:
        return (None, None)
    return (parts[0] or None, parts[1] or None)


def _thin(points: list[list[float]]) -> list[list[float]]:
    """At most MAX_STROKE_POINTS points, evenly chosen, both ends kept."""
    if len(points) <= MAX_STROKE_POINTS:
        return points
    step = (len(points) - 1) / (MAX_STROKE_POINTS - 1)
    return [points[round(i * step)] for i in range(MAX_STROKE_POINTS)]


@dataclass
class BridgeCounters:
    """What the bridge did: ops sent, remote intents applied, refusals (local policy or the room),
    remote changes the workspace would not take, reconciliations run."""

    ops_sent: int = 0
    remote_applied: int = 0
    refused: int = 0
    not_applicable: int = 0
    reconciles: int = 0


class StateBridge:
    """Keeps ``workspace`` and ``room.state`` equal (see the module docstring).

    Parameters
    ----------
    workspace
        The local user's workspace (its ``on_applied`` listener is registered here).
    room
        The room (:class:`Room`).
    user
        The local user's name (their intents are the ones sent).
    clock
        Session time for the intents the bridge applies, seconds.
    permit
        ``permit(op)`` -> a reason to refuse an op a local intent needs (the op as the room's state
        would make it next), or None to allow it; one refused op refuses the whole intent.
    """

    def __init__(
        self,
        workspace: Workspace,
        room: Room,
        user: str,
        *,
        clock: Callable[[], float] = time.monotonic,
        permit: Callable[[StateOp], str | None] | None = None,
    ) -> None:
        self.workspace = workspace
        self.room = room
        self.user = user
        self.clock = clock
        self.permit = permit
        self.counters = BridgeCounters()
        #: the latest line to show the user (a remote change, a refusal)
        self.feedback = ""
        #: every refusal's line, in order (the terminal prints them)
        self.refusals: list[str] = []
        self._applying = False
        self._plane_index: dict[str, int] = {}  # workspace plane id -> room clip index
        self._authors: dict[Key, str] = {}  # who last changed a key, from the ops that came in
        self._undo: dict[str, list[list[Key]]] = {}  # per local user: keys of each change, for undo
        self._history_len: dict[str, int] = {}
        self._skipped: dict[Key, str] = {}  # remote values the workspace refused, not retried
        self._seen_ops = -1
        self._structures = {st.name for st in workspace.scene.twin.structures}
        # where the twin stands while the room has no transform (a refused move goes back here)
        pose, scale = workspace.pose["twin"]
        self._home: dict[str, Any] = {"position": list(pose.position), "orientation": _unit(pose.orientation), "scale": scale}
        workspace.on_applied(self._on_applied)

    # --- outgoing -----------------------------------------------------------------------------------

    def _on_applied(self, intent: it.Intent) -> None:
        if self._applying or intent.user != self.user:
            return
        keys = self._touched(intent)
        if not keys:
            return
        try:
            planned = [op for key in keys for op in self._plan(key)]
            reason = next((r for r in map(self._check, planned) if r is not None), None)
        except ProtocolError as exc:  # a value the wire cannot carry: say so, put the room's back
            reason = f"cannot share this: {exc}"
        if reason is not None:
            self.refused(reason, keys)
            return
        try:
            for kind, payload in planned:
                self._op(kind, payload)
        except OpRefusedError as exc:  # the net thread knew of a role change the replica did not yet
            self.refused(exc.reason, keys)
            return
        # the room has the last word: a removal is final there, so an undone delete stays a delete
        if self.reconcile(force=True, keys=keys):
            self.feedback = "removals are final in a consultation: that mark stays removed"

    def _touched(self, intent: it.Intent) -> list[Key]:
        """The workspace keys ``intent`` changed (what its history entry, or the undone one, names)."""
        user = intent.user
        history = self.workspace.history.get(user, [])
        before, self._history_len[user] = self._history_len.get(user, 0), len(history)
        stack = self._undo.setdefault(user, [])
        if isinstance(intent, it.Undo):
            return stack.pop() if stack else []
        if isinstance(intent, it.Select):
            return [("selection", "structure")]
        if len(history) > before:
            keys = [(collection, key) for collection, key, _ in history[-1].before]
            stack.append(keys)
            return keys
        return []

    def _plan(self, key: Key) -> list[Planned]:
        """The op(s) that would make the room's value of ``key`` the workspace's (``ProtocolError`` for a
        value the wire cannot carry)."""
        collection, name = key
        state, ws = self.room.state, self.workspace
        if collection == "landmarks":
            return _landmark_ops(name, ws.landmarks.get(name), state.landmarks.get(op_id(name)))
        if collection == "measurements":
            m = ws.measurements.get(name)
            if m is None:
                return [(OpKind.MEASURE_DELETE, {"id": op_id(name)})] if op_id(name) in state.measurements else []
            return [(OpKind.MEASURE, _measure_payload(m))] if _measure_payload(m) != _held_measure(state, op_id(name)) else []
        if collection == "strokes":
            st = ws.strokes.get(name)
            if st is None:
                return [(OpKind.STROKE_ERASE, {"id": op_id(name)})] if op_id(name) in state.strokes else []
            if op_id(name) in state.strokes:
                return []
            return [(OpKind.STROKE_ADD, {"id": op_id(name), "points": _thin([_metres(p) for p in st.points_mm])})]
        if collection == "planes":
            return self._plane_ops(name)
        if collection == "pose":
            pose, scale = ws.pose["twin"]
            payload = {"position": [round(c, 4) for c in pose.position], "orientation": _unit(pose.orientation), "scale": scale}
            # against where the room has the twin: a grab let go where it began sends nothing, refuses nothing
            moved = _transform_differs(validate_payload(OpKind.TRANSFORM, payload), self._placement(state))
            return [(OpKind.TRANSFORM, payload)] if moved else []
        if collection == "selection" and ws.selection["structure"] != state.selection:
            return [(OpKind.SELECT, {"structure": ws.selection["structure"]})]
        return []

    def _check(self, planned: Planned) -> str | None:
        """Why ``permit`` refuses the planned op, as the room's state would make it next; None when allowed."""
        if self.permit is None:
            return None
        kind, payload = planned
        state = self.room.state
        op = StateOp(state.participant, state.seq + 1, state.lamport + 1, kind, validate_payload(kind, payload), self.clock())
        return self.permit(op)

    def _plane_ops(self, plane_id: str) -> list[Planned]:
        state = self.room.state
        plane = self.workspace.planes.get(plane_id)
        index = self._plane_index.get(plane_id)
        if plane is None:
            if index is not None:
                del self._plane_index[plane_id]
                if index in state.clip_planes:
                    return [(OpKind.CLIP_CLEAR, {"index": index})]
            return []
        if index is None:
            taken = set(state.clip_planes) | set(self._plane_index.values())
            # each participant tries its own index first: two people cutting at once rarely collide
            first = self.room.state.participant % MAX_CLIP_PLANES
            order = [(first + k) % MAX_CLIP_PLANES for k in range(MAX_CLIP_PLANES)]
            free = [i for i in order if i not in taken]
            if not free:
                raise ProtocolError(f"the room has {MAX_CLIP_PLANES} clip planes already", "state")
            index = self._plane_index[plane_id] = free[0]
        payload = {"index": index, "normal": list(plane.normal), "d": plane.offset_mm / 1000.0}
        if validate_payload(OpKind.CLIP_SET, payload) != {"index": index, **state.clip_planes.get(index, {})}:
            return [(OpKind.CLIP_SET, payload)]
        return []

    def _op(self, kind: OpKind, payload: dict[str, Any]) -> None:
        self.room.make_op(kind, payload)
        self.counters.ops_sent += 1
        self._seen_ops = self.room.state.op_count  # our own op: nothing to reconcile

    def clear_my_marks(self) -> None:
        """Remove every stroke, landmark and measurement of the local user's, everywhere (``CLEAR_MARKS``);
        a role that may not is told so, and nothing is sent."""
        reason = self._check((OpKind.CLEAR_MARKS, {}))
        try:
            if reason is None:
                self._op(OpKind.CLEAR_MARKS, {})
        except OpRefusedError as exc:
            reason = exc.reason
        if reason is not None:
            self.refused(reason, [])
            return
        self.reconcile(force=True)

    def refused(self, reason: str, keys: list[Key] | None = None) -> None:
        """A local change was refused (``reason``): show it and put back the room's values of ``keys``
        (all when None), so the refused change shows nowhere."""
        self.counters.refused += 1
        self.reconcile(force=True, keys=keys)
        self.feedback = f"refused: {reason}"
        self.refusals.append(reason)
        logger.info("%s: %s", self.user, self.feedback)

    # --- incoming -----------------------------------------------------------------------------------

    def note_op(self, op: StateOp, who: str) -> None:
        """Remember that ``who`` made ``op`` (the reconciled intents are theirs) and reconcile."""
        p = op.payload
        kind = op.kind
        if kind in (OpKind.LANDMARK_PLACE, OpKind.LANDMARK_MOVE, OpKind.LANDMARK_DELETE):
            self._authors[("landmarks", mark_id(p["id"]))] = who
        elif kind in (OpKind.CLIP_SET, OpKind.CLIP_CLEAR):
            self._authors[("planes", str(p["index"]))] = who
        elif kind is OpKind.TRANSFORM:
            self._authors[("pose", "twin")] = who
        elif kind is OpKind.SELECT:
            self._authors[("selection", "structure")] = who
        self.reconcile()

    def reconcile(self, *, force: bool = False, keys: list[Key] | None = None) -> int:
        """Apply to the workspace whatever the shared state holds differently (all of it, or ``keys``);
        returns the intents applied. Cheap when nothing changed since the last time (unless ``force``)."""
        state = self.room.state
        if not force and state.op_count == self._seen_ops:
            return 0
        self._seen_ops = state.op_count
        self.counters.reconciles += 1
        wanted = None if keys is None else set(keys)
        applied = 0
        self._applying = True
        try:
            for intent, key in self._differences(state, wanted):
                if self._skipped.get(key) == repr(intent):
                    continue
                try:
                    done = self.workspace.apply(intent)
                except SceneError as exc:  # a structure this twin does not have
                    logger.warning("cannot show %s from %s: %s", intent.kind, intent.user, exc)
                    done = False
                if done:
                    applied += 1
                    self._skipped.pop(key, None)
                    if intent.user != self.user:
                        self.feedback = f"{intent.user}: {it.describe(intent.record())}"
                else:
                    self._skipped[key] = repr(intent)
                    self.counters.not_applicable += 1
        finally:
            self._applying = False
        self.counters.remote_applied += applied
        # what the reconciled intents did is not the local user's to undo
        for user, history in self.workspace.history.items():
            self._history_len[user] = len(history)
        return applied

    def _placement(self, state: SharedState) -> dict[str, Any]:
        """Where the room has the twin: its transform, or where it stood before any (``_home``)."""
        return state.transform if state.transform is not None else self._home

    def _who(self, key: Key, fallback: str = ROOM_USER) -> str:
        return self._authors.get(key, fallback)

    def _known(self, structure: str | None) -> str | None:
        """``structure`` when this twin has it, else None: a mark on a structure the twin lacks is
        shown without one (its position still holds)."""
        return structure if structure in self._structures else None

    def _differences(self, state: SharedState, wanted: set[Key] | None) -> list[tuple[it.Intent, Key]]:
        """The intents that make the workspace show ``state`` (restricted to ``wanted`` keys)."""
        ws, t = self.workspace, self.clock()
        out: list[tuple[it.Intent, Key]] = []

        def want(key: Key) -> bool:
            return wanted is None or key in wanted

        key: Key = ("selection", "structure")
        if want(key) and self._known(state.selection) != ws.selection["structure"]:
            out.append((it.Select(self._who(key), t, self._known(state.selection)), key))
        key = ("pose", "twin")
        transform = self._placement(state)
        # while the local user holds the twin their hand places it; letting go tells the room (or is refused)
        if want(key) and not ws.holding(self.user):
            pose, scale = ws.pose["twin"]
            here = {"position": [round(c, 4) for c in pose.position], "orientation": _unit(pose.orientation), "scale": scale}
            if _transform_differs(transform, here):
                pos, q = transform["position"], transform["orientation"]
                out.append((it.SetTwinPose(self._who(key), t, (pos[0], pos[1], pos[2]), (q[0], q[1], q[2], q[3]),
                                           transform["scale"]), key))  # fmt: skip
        out += self._landmark_differences(state, want, t)
        out += self._measure_differences(state, want, t)
        out += self._stroke_differences(state, want, t)
        out += self._plane_differences(state, wanted, t)
        return out

    def _landmark_differences(self, state: SharedState, want: Callable[[Key], bool], t: float) -> list[tuple[it.Intent, Key]]:
        ws = self.workspace
        out: list[tuple[it.Intent, Key]] = []
        held = {mark_id(k): v for k, v in state.landmarks.items()}
        for name, value in held.items():
            key = ("landmarks", name)
            if not want(key):
                continue
            here = ws.landmarks.get(name)
            who = self._who(key, author(name))
            point = _mm(value["position"])
            structure = self._known(value["structure"])
            if here is None:
                out.append((it.PlaceLandmark(author(name), t, name, value["label"], point, structure), key))
            elif _metres(here.point_mm) != value["position"]:
                out.append((it.MoveLandmark(who, t, name, point, structure), key))
        for name in list(ws.landmarks):
            key = ("landmarks", name)
            if name not in held and want(key):
                out.append((it.DeleteLandmark(self._who(key, author(name)), t, name), key))
        return out

    def _measure_differences(self, state: SharedState, want: Callable[[Key], bool], t: float) -> list[tuple[it.Intent, Key]]:
        ws = self.workspace
        out: list[tuple[it.Intent, Key]] = []
        held = {mark_id(k): v for k, v in state.measurements.items()}
        for name, v in held.items():
            key = ("measurements", name)
            here = ws.measurements.get(name)
            if want(key) and (here is None or _measure_payload(here) != {"id": op_id(name), **v}):
                a, b = v["a_mm"], v["b_mm"]
                sa, sb = _structures(v["label"])
                out.append((it.Measure(author(name), t, name, (a[0], a[1], a[2]), (b[0], b[1], b[2]), v["distance_mm"],
                                       v["geodesic_mm"], (self._known(sa), self._known(sb))), key))  # fmt: skip
        for name in list(ws.measurements):
            key = ("measurements", name)
            if name not in held and want(key):
                out.append((it.DeleteMeasurement(author(name), t, name), key))
        return out

    def _stroke_differences(self, state: SharedState, want: Callable[[Key], bool], t: float) -> list[tuple[it.Intent, Key]]:
        ws = self.workspace
        out: list[tuple[it.Intent, Key]] = []
        held = {mark_id(k): v for k, v in state.strokes.items()}
        for name, v in held.items():
            key = ("strokes", name)
            if want(key) and name not in ws.strokes:
                points = tuple(_mm(p) for p in v["points"])
                out.append((it.AddStroke(author(name), t, name, points), key))
        for name, stroke in list(ws.strokes.items()):
            key = ("strokes", name)
            if name not in held and want(key):
                out.append((it.EraseStroke(stroke.user, t, name), key))
        return out

    def _plane_differences(self, state: SharedState, wanted_keys: set[Key] | None, t: float) -> list[tuple[it.Intent, Key]]:
        ws = self.workspace
        held = state.clip_planes
        by_index = {index: plane_id for plane_id, index in self._plane_index.items()}
        if wanted_keys is not None and not any(collection == "planes" for collection, _ in wanted_keys):
            return []
        # what the workspace shows, by room index; a plane the room never took (refused) has none
        shown = {self._plane_index.get(pid): p for pid, p in ws.planes.items()}
        wanted = {i: held[i] for i in held}
        same = set(shown) == set(wanted) and all(
            validate_payload(OpKind.CLIP_SET, {"index": i, "normal": list(shown[i].normal), "d": shown[i].offset_mm / 1000.0})
            == {"index": i, **wanted[i]}
            for i in wanted
        )
        if same:
            return []
        # a plane cannot be removed alone: clear them all, then add back what the room holds
        who = self._who(("planes", str(next(iter(wanted), 0))))
        out: list[tuple[it.Intent, Key]] = []
        if ws.planes:
            out.append((it.ClearClipPlanes(who, t), ("planes", "*")))
        self._plane_index = {}
        for index, plane in sorted(wanted.items()):
            plane_id = by_index.get(index) or room_plane_id(index)
            self._plane_index[plane_id] = index
            n = plane["normal"]
            out.append((it.AddClipPlane(self._who(("planes", str(index))), t, plane_id, (n[0], n[1], n[2]),
                                        plane["d"] * 1000.0), ("planes", str(index))))  # fmt: skip
        return out


def _landmark_ops(name: str, lm: it.PlaceLandmark | None, held: dict[str, Any] | None) -> list[Planned]:
    ident = op_id(name)
    if lm is None:
        return [(OpKind.LANDMARK_DELETE, {"id": ident})] if held is not None else []
    position = _metres(lm.point_mm)
    if held is None:
        return [(OpKind.LANDMARK_PLACE, {"id": ident, "position": position, "label": lm.label, "structure": lm.structure})]
    if validate_payload(OpKind.LANDMARK_MOVE, {"id": ident, "position": position})["position"] != held["position"]:
        return [(OpKind.LANDMARK_MOVE, {"id": ident, "position": position})]
    return []


def _unit(q: tuple[float, float, float, float]) -> list[float]:
    n = math.sqrt(sum(c * c for c in q)) or 1.0
    return [c / n for c in q]


def _transform_differs(a: dict[str, Any] | None, b: dict[str, Any] | None) -> bool:
    if a is None or b is None:
        return a is not b
    if any(abs(x - y) > 1e-4 for x, y in zip(a["position"], b["position"], strict=True)):
        return True
    dot = abs(sum(x * y for x, y in zip(a["orientation"], b["orientation"], strict=True)))
    return bool(dot < 1.0 - 1e-6 or abs(a["scale"] - b["scale"]) > 1e-6 * max(1.0, a["scale"]))


def _measure_payload(m: it.Measure) -> dict[str, Any]:
    a = [round(c, 3) for c in m.a_mm]
    b = [round(c, 3) for c in m.b_mm]
    distance = round(math.dist(a, b), 3)
    geodesic = None if m.geodesic_mm is None else max(round(m.geodesic_mm, 3), distance)
    payload = {"id": op_id(m.mark_id), "a_mm": a, "b_mm": b, "distance_mm": distance,
               "label": _structures_label(m.structures), "geodesic_mm": geodesic}  # fmt: skip
    return validate_payload(OpKind.MEASURE, payload)


def _held_measure(state: SharedState, ident: str) -> dict[str, Any] | None:
    held = state.measurements.get(ident)
    return None if held is None else {"id": ident, **held}


def workspace_view(ws: Workspace) -> dict[str, Any]:
    """What a workspace shows of the shared state, as plain data (twin mm, world m), to compare two
    participants' workspaces: marks by id, clip planes by normal and offset, the twin's placement."""
    pose, scale = ws.pose["twin"]
    return {
        "selection": ws.selection["structure"],
        "twin": ([round(c, 4) for c in pose.position], [round(c, 5) for c in _unit(pose.orientation)], round(scale, 5)),
        "landmarks": {k: (v.label, _metres(v.point_mm), v.structure) for k, v in sorted(ws.landmarks.items())},
        "measurements": {k: _measure_payload(v) for k, v in sorted(ws.measurements.items())},
        "strokes": {k: [_metres(p) for p in v.points_mm] for k, v in sorted(ws.strokes.items())},
        "planes": sorted((tuple(round(c, 5) for c in p.normal), round(p.offset_mm, 3)) for p in ws.planes.values()),
    }


class StateView:
    """A room that is only watched (a replay): its state, and no ops may be made."""

    def __init__(self, state: SharedState) -> None:
        self._state = state

    @property
    def state(self) -> SharedState:
        return self._state

    def make_op(self, kind: OpKind | int, payload: Any) -> StateOp:
        raise ProtocolError("a watched room takes no ops", "state")


def op_intents(op: StateOp, user: str, t: float, state: SharedState | None = None) -> list[it.Intent]:
    """The intents of ``user`` that one op of theirs stands for, at time ``t`` (the inverse of
    :meth:`StateBridge._plan`, in the same units and ids); none for a kind no intent expresses (a clip
    plane's removal, clear-my-marks, a role grant). ``state``, the room's state with the op
    applied, gives a moved landmark its structure (a move op does not carry it)."""
    p = op.payload
    kind = op.kind
    ident = mark_id(p["id"]) if "id" in p else ""
    if kind is OpKind.LANDMARK_PLACE:
        return [it.PlaceLandmark(user, t, ident, p["label"], _mm(p["position"]), p["structure"])]
    if kind is OpKind.LANDMARK_MOVE:
        held = state.landmarks.get(p["id"]) if state is not None else None
        return [it.MoveLandmark(user, t, ident, _mm(p["position"]), held["structure"] if held else None)]
    if kind is OpKind.LANDMARK_DELETE:
        return [it.DeleteLandmark(user, t, ident)]
    if kind is OpKind.STROKE_ADD:
        return [it.AddStroke(user, t, ident, tuple(_mm(q) for q in p["points"]))]
    if kind is OpKind.STROKE_ERASE:
        return [it.EraseStroke(user, t, ident)]
    if kind is OpKind.MEASURE:
        a, b = p["a_mm"], p["b_mm"]
        return [it.Measure(user, t, ident, (a[0], a[1], a[2]), (b[0], b[1], b[2]), p["distance_mm"], p["geodesic_mm"],
                           _structures(p["label"]))]  # fmt: skip
    if kind is OpKind.MEASURE_DELETE:
        return [it.DeleteMeasurement(user, t, ident)]
    if kind is OpKind.CLIP_SET:
        n = p["normal"]
        return [it.AddClipPlane(user, t, room_plane_id(p["index"]), (n[0], n[1], n[2]), p["d"] * 1000.0)]
    if kind is OpKind.TRANSFORM:
        pos, q = p["position"], p["orientation"]
        return [it.SetTwinPose(user, t, (pos[0], pos[1], pos[2]), (q[0], q[1], q[2], q[3]), p["scale"])]
    if kind is OpKind.SELECT:
        return [it.Select(user, t, p["structure"])]
    return []
