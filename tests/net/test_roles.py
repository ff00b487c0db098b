"""The role policy (net.roles): every role and op kind as the table says, marks by owner, the docs table in step."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from net.protocol import ROOM_ROLES, OpKind, StateOp
from net.roles import POLICY, check, policy_table
from net.state import OpRefusedError, SharedState

DOC = Path(__file__).resolve().parents[2] / "docs" / "roles.md"

#: An op of each kind, as participant 2 would make it, naming marks "m" (for the kinds that name one).
PAYLOADS: dict[OpKind, dict[str, Any]] = {
    OpKind.STROKE_ADD: {"id": "m", "points": [[0.0, 1.0, 0.0]]},
    OpKind.STROKE_ERASE: {"id": "m"},
    OpKind.LANDMARK_PLACE: {"id": "m", "position": [0.0, 1.0, 0.0]},
    OpKind.LANDMARK_MOVE: {"id": "m", "position": [0.0, 1.1, 0.0]},
    OpKind.LANDMARK_DELETE: {"id": "m"},
    OpKind.CLIP_SET: {"index": 1, "normal": [0, 0, 1], "d": 0.01},
    OpKind.CLIP_CLEAR: {"index": 1},
    OpKind.TRANSFORM: {"position": [0.0, 1.0, 0.0], "orientation": [0, 0, 0, 1]},
    OpKind.SELECT: {"structure": "thalamus"},
    OpKind.MEASURE: {"id": "m", "a_mm": [0, 0, 0], "b_mm": [3, 4, 0], "distance_mm": 5},
    OpKind.MEASURE_DELETE: {"id": "m"},
    OpKind.CLEAR_MARKS: {},
    OpKind.SET_ROLE: {"participant": 3, "role": "expert"},
}
#: What the table in docs/roles.md says: role -> kinds allowed on the sender's own (or new) marks, and on any.
EXPECTED = {
    "surgeon": set(OpKind),
    "expert": set(OpKind) - {OpKind.SET_ROLE},
    "trainee": {OpKind.STROKE_ADD, OpKind.STROKE_ERASE, OpKind.LANDMARK_PLACE, OpKind.LANDMARK_MOVE,
                OpKind.LANDMARK_DELETE, OpKind.CLEAR_MARKS},
    "observer": set(),
}
MARK_CREATORS = {OpKind.STROKE_ERASE: OpKind.STROKE_ADD, OpKind.LANDMARK_MOVE: OpKind.LANDMARK_PLACE,
                 OpKind.LANDMARK_DELETE: OpKind.LANDMARK_PLACE, OpKind.MEASURE_DELETE: OpKind.MEASURE}


def op(kind: OpKind, participant: int = 2, seq: int = 1) -> StateOp:
    state = SharedState(participant)
    state.seq = seq - 1
    return state.make_op(kind, PAYLOADS[kind], 0.0)


def holding(owner: int, kind: OpKind) -> SharedState:
    """A state holding mark "m" of the kind that ``kind`` names, created by ``owner``."""
    state = SharedState(9)
    creator = MARK_CREATORS.get(kind, kind)
    if creator in PAYLOADS and "id" in PAYLOADS[creator]:
        state.apply(op(creator, owner, seq=50))
    return state


@pytest.mark.parametrize("role", ROOM_ROLES)
@pytest.mark.parametrize("kind", list(OpKind))
def test_every_role_and_kind_on_own_marks(role: str, kind: OpKind) -> None:
    """On the sender's own marks, each role may make exactly the kinds the table gives it."""
    reason = check(role, op(kind), holding(2, kind))
    assert (reason is None) == (kind in EXPECTED[role]), reason
    if reason is not None:
        assert reason.startswith(f"{role} may not ")


@pytest.mark.parametrize("role", ROOM_ROLES)
@pytest.mark.parametrize("kind", sorted(MARK_CREATORS.keys() | set(MARK_CREATORS.values())))
def test_someone_elses_marks_only_for_surgeons(role: str, kind: OpKind) -> None:
    """A mark created by participant 5 is moved, removed or overwritten by participant 2 only if a surgeon."""
    reason = check(role, op(kind), holding(5, kind))
    assert (reason is None) == (role == "surgeon"), reason
    if role in ("expert", "trainee") and kind in EXPECTED[role]:
        assert reason is not None and "only their own" in reason


@pytest.mark.parametrize("kind", sorted(MARK_CREATORS))
def test_removing_or_moving_an_unheld_mark_is_refused_but_creating_one_is_not(kind: OpKind) -> None:
    """An expert may create a mark under a new id, not erase or move one that no held mark has (it could be
    someone else's, on its way): nothing to pre-empt."""
    assert "no such mark" in (check("expert", op(kind), SharedState(9)) or "")
    assert check("expert", op(MARK_CREATORS[kind]), SharedState(9)) is None


def test_the_relay_checks_kinds_alone() -> None:
    """Without the state (the relay), an own-scoped kind passes and a forbidden one is refused."""
    assert check("trainee", op(OpKind.LANDMARK_DELETE), None) is None
    assert check("trainee", op(OpKind.TRANSFORM), None) == "trainee may not move the twin"


@pytest.mark.parametrize("role", ["instructor", "", "nobody"])
def test_other_roles_may_make_no_op(role: str) -> None:
    """A token role outside the room's four (instructor is for profiles) makes no op, like an observer."""
    assert all(check(role, op(kind), holding(2, kind)) is not None for kind in OpKind)


def test_policy_covers_the_room_roles_and_nothing_else() -> None:
    assert set(POLICY) == set(ROOM_ROLES)


def test_docs_table_is_the_policy() -> None:
    """docs/roles.md shows exactly the table net.roles.policy_table() writes."""
    text = DOC.read_text(encoding="utf-8")
    start = text.index("-->\n", text.index("<!-- policy table")) + 4
    end = text.index("<!-- end of policy table -->")
    assert text[start:end] == policy_table()


def test_a_refused_local_op_changes_nothing() -> None:
    """make_op with a permit that refuses raises OpRefusedError and leaves the state, seq and clock alone."""
    state = SharedState(4)
    state.make_op(OpKind.SELECT, {"structure": "a"}, 0.0)
    before = (state.digest(), state.seq, state.lamport, state.op_count)
    with pytest.raises(OpRefusedError, match="observer may not move the twin"):
        state.make_op(OpKind.TRANSFORM, PAYLOADS[OpKind.TRANSFORM], 1.0, permit=lambda o: check("observer", o, state))
    assert (state.digest(), state.seq, state.lamport, state.op_count) == before
    made = state.make_op(OpKind.TRANSFORM, PAYLOADS[OpKind.TRANSFORM], 1.0, permit=lambda o: check("expert", o, state))
    assert made.seq == 2 and state.transform is not None


def test_set_role_is_a_register_in_state_and_snapshot() -> None:
    """The latest SET_ROLE for a participant wins in any order of arrival, and travels in snapshots."""
    surgeon = SharedState(1)
    grant = surgeon.make_op(OpKind.SET_ROLE, {"participant": 3, "role": "expert"}, 0.0)
    revoke = surgeon.make_op(OpKind.SET_ROLE, {"participant": 3, "role": "observer"}, 0.1)
    a, b = SharedState(2), SharedState(3)
    a.apply(grant)
    a.apply(revoke)
    b.apply(revoke)
    b.apply(grant)
    assert a.roles == b.roles == {3: "observer"} and a.digest() == b.digest()
    late = SharedState(4)
    late.merge_snapshot(a.snapshot_bytes())
    assert late.roles == {3: "observer"} and late.digest() == a.digest()
