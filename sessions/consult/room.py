"""A participant in the room with the twin rendered: :class:`ConsultSession` and :func:`take_part`.

:class:`ConsultSession` is a :class:`~sessions.run.LocalSession` joined to a
:class:`net.participant.Participant`: each frame it takes the user's input as usual (the tools'
intents go through the workspace, and the :class:`~sessions.consult.bridge.StateBridge` sends them),
applies what the room changed, sends the head and hands as a pose record (relative to the twin),
draws every remote participant's avatar with its heads-up line, and, when following a presenter,
renders from the presenter's viewpoint.

The participant's asyncio loop runs in a process of its own (:class:`~sessions.consult.netproc.NetProcess`)
or a thread (:class:`~sessions.consult.network.NetThread`): the session reads what arrived (newest poses,
applied ops, presence) and hands its poses and ops to the loop; the bridge and the workspace stay on
the frame thread, over a replica of the room's state (:class:`~sessions.consult.network.FrameRoom`).

The room's twin belongs to the room, so signaling holds it (docs/signaling.md: the server's
configuration, else the first surgeon to join announcing one); :func:`resolve_twin` loads it and
checks its content hash. Presenting is a pose-level fact: a presenter's pose records carry
``Buttons.PRESENTING``, which anyone may set (observers too), and a follower renders from the head of
the presenter it names, or of the latest to start presenting. Local intents are checked against the
role policy (``net.roles.check`` with this participant's role now) before any op is made; refusals,
local or from the room, become feedback and a counted line, never an exception.
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

from net import roles
from net.latency import summarize
from net.protocol import Buttons, StateOp
from net.signaling_client import RoomTwin
from sessions.consult.avatars import TwinFrame, avatar_marks, local_poses
from sessions.consult.bridge import StateBridge
from sessions.consult.network import FrameRoom, Network, RemotePose
from sessions.consult.presence import Health
from sessions.run import HUD_PERIOD_S, LocalSession, SessionConfig
from xrcore.input import Picker
from xrcore.scene import Scene
from xrcore.types import FrameState, Pose, View

if TYPE_CHECKING:
    from assets.twin import Twin

logger = logging.getLogger(__name__)

#: ``follow(ANY_PRESENTER)`` follows whoever presents (the latest to start, if several).
ANY_PRESENTER = "*"
#: Distance between the eyes when rendering from a presenter's head (m).
IPD_M = 0.063
#: The parts a remote pose record's motion-to-display is split into: ``network`` from its sampling at the
#: sender to its arrival here (the net layer's one-way latency), ``to_frame`` from there to the moment the
#: first frame that draws it reads it (:meth:`ConsultSession.add_avatars`, once the twin is drawn: mostly the
#: wait for that frame, up to a frame period), ``in_frame`` from there to the frame's submit returning (the
#: avatars, the overlay, the labels, the finish).
MOTION_PARTS = ("network", "to_frame", "in_frame")


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


def announced(twin: Twin) -> RoomTwin:
    """What a participant tells signaling of ``twin``: its name and content hash."""
    return RoomTwin(twin.name, twin_hash(twin))


def presenter(poses: dict[int, RemotePose], name: str) -> RemotePose | None:
    """Whom a follower of ``name`` (or of :data:`ANY_PRESENTER`) follows now: that remote while its
    records carry ``Buttons.PRESENTING``, or the remote that started presenting last; None."""
    live = [p for p in poses.values() if p.presenting_since is not None]
    if name != ANY_PRESENTER:
        live = [p for p in live if p.name == name]
    return max(live, key=lambda p: p.presenting_since or 0.0, default=None)


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
        The joined participant's network (:class:`~sessions.consult.network.Network`).
    room
        The frame side's room (a :class:`~sessions.consult.network.FrameRoom` over ``net``; made when None).
    """

    def __init__(self, scene: Scene, config: SessionConfig, picker: Picker, net: Network,
                 room: FrameRoom | None = None) -> None:  # fmt: skip
        super().__init__(scene, config, picker)
        self.net = net
        self.participant = net.participant
        self.room = room if room is not None else FrameRoom(net)
        self.bridge = StateBridge(self.workspace, self.room, self.config.user, clock=lambda: self.ctx.time,
                                  permit=self._permit)  # fmt: skip
        self.presence = net.presence
        self.following: str | None = None
        self.presenting = False
        self.stale_events: list[StaleEvent] = []
        self._stale: dict[str, bool] = {}
        self._hud_at = -math.inf
        # motion-to-display: per remote, the sequence number of the record last drawn; for each record this
        # frame draws for the first time, (remote's name, when it was sampled, arrived, was taken by this
        # frame; our clock, s); the delays measured (s) by remote, and their parts (MOTION_PARTS)
        self._drawn_seq: dict[int, int] = {}
        self._drawing: list[tuple[str, float, float | None, float]] = []
        self.motion_to_display_s: dict[str, list[float]] = {}
        self.motion_parts_s: dict[str, list[float]] = {part: [] for part in MOTION_PARTS}
        self._health: dict[int, Health] = {}  # the step's, for the avatars' heads-up lines
        self.bridge.reconcile(force=True)

    # --- presenting and following -----------------------------------------------------------------------

    @property
    def role(self) -> str:
        """This participant's role now: the latest grant in the room's state, else its token's."""
        state = self.room.state
        return state.roles.get(state.participant) or self.participant.token_role

    def _permit(self, op: StateOp) -> str | None:
        return roles.check(self.role, op, self.room.state)

    def present(self, on: bool = True) -> None:
        """Start (or stop) presenting: our pose records carry ``Buttons.PRESENTING``, so others may
        follow our viewpoint. Anyone may present (it is a pose, not a state op)."""
        self.presenting = on
        self.feedback = "presenting" if on else "stopped presenting"

    def follow(self, name: str | None) -> None:
        """Snap the view to presenter ``name``'s viewpoint (:data:`ANY_PRESENTER`: whoever presents, the
        latest to start if several), or back to one's own (None)."""
        self.following = name
        who = "whoever presents" if name == ANY_PRESENTER else name
        self.feedback = f"following {who}" if name else "back to my own view"

    def presenter_head(self, twin: TwinFrame) -> Pose | None:
        """The followed presenter's head (world), or None when not following anyone who presents now."""
        if self.following is None:
            return None
        remote = presenter(self.net.poses(), self.following)
        if remote is None or remote.record.head is None:
            return None
        return twin.to_world(remote.record.head)

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
        """Our poses out, then the local step, then the room: what changed, heads-up lines in (and the
        avatars, in the renderer's late look).

        The poses go first, the moment the frame's input was sampled (just before the step), and in the
        twin's frame as the user last saw it (a twin moved this frame moves their hands in its frame from
        the next): what the others see of us does not wait for our step and our fetch."""
        sampled = self.participant.clock()
        poses = local_poses(frame, TwinFrame.of(self.scene))
        if self.presenting:
            poses["buttons"] = Buttons.PRESENTING
        self.net.send_pose(poses, sampled)
        applied = super().step(frame)
        for op, name in self.room.take():
            self.bridge.note_op(op, name)
        for refusal in self.net.refusals():  # a peer or the relay refused an op we sent
            self.bridge.refused(f"{refusal.reason} (said participant {refusal.participant})", [])
        self.bridge.reconcile()
        if self.bridge.feedback:
            self.feedback, self.bridge.feedback = self.bridge.feedback, ""
        twin = TwinFrame.of(self.scene)
        now = self.participant.clock()
        health = self._health = self.presence.health(now)
        self._note_staleness(health)
        # the others' avatars are added by the renderer's late look, once it has drawn the twin
        self.scene.late = self.add_avatars
        if self.ctx.time - self._hud_at >= HUD_PERIOD_S:
            self._hud_at = self.ctx.time
            self.instructions = (*self.config.instructions, *(h.line for h in health.values()))
        views = self._presenter_views(frame, twin)
        if views is not None:
            frame.views = views
        return applied

    def add_avatars(self, scene: Scene) -> None:
        """(The renderer's late look, ``Scene.late``: the twin drawn, the overlay not read yet.) Every remote's
        avatar, from its newest pose record read now, added to the overlay the step left; once a step (a
        frame drawn twice draws the same avatars)."""
        scene.late = None
        health = self._health
        twin = TwinFrame.of(scene)
        marks, labels = [], []
        remotes = self.net.poses()  # as late as the frame can: each remote's newest record, read now
        taken = self.participant.clock()
        for index, remote in remotes.items():
            h = health.get(index)
            if h is None:
                continue
            if remote.sampled_at is not None and self._drawn_seq.get(index) != remote.record.seq:
                self._drawing.append((remote.name, remote.sampled_at, remote.arrived_at, taken))
            self._drawn_seq[index] = remote.record.seq
            m, lab = avatar_marks(remote.record, remote.name, remote.role, twin, self._pick, h.line.split(": ", 1)[1])
            marks += m
            labels += lab
        scene.overlay = [*scene.overlay, *marks]
        scene.overlay_labels = [*scene.overlay_labels, *labels]

    def displayed(self) -> None:
        """The frame stepped last was shown (its submit returned): each remote pose record it drew for
        the first time counts its motion-to-display, from when the remote sampled it to now."""
        if self._drawing:
            now = self.participant.clock()
            parts = self.motion_parts_s
            for name, sampled, arrived, taken in self._drawing:
                self.motion_to_display_s.setdefault(name, []).append(now - sampled)
                if arrived is not None:
                    parts["network"].append(arrived - sampled)
                    parts["to_frame"].append(taken - arrived)
                    parts["in_frame"].append(now - taken)
            self._drawing.clear()

    def motion_to_display(self) -> dict[str, Any] | None:
        """Motion-to-display figures (``net.latency`` form, ms): ``room`` over every remote, ``by`` remote
        name, and ``parts``, the same records' delay split in :data:`MOTION_PARTS`; None before any was
        measured."""
        every = [d for delays in self.motion_to_display_s.values() for d in delays]
        room = summarize(every)
        if room is None:
            return None
        by = {name: summarize(delays) for name, delays in sorted(self.motion_to_display_s.items())}
        parts = {part: summarize(delays) for part, delays in self.motion_parts_s.items()}
        return {"room": room.as_dict(), "by": {name: s.as_dict() for name, s in by.items() if s is not None},
                "parts": {part: s.as_dict() for part, s in parts.items() if s is not None}}  # fmt: skip

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
    its own thread meanwhile; ``pace`` False leaves the pace to a headset's runtime or a window's buffer
    swap), and says when to stop (``duration_s`` over, or ``stop``)."""

    rate_hz: float
    duration_s: float
    stop: Callable[[], bool] = lambda: False
    tick: Callable[[float], None] | None = None
    pace: bool = True
    started: float = field(default_factory=time.monotonic)
    frames: int = 0

    def __call__(self, frame: Any) -> bool:
        self.frames += 1
        if self.pace:
            due = self.started + self.frames / self.rate_hz
            time.sleep(max(0.0, due - time.monotonic()))
        if self.tick is not None:
            self.tick(time.monotonic() - self.started)
        return self.stop() or time.monotonic() - self.started >= self.duration_s


def resolve_twin(held: RoomTwin | None, wanted: str | None, load: Callable[[str], Twin], default: str,
                 mine: Twin | None = None) -> Twin:  # fmt: skip
    """The twin to load: the room's (``held``, as signaling names it), checked against ``wanted`` when
    given and by content hash; with none named, ``mine`` (already loaded) or ``wanted`` or ``default``,
    unchecked. Raises :class:`TwinMismatchError` in one line."""
    if held is None:
        return mine if mine is not None else load(wanted or default)
    named = mine.name if mine is not None else wanted  # a twin loaded from a file is known by its own name
    if named is not None and named != held.name:
        raise TwinMismatchError(f"the room's twin is {held.name!r}, not {named!r}")
    twin = mine if mine is not None and mine.name == held.name else load(held.name)
    if twin_hash(twin) != held.sha256:
        raise TwinMismatchError(f"the room's twin is {held.name!r} (hash {held.sha256}), but {twin.name!r} here "
                                f"has hash {twin_hash(twin)}: another version of it")  # fmt: skip
    return twin
