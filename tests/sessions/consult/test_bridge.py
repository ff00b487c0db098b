"""The state bridge: intents on one workspace reach another through state ops, and back, identically."""

from __future__ import annotations

import random
from typing import Any

import pytest

from net import roles
from net.protocol import OpKind, StateOp, decode_state, encode_state
from net.state import OpRefusedError, SharedState
from sessions import intents as it
from sessions.consult.bridge import StateBridge, op_intents, workspace_view
from sessions.sim import working_scene
from sessions.workspace import Workspace

LEFT = "left cerebral hemisphere (pial)"
RIGHT = "right cerebral hemisphere (pial)"


class LoopbackRoom:
    """A room of shared states that pass every op through the wire encoding to the others."""

    def __init__(self) -> None:
        self.members: list[Member] = []

    def join(self, name: str, twin: Any, role: str = "surgeon") -> Member:
        member = Member(self, name, len(self.members) + 1, twin, role)
        for other in self.members:  # a late joiner merges a snapshot
            member.state.merge_snapshot(other.state.snapshot_bytes())
        member.bridge.reconcile()
        self.members.append(member)
        return member


class Member:
    def __init__(self, room: LoopbackRoom, name: str, index: int, twin: Any, role: str) -> None:
        self.room, self.name, self.role = room, name, role
        self.state = SharedState(index)
        self.workspace = Workspace(working_scene(twin))
        self.bridge = StateBridge(self.workspace, self, name, clock=lambda: 1.0, permit=self.permit)
        self.held: list[StateOp] = []  # ops not yet delivered (tests reorder them)

    def permit(self, op: StateOp) -> str | None:
        """The role policy, as a participant's sender side and the consultation's bridge run it."""
        return roles.check(self.role, op, self.state)

    def make_op(self, kind: OpKind | int, payload: Any) -> StateOp:
        op = self.state.make_op(kind, payload, 1.0, permit=self.permit)
        for other in self.room.members:
            if other is not self:
                other.held.append(decode_state(encode_state(op)))  # type: ignore[arg-type]
        return op

    def deliver(self, shuffle: random.Random | None = None) -> None:
        ops, self.held = self.held, []
        if shuffle is not None:
            shuffle.shuffle(ops)
        for op in ops:
            self.state.apply(op)
            self.bridge.note_op(op, next(m.name for m in self.room.members if m.state.participant == op.participant))


def _work(ws: Workspace, user: str) -> None:
    """What a user does with the tools, as the intents they make."""
    for intent in [
        it.Select(user, 0.1, LEFT),
        it.PlaceLandmark(user, 0.2, ws.new_id(user, "L"), "nasion", (-25.51, 57.43, 19.8), LEFT),
        it.PlaceLandmark(user, 0.3, ws.new_id(user, "L"), "L2", (-44.3, 28.6, 36.7), LEFT),
        it.Measure(user, 0.4, ws.new_id(user, "M"), (-25.51, 57.43, 19.8), (-44.3, 28.6, 36.7), 38.33, None, (LEFT, LEFT)),
        it.AddClipPlane(user, 0.5, ws.new_id(user, "P"), (0.0, 0.0, -1.0), 12.5),
        it.AddStroke(user, 0.6, ws.new_id(user, "S"), ((1.0, 2.0, 3.0), (4.0, 5.0, 6.0)), on_surface=True),
        it.SetTwinPose(user, 0.7, (0.01, 0.02, -0.03), (0.0, 0.38268, 0.0, 0.92388), 1.5),
        it.MoveLandmark(user, 0.8, f"{user}/L2", (-40.0, 30.0, 35.0), LEFT),
    ]:
        assert ws.apply(intent), intent


def test_intents_become_ops_and_the_same_intents_on_another_workspace(brain: Any) -> None:
    """Every kind of shared intent made on A shows identically on B (through encoded ops), and B's
    workspace changed only through intents (its applied list) attributed to A's user."""
    room = LoopbackRoom()
    a, b = room.join("alice", brain), room.join("bob", brain)
    _work(a.workspace, "alice")
    b.deliver()
    assert workspace_view(a.workspace) == workspace_view(b.workspace)
    assert a.state.digest() == b.state.digest()
    assert {i.user for i in b.workspace.applied} == {"alice"}
    assert b.workspace.landmarks["alice/L1"].label == "nasion"
    assert b.workspace.measurements["alice/M1"].structures == (LEFT, LEFT)
    assert a.held == [] and a.bridge.counters.ops_sent == 8  # one op per intent
    # and back: B undoes nothing of A's, but erases nothing either; B's own work reaches A
    _work(b.workspace, "bob")
    a.deliver()
    assert workspace_view(a.workspace) == workspace_view(b.workspace)
    # bob's selection and placement of the twin were the room's already: nothing to send; no echo
    assert b.bridge.counters.ops_sent == 6 and a.bridge.counters.ops_sent == 8


