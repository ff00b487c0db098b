"""A participant in the room with the twin rendered: :class:`ConsultSession` and :func:`take_part`.

:class:`ConsultSession` is a :class:`~sessions.run.LocalSession` joined to a
:class:`net.participant.Participant`: each frame it takes the user's input as usual (the tools'
intents go through the workspace, and the :class:`~sessions.consult.bridge.StateBridge` sends them),
applies what the room changed, sends the head and hands as a pose record (relative to the twin),
draws every remote participant's avatar with its heads-up line, and, when following a presenter,
renders from the presenter's viewpoint.

The participant's asyncio loop runs in its own thread (:class:`~sessions.consult.network.NetThread`):
the session reads what arrived (newest poses, applied ops, presence) and hands its poses and ops to
the loop; the bridge and the workspace stay on the frame thread, over a replica of the room's state
(:class:`~sessions.consult.network.FrameRoom`).

The room's own records (docs/consult.md) are landmarks with ids under ``room.`` in the shared state,
which the bridge never shows: ``room.twin.<n>`` (label ``<twin name> <content hash>``: the room's
twin, written by the first participant that names one) and ``room.present.<name>.<n>`` (``name`` is
presenting; deleted when they stop). A ``CLEAR_MARKS`` of their writer removes them too, so the
writer puts them back under a new ``n``.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from net.protocol import OpKind
from net.state import SharedState
from sessions.consult.avatars import TwinFrame, avatar_marks, local_poses
from sessions.consult.bridge import RECORD_PREFIX, Room, StateBridge
from sessions.consult.network import FrameRoom, NetThread
from sessions.consult.presence import Health
from sessions.run import HUD_PERIOD_S, LocalSession, SessionConfig
from xrcore.input import Picker
from xrcore.scene import Scene
from xrcore.types import FrameState, Pose, View

if TYPE_CHECKING:
    from assets.twin import Twin

logger = logging.getLogger(__name__)

TWIN_RECORD = RECORD_PREFIX + "twin."
PRESENT_RECORD = RECORD_PREFIX + "present."
#: Distance between the eyes when rendering from a presenter's head (m).
IPD_M = 0.063


class TwinMismatchError(ValueError):
    """The room's twin is not the one this participant has (or can load)."""


def twin_hash(twin: Twin) -> str:
    """Content hash of a twin (sha256 over its structures' names, vertices and faces), 16 hex digits."""
    digest = hashlib.sha256()
    for s in twin.structures:
        digest.update(s.name.encode())
        digest.update(np.ascontiguousarray(s.vertices, dtype=np.float32).tobytes())
        digest.update(np.ascontiguousarray(s.faces, dtype=np.int64).tobytes())
    return digest.hexdigest()[:16]


def room_twin(state: SharedState) -> tuple[str, str] | None:
    """The room's twin as (name, content hash), from its record; None when nobody named one yet."""
    for ident, value in sorted(state.landmarks.items()):
        if ident.startswith(TWIN_RECORD):
            name, _, digest = str(value["label"]).rpartition(" ")
            return name, digest
    return None


def record_twin(room: Room, twin: Twin) -> None:
    """Write the room's twin record (name and content hash)."""
    label = f"{twin.name} {twin_hash(twin)}"
    room.make_op(OpKind.LANDMARK_PLACE, {"id": f"{TWIN_RECORD}{room.state.seq + 1}", "position": [0.0, 0.0, 0.0],
                                         "label": label})  # fmt: skip


def check_twin(state: SharedState, twin: Twin) -> None:
    """Refuse (:class:`TwinMismatchError`) a twin whose content differs from the room's."""
    held = room_twin(state)
    if held is not None and held[1] != twin_hash(twin):
        raise TwinMismatchError(f"the room's twin is {held[0]!r} (hash {held[1]}), "
                                f"but {twin.name!r} here has hash {twin_hash(twin)}: join with --twin {held[0]}")  # fmt: skip


def presenters(state: SharedState) -> list[str]:
    """Who is presenting now (names), from the room's records."""
    names = {str(v["label"]) for k, v in state.landmarks.items() if k.startswith(PRESENT_RECORD)}
    return sorted(names)


@dataclass
class StaleEvent:
    """A remote went STALE (``stale`` True) or came back, at UNIX time ``at``."""

    name: str
    stale: bool
    at: float


