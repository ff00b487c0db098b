"""A participant in the room with the twin rendered: :class:`ConsultSession` and :func:`take_part`.

:class:`ConsultSession` is a :class:`~sessions.run.LocalSession` joined to a
:class:`net.participant.Participant`: each frame it takes the user's input as usual (the tools'
intents go through the workspace, and the :class:`~sessions.consult.bridge.StateBridge` sends them),
applies what the room changed, sends the head and hands as a pose record (relative to the twin),
draws every remote participant's avatar with its heads-up line, and, when following a presenter,
renders from the presenter's viewpoint.

:func:`take_part` runs it: the participant's asyncio loop and the frame loop share one thread; the
loop runs between frames (while the frame loop waits for its next frame time), so no state is
touched from two threads.

The room's own records (docs/consult.md) are landmarks with ids under ``room.`` in the shared state,
which the bridge never shows: ``room.twin.<n>`` (label ``<twin name> <content hash>``: the room's
twin, written by the first participant that names one) and ``room.present.<name>.<n>`` (``name`` is
presenting; deleted when they stop). A ``CLEAR_MARKS`` of their writer removes them too, so the
writer puts them back under a new ``n``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from net.protocol import OpKind, PoseRecord, StateOp
from sessions.consult.avatars import TwinFrame, avatar_marks, local_poses
from sessions.consult.bridge import RECORD_PREFIX, StateBridge
from sessions.consult.presence import Presence
from sessions.run import HUD_PERIOD_S, LocalSession, SessionConfig
from xrcore.input import Picker
from xrcore.scene import Scene
from xrcore.types import FrameState, Pose, View

if TYPE_CHECKING:
    from assets.twin import Twin
    from net.participant import Participant

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


def room_twin(participant: Participant) -> tuple[str, str] | None:
    """The room's twin as (name, content hash), from its record; None when nobody named one yet."""
    for ident, value in sorted(participant.state.landmarks.items()):
        if ident.startswith(TWIN_RECORD):
            name, _, digest = str(value["label"]).rpartition(" ")
            return name, digest
    return None


def record_twin(participant: Participant, twin: Twin) -> None:
    """Write the room's twin record (name and content hash)."""
    label = f"{twin.name} {twin_hash(twin)}"
    participant.make_op(OpKind.LANDMARK_PLACE, {"id": f"{TWIN_RECORD}{participant.state.seq + 1}",
                                                "position": [0.0, 0.0, 0.0], "label": label})  # fmt: skip


def check_twin(participant: Participant, twin: Twin) -> None:
    """Refuse (:class:`TwinMismatchError`) a twin whose content differs from the room's."""
    held = room_twin(participant)
    if held is not None and held[1] != twin_hash(twin):
        raise TwinMismatchError(f"the room's twin is {held[0]!r} (hash {held[1]}), "
                                f"but {twin.name!r} here has hash {twin_hash(twin)}: join with --twin {held[0]}")  # fmt: skip