def test_undo_clear_planes_and_erase_travel_as_ops(brain: Any) -> None:
    """Undo, clearing the clip planes and deleting marks are sent as the ops they amount to."""
    room = LoopbackRoom()
    a, b = room.join("alice", brain), room.join("bob", brain)
    _work(a.workspace, "alice")
    for intent in [it.Undo("alice", 1.0), it.ClearClipPlanes("alice", 1.1), it.EraseStroke("alice", 1.2, "alice/S1"),
                   it.DeleteMeasurement("alice", 1.3, "alice/M1"), it.Undo("alice", 1.4)]:
        assert a.workspace.apply(intent), intent
    b.deliver()
    assert workspace_view(a.workspace) == workspace_view(b.workspace)
    assert b.workspace.planes == {} and b.workspace.strokes == {}
    # removals are final in the room: undoing one puts nothing back, here or there, and says so
    assert "alice/M1" not in a.workspace.measurements
    assert a.bridge.feedback.startswith("removals are final")
    assert b.workspace.landmarks["alice/L2"].point_mm == (-44.3, 28.6, 36.7)  # the first undid the move


def test_concurrent_work_converges_in_any_order_and_a_late_joiner_sees_it(brain: Any) -> None:
    """Two users working at once, their ops delivered shuffled: both workspaces and a late joiner's agree."""
    room = LoopbackRoom()
    a, b = room.join("alice", brain), room.join("bob", brain)
    _work(a.workspace, "alice")
    _work(b.workspace, "bob")
    b.deliver(random.Random(2))
    assert b.workspace.apply(it.DeleteLandmark("bob", 2.0, "alice/L1"))
    a.deliver(random.Random(1))
    assert a.state.digest() == b.state.digest()
    assert workspace_view(a.workspace) == workspace_view(b.workspace)
    c = room.join("carol", brain)
    assert workspace_view(c.workspace) == workspace_view(a.workspace)
    assert "alice/L1" not in c.workspace.landmarks and len(c.workspace.planes) == 2


def test_clear_my_marks_removes_only_mine_everywhere(brain: Any) -> None:
    """CLEAR_MARKS: alice's landmarks, measurement and stroke go on both sides; bob's stay."""
    room = LoopbackRoom()
    a, b = room.join("alice", brain), room.join("bob", brain)
    _work(a.workspace, "alice")
    _work(b.workspace, "bob")
    a.deliver()
    b.deliver()
    a.bridge.clear_my_marks()
    b.deliver()
    for m in (a, b):
        assert {k.split("/")[0] for k in [*m.workspace.landmarks, *m.workspace.measurements, *m.workspace.strokes]} == {"bob"}
    assert workspace_view(a.workspace) == workspace_view(b.workspace)