class ConsultSession(LocalSession):
    """One user in a consultation room (see the module docstring).

    Parameters
    ----------
    scene, config, picker
        As for :class:`~sessions.run.LocalSession` (``config.user`` should be the participant's name).
    net
        The joined participant's :class:`~sessions.consult.network.NetThread`.
    room
        The frame side's room (a :class:`~sessions.consult.network.FrameRoom` over ``net``; made when None).
    """

    def __init__(self, scene: Scene, config: SessionConfig, picker: Picker, net: NetThread,
                 room: FrameRoom | None = None) -> None:  # fmt: skip
        super().__init__(scene, config, picker)
        self.net = net
        self.participant = net.participant
        self.room = room if room is not None else FrameRoom(net)
        self.bridge = StateBridge(self.workspace, self.room, self.config.user, clock=lambda: self.ctx.time)
        self.presence = net.presence
        self.following: str | None = None
        self.stale_events: list[StaleEvent] = []
        self._stale: dict[str, bool] = {}
        self._hud_at = -math.inf
        self.bridge.reconcile(force=True)

    # --- presenting and following -----------------------------------------------------------------------

    def present(self, on: bool = True) -> None:
        """Start (or stop) presenting: others may follow this participant's viewpoint."""
        room, name = self.room, self.participant.name
        mine = [k for k, v in room.state.landmarks.items() if k.startswith(PRESENT_RECORD) and v["label"] == name]
        if on and not mine:
            room.make_op(OpKind.LANDMARK_PLACE, {"id": f"{PRESENT_RECORD}{name}.{room.state.seq + 1}",
                                                 "position": [0.0, 0.0, 0.0], "label": name})  # fmt: skip
        elif not on:
            for ident in mine:
                room.make_op(OpKind.LANDMARK_DELETE, {"id": ident})

    def follow(self, name: str | None) -> None:
        """Snap the view to presenter ``name``'s viewpoint, or back to one's own (None)."""
        self.following = name
        self.feedback = f"following {name}" if name else "back to my own view"

    def presenter_head(self, twin: TwinFrame) -> Pose | None:
        """The followed presenter's head (world), or None when not following anyone who presents now."""
        if self.following is None or self.following not in presenters(self.room.state):
            return None
        record = next((p.record for p in self.net.poses().values() if p.name == self.following), None)
        if record is None or record.head is None:
            return None
        return twin.to_world(record.head)

    def _presenter_views(self, frame: FrameState, twin: TwinFrame) -> list[View] | None:
        head = self.presenter_head(twin)
        if head is None:
            return None
        right = head.rotation_matrix()[:, 0]
        views = []
        for view in frame.views:
            offset = (-0.5 if view.eye == 0 else 0.5) * IPD_M * (1 if len(frame.views) > 1 else 0) * right
            eye = np.asarray(head.position) + offset
            views.append(View(Pose((float(eye[0]), float(eye[1]), float(eye[2])), head.orientation), view.fov,
                              view.width, view.height, view.eye))  # fmt: skip
        return views

    # --- per frame ---------------------------------------------------------------------------------------

    def step(self, frame: Any) -> list[Any]:
        """The local step, then the room: what changed, our poses out, avatars and heads-up lines in."""
        applied = super().step(frame)
        for op, name in self.room.take():
            self.bridge.note_op(op, name)
        self.bridge.reconcile()
        if self.bridge.feedback:
            self.feedback, self.bridge.feedback = self.bridge.feedback, ""
        twin = TwinFrame.of(self.scene)
        self.net.send_pose(local_poses(frame, twin))
        now = self.participant.clock()
        health = self.presence.health(now)
        self._note_staleness(health)
        marks, labels = [], []
        for index, remote in self.net.poses().items():
            h = health.get(index)
            if h is None:
                continue
            m, lab = avatar_marks(remote.record, remote.name, remote.role, twin, self._pick, h.line.split(": ", 1)[1])
            marks += m
            labels += lab
        self.scene.overlay = [*self.scene.overlay, *marks]
        self.scene.overlay_labels = [*self.scene.overlay_labels, *labels]
        if self.ctx.time - self._hud_at >= HUD_PERIOD_S:
            self._hud_at = self.ctx.time
            self.instructions = (*self.config.instructions, *(h.line for h in health.values()))
        views = self._presenter_views(frame, twin)
        if views is not None:
            frame.views = views
        return applied

    def _pick(self, origin: np.ndarray, direction: np.ndarray) -> float | None:
        hit = self.picker.pick_scene(self.scene, origin, direction, 3.0)
        return None if hit is None else float(hit.distance_m)

    def _note_staleness(self, health: dict[int, Health]) -> None:
        for h in health.values():
            if self._stale.get(h.name) != h.stale:
                self._stale[h.name] = h.stale
                self.stale_events.append(StaleEvent(h.name, h.stale, time.time()))
                logger.info("%s: %s is %s", self.config.user, h.name, "STALE" if h.stale else "live")


@dataclass
class Pump:
    """The frame loop's ``on_frame``: paces frames at ``rate_hz`` on the wall clock (the network runs in
    its own thread meanwhile), and says when to stop (``duration_s`` over, or ``stop``)."""

    rate_hz: float
    duration_s: float
    stop: Callable[[], bool] = lambda: False
    tick: Callable[[float], None] | None = None
    started: float = field(default_factory=time.monotonic)
    frames: int = 0

    def __call__(self, frame: Any) -> bool:
        self.frames += 1
        due = self.started + self.frames / self.rate_hz
        time.sleep(max(0.0, due - time.monotonic()))
        if self.tick is not None:
            self.tick(time.monotonic() - self.started)
        return self.stop() or time.monotonic() - self.started >= self.duration_s


def resolve_twin(room: Room, wanted: str | None, load: Callable[[str], Twin], default: str) -> Twin:
    """The twin to load: the room's (checked against ``wanted`` when given), else ``wanted`` (recorded as
    the room's), else ``default``. Raises :class:`TwinMismatchError`."""
    held = room_twin(room.state)
    if held is not None and wanted is not None and wanted != held[0]:
        raise TwinMismatchError(f"the room's twin is {held[0]!r}, not {wanted!r}")
    twin = load(held[0] if held is not None else wanted or default)
    check_twin(room.state, twin)
    if held is None:
        record_twin(room, twin)
    return twin