def presenters(participant: Participant) -> list[str]:
    """Who is presenting now (names), from the room's records."""
    names = {str(v["label"]) for k, v in participant.state.landmarks.items() if k.startswith(PRESENT_RECORD)}
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
    participant
        The joined participant (its ``on_pose`` and ``on_op`` are taken over).
    """

    def __init__(self, scene: Scene, config: SessionConfig, picker: Picker, participant: Participant) -> None:
        super().__init__(scene, config, picker)
        self.participant = participant
        self.bridge = StateBridge(self.workspace, participant, self.config.user, clock=lambda: self.ctx.time)
        self.presence = Presence()
        self.following: str | None = None
        self.stale_events: list[StaleEvent] = []
        self._stale: dict[str, bool] = {}
        self._hud_at = -math.inf
        participant.on_pose = self._on_pose
        participant.on_op = self._on_op
        self.bridge.reconcile(force=True)

    # --- what arrives ---------------------------------------------------------------------------------

    def _on_pose(self, pose: PoseRecord, latency: float | None) -> None:
        remote = self.participant.remotes.get(pose.participant)
        if remote is not None:
            self.presence.arrived(pose.participant, remote.name, self.participant.clock(), latency)

    def _on_op(self, op: StateOp, latency: float | None) -> None:
        remote = self.participant.remotes.get(op.participant)
        name = remote.name if remote is not None else str(op.participant)
        self.presence.arrived(op.participant, name, self.participant.clock(), latency)
        self.bridge.note_op(op, name)

    # --- presenting and following -----------------------------------------------------------------------

    def present(self, on: bool = True) -> None:
        """Start (or stop) presenting: others may follow this participant's viewpoint."""
        p = self.participant
        mine = [k for k, v in p.state.landmarks.items() if k.startswith(PRESENT_RECORD) and v["label"] == p.name]
        if on and not mine:
            p.make_op(OpKind.LANDMARK_PLACE, {"id": f"{PRESENT_RECORD}{p.name}.{p.state.seq + 1}",
                                              "position": [0.0, 0.0, 0.0], "label": p.name})  # fmt: skip
        elif not on:
            for ident in mine:
                p.make_op(OpKind.LANDMARK_DELETE, {"id": ident})

    def follow(self, name: str | None) -> None:
        """Snap the view to presenter ``name``'s viewpoint, or back to one's own (None)."""
        self.following = name
        self.feedback = f"following {name}" if name else "back to my own view"

    def _presenter_views(self, frame: FrameState, twin: TwinFrame) -> list[View] | None:
        if self.following is None or self.following not in presenters(self.participant):
            return None
        index = self.participant.roster.index_of(self.following)
        remote = self.participant.remotes.get(index) if index is not None else None
        record = remote.pose if remote is not None else None
        if record is None or record.head is None:
            return None
        head = twin.to_world(record.head)
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
        self.bridge.reconcile()
        if self.bridge.feedback:
            self.feedback, self.bridge.feedback = self.bridge.feedback, ""
        twin = TwinFrame.of(self.scene)
        p = self.participant
        if p.link_set.open_links():
            p.send_pose(local_poses(frame, twin))
        now = p.clock()
        self._note_staleness(now)
        marks, labels = [], []
        for index, remote in p.remotes.items():
            record = remote.pose
            health = self.presence.remotes.get(index)
            if record is None or health is None:
                continue
            m, lab = avatar_marks(record, remote.name, remote.role, twin, self._pick, health.line(now).split(": ", 1)[1])
            marks += m
            labels += lab
        self.scene.overlay = [*self.scene.overlay, *marks]
        self.scene.overlay_labels = [*self.scene.overlay_labels, *labels]
        if self.ctx.time - self._hud_at >= HUD_PERIOD_S:
            self._hud_at = self.ctx.time
            self.instructions = (*self.config.instructions, *self.presence.lines(now))
        views = self._presenter_views(frame, twin)
        if views is not None:
            frame.views = views
        return applied

    def _pick(self, origin: np.ndarray, direction: np.ndarray) -> float | None:
        hit = self.picker.pick_scene(self.scene, origin, direction, 3.0)
        return None if hit is None else float(hit.distance_m)

    def _note_staleness(self, now: float) -> None:
        for health in self.presence.remotes.values():
            stale = health.stale(now)
            if self._stale.get(health.name) != stale:
                self._stale[health.name] = stale
                self.stale_events.append(StaleEvent(health.name, stale, time.time()))
                logger.info("%s: %s is %s", self.config.user, health.name, "STALE" if stale else "live")


@dataclass
class Pump:
    """The frame loop's ``on_frame``: runs the participant's event loop until the next frame is due
    (frames at ``rate_hz`` on the wall clock), and says when to stop (``duration_s`` over, or ``stop``)."""

    loop: asyncio.AbstractEventLoop
    rate_hz: float
    duration_s: float
    stop: Callable[[], bool] = lambda: False
    tick: Callable[[float], None] | None = None
    started: float = field(default_factory=time.monotonic)
    frames: int = 0

    def __call__(self, frame: Any) -> bool:
        self.frames += 1
        due = self.started + self.frames / self.rate_hz
        self.loop.run_until_complete(asyncio.sleep(max(0.0, due - time.monotonic())))
        if self.tick is not None:
            self.tick(time.monotonic() - self.started)
        return self.stop() or time.monotonic() - self.started >= self.duration_s


def start_participant(loop: asyncio.AbstractEventLoop, participant: Participant, wait_s: float = 3.0) -> None:
    """Join the room and wait (up to ``wait_s``) for its state: the room's twin record is in it."""
    loop.run_until_complete(participant.start())
    with contextlib.suppress(asyncio.TimeoutError):
        loop.run_until_complete(asyncio.wait_for(participant.caught_up.wait(), wait_s))


def resolve_twin(participant: Participant, wanted: str | None, load: Callable[[str], Twin], default: str) -> Twin:
    """The twin to load: the room's (checked against ``wanted`` when given), else ``wanted`` (recorded as
    the room's), else ``default``. Raises :class:`TwinMismatchError`."""
    held = room_twin(participant)
    if held is not None and wanted is not None and wanted != held[0]:
        raise TwinMismatchError(f"the room's twin is {held[0]!r}, not {wanted!r}")
    twin = load(held[0] if held is not None else wanted or default)
    check_twin(participant, twin)
    if held is None:
        record_twin(participant, twin)
    return twin