def test_an_observers_landmark_and_twin_move_are_refused_locally_and_a_trainees_landmark_goes_everywhere(
    brain: Any,
) -> None:
    """An observer's landmark and twin move are refused by its own bridge with the role's reason: nothing
    is sent, its workspace is rolled back and the others are unchanged; a trainee's landmark (and the
    observer's later attempts to move or delete it) go as the policy says, the same everywhere."""
    room = LoopbackRoom()
    bob, obs, tim = room.join("bob", brain), room.join("olga", brain, "observer"), room.join("tim", brain, "trainee")
    before = workspace_view(obs.workspace)
    assert obs.workspace.apply(it.PlaceLandmark("olga", 0.5, "olga/L1", "here", (10.0, 0.0, 0.0), None))
    assert obs.bridge.feedback == "refused: observer may not place a landmark"
    assert obs.workspace.apply(it.SetTwinPose("olga", 0.6, (0.0, 0.1, 0.0), (0.0, 0.0, 0.0, 1.0), 1.5))
    assert obs.bridge.feedback == "refused: observer may not move the twin"
    assert obs.bridge.refusals == ["observer may not place a landmark", "observer may not move the twin"]
    assert workspace_view(obs.workspace) == before and obs.bridge.counters == obs.bridge.counters.__class__(
        ops_sent=0, remote_applied=obs.bridge.counters.remote_applied, refused=2, not_applicable=0,
        reconciles=obs.bridge.counters.reconciles)  # fmt: skip
    assert obs.state.op_count == 0 and bob.held == [] and tim.held == []
    assert workspace_view(bob.workspace) == workspace_view(tim.workspace) == before
    # a trainee may place their own landmark: applied everywhere
    assert tim.workspace.apply(it.PlaceLandmark("tim", 0.7, "tim/L1", "apex", (0.0, 12.0, 0.0), None))
    assert tim.bridge.counters.ops_sent == 1 and tim.bridge.feedback == ""
    for m in (bob, obs):
        m.deliver()
    views = [workspace_view(m.workspace) for m in (bob, obs, tim)]
    assert views[0] == views[1] == views[2] and list(views[0]["landmarks"]) == ["tim/L1"]
    # nor may the observer move another's landmark, nor clear marks
    assert obs.workspace.apply(it.MoveLandmark("olga", 0.8, "tim/L1", (1.0, 12.0, 0.0), None))
    obs.bridge.clear_my_marks()
    assert obs.bridge.refusals[2:] == ["observer may not move a landmark", "observer may not clear their own marks"]
    assert workspace_view(obs.workspace) == views[0] and bob.held == [] and tim.held == []


def test_a_grab_let_go_where_it_began_sends_nothing_and_is_refused_nothing(brain: Any) -> None:
    """Letting go of the twin where it stood (a grab whose hand did not move, or moved back) is no change:
    a surgeon sends no op, an observer is refused nothing, while the room has never placed the twin and
    after it has."""
    room = LoopbackRoom()
    bob, obs = room.join("bob", brain), room.join("olga", brain, "observer")
    for member in (bob, obs):
        pose, scale = member.workspace.pose["twin"]
        assert member.workspace.apply(it.SetTwinPose(member.name, 0.5, pose.position, pose.orientation, scale))
        assert member.bridge.counters.ops_sent == 0 and member.bridge.refusals == []
    assert bob.workspace.apply(it.SetTwinPose("bob", 0.6, (0.0, 0.1, 0.0), (0.0, 0.0, 0.0, 1.0), 1.5))
    obs.deliver()
    pose, scale = obs.workspace.pose["twin"]
    assert obs.workspace.apply(it.SetTwinPose("olga", 0.7, pose.position, pose.orientation, scale))
    assert bob.bridge.counters.ops_sent == 1 and obs.bridge.refusals == [] and bob.held == []
    # a real move still is refused
    assert obs.workspace.apply(it.SetTwinPose("olga", 0.8, (0.2, 0.1, 0.0), (0.0, 0.0, 0.0, 1.0), 1.5))
    assert obs.bridge.refusals == ["observer may not move the twin"]
    assert workspace_view(obs.workspace) == workspace_view(bob.workspace)


def test_a_twin_held_in_the_hand_stays_there_while_others_work_and_goes_to_the_room_when_let_go(brain: Any) -> None:
    """While the surgeon's grab moves the twin, others' ops reach their workspace without snapping the twin
    back to the room's placement; letting go sends the placement, and everyone shows it."""
    room = LoopbackRoom()
    bob, eve = room.join("bob", brain), room.join("eve", brain, "expert")
    held = ((0.05, 0.1, 0.0), (0.0, 0.0, 0.0, 1.0), 1.2)
    assert bob.workspace.apply(it.SetTwinPose("bob", 0.5, *held, live=True))
    assert bob.workspace.holding("bob") and bob.bridge.counters.ops_sent == 0
    assert eve.workspace.apply(it.PlaceLandmark("eve", 0.6, "eve/L1", "apex", (0.0, 12.0, 0.0), None))
    bob.deliver()
    assert list(workspace_view(bob.workspace)["landmarks"]) == ["eve/L1"]
    pose, scale = bob.workspace.pose["twin"]
    assert (pose.position, scale) == (held[0], held[2])  # not snapped back
    assert not [i for i in bob.workspace.applied if isinstance(i, it.SetTwinPose)]
    assert bob.workspace.apply(it.SetTwinPose("bob", 0.7, *held))
    assert not bob.workspace.holding("bob") and bob.bridge.counters.ops_sent == 1
    eve.deliver()
    assert workspace_view(eve.workspace) == workspace_view(bob.workspace)
    assert workspace_view(eve.workspace)["twin"][0] == [0.05, 0.1, 0.0]


def test_an_op_the_net_thread_refuses_is_rolled_back_like_a_local_refusal(brain: Any) -> None:
    """When the room's ``make_op`` raises ``OpRefusedError`` (a revoke the net thread knew first), the
    intent is rolled back and shown as refused, not raised."""
    room = LoopbackRoom()
    a, b = room.join("alice", brain), room.join("bob", brain)
    a.bridge.permit = None  # the frame side's replica still thinks alice may

    def revoked(kind: OpKind | int, payload: Any) -> StateOp:
        raise OpRefusedError(StateOp(1, 1, 1, OpKind(kind), payload, 0.0), "observer may not set a clip plane")

    a.make_op = revoked  # type: ignore[method-assign]
    assert a.workspace.apply(it.AddClipPlane("alice", 0.5, "alice/P1", (0.0, 0.0, -1.0), 12.5))
    assert a.workspace.planes == {} and a.bridge.feedback == "refused: observer may not set a clip plane"
    assert b.held == []


def test_a_structure_this_twin_lacks_is_shown_as_none(brain: Any) -> None:
    """A selection of a structure this twin lacks shows nothing selected, a landmark on it is shown
    without one; nothing is retried and nothing breaks."""
    room = LoopbackRoom()
    a, b = room.join("alice", brain), room.join("bob", brain)
    a.make_op(OpKind.SELECT, {"structure": "no such structure"})
    a.make_op(OpKind.LANDMARK_PLACE, {"id": "alice:L1", "position": [0.01, 0.0, 0.0], "label": "x", "structure": "nope"})
    b.deliver()
    assert b.bridge.reconcile(force=True) == 0
    assert b.workspace.selection["structure"] is None and b.bridge.counters.not_applicable == 0
    assert b.workspace.landmarks["alice/L1"].structure is None and b.workspace.landmarks["alice/L1"].point_mm == (10.0, 0.0, 0.0)


def test_op_intents_are_the_inverse_of_what_the_bridge_sends(brain: Any) -> None:
    """A user's ops turned back into intents (as a recording is scored) rebuild the same workspace."""
    room = LoopbackRoom()
    a, b = room.join("alice", brain), room.join("bob", brain)
    _work(a.workspace, "alice")
    ws = Workspace(working_scene(brain))
    for op in b.held:
        for intent in op_intents(op, "alice", 1.0, a.state):
            assert ws.apply(intent), intent
    assert workspace_view(ws) == workspace_view(a.workspace)


def test_the_frame_replica_follows_an_adopted_state_with_as_many_ops(monkeypatch: pytest.MonkeyPatch) -> None:
    """A split mended by adopting the authority's state leaves the op count as it was: the frame thread's
    replica notices by digest (once a second, here at once) and is made again from the room's state."""
    from sessions.consult import network

    ours, authority = SharedState(2), SharedState(2)
    ours.apply(StateOp(1, 1, 1, OpKind.SELECT, {"structure": "left"}, 0.0))
    authority.apply(StateOp(1, 1, 1, OpKind.SELECT, {"structure": "right"}, 0.0))

    class Participant:
        state = ours

    class Net:  # the net side as FrameRoom asks it, answering at once (the loop noted the digest already)
        def snapshot(self) -> tuple[int, bytes, int]:
            state = Participant.state
            return state.participant, state.snapshot_bytes(), state.op_count

        def room_op_count(self) -> int:
            return Participant.state.op_count

        def note_digest(self) -> tuple[int, bytes]:
            return Participant.state.op_count, Participant.state.digest()

        def ops(self) -> list[Any]:
            return []

    room = network.FrameRoom(Net())  # type: ignore[arg-type]
    assert room.state.selection == "left"
    Participant.state = authority  # adopted on the net thread: one op, as before
    monkeypatch.setattr(network, "DIGEST_CHECK_S", 0.0)
    room.take()
    assert room.state.selection == "right" and room.state.digest() == authority.digest()
