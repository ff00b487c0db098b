"""Shared consultation state: ops applied once, in any order, converge; snapshots plus deltas catch up late joiners."""

from __future__ import annotations

import hashlib
import math
import random

import pytest

from net.errors import ProtocolError
from net.protocol import OpKind, SnapshotAssembler, StateOp, canonical_json, chunk_snapshot, decode_state, encode_state
from net.state import SharedState


def _script(participant: int, n: int, seed: int) -> list[tuple[OpKind, dict]]:
    """A mix of every op kind touching shared ids, so that order matters unless the merge is right."""
    rng = random.Random(seed)
    ops: list[tuple[OpKind, dict]] = []
    for i in range(n):
        shared = f"lm{rng.randrange(4)}"
        stroke = f"s{rng.randrange(4)}"
        pos = [rng.uniform(-1, 1), rng.uniform(0, 2), rng.uniform(-1, 1)]
        ops.append(
            rng.choice(
                [
                    (OpKind.LANDMARK_PLACE, {"id": shared, "position": pos, "label": f"p{participant}-{i}"}),
                    (OpKind.LANDMARK_MOVE, {"id": shared, "position": pos}),
                    (OpKind.LANDMARK_DELETE, {"id": shared}),
                    (OpKind.STROKE_ADD, {"id": stroke, "points": [pos, pos]}),
                    (OpKind.STROKE_ERASE, {"id": stroke}),
                    (OpKind.CLIP_SET, {"index": rng.randrange(3), "normal": [0, 1, 0], "d": rng.uniform(-1, 1)}),
                    (OpKind.CLIP_CLEAR, {"index": rng.randrange(3)}),
                    (OpKind.TRANSFORM, {"position": pos, "orientation": [0, 0, 0, 1], "scale": 1.5}),
                    (OpKind.SELECT, {"structure": rng.choice(["thalamus", None, "insula"])}),
                ]
            )
        )
    return ops


def _wire(op: StateOp) -> StateOp:
    """The op as a receiver sees it: encoded and decoded."""
    decoded = decode_state(encode_state(op))
    assert isinstance(decoded, StateOp)
    return decoded


@pytest.fixture
def history() -> list[StateOp]:
    """Ops made concurrently by three peers (each sees only its own until they exchange), as sent."""
    ops = []
    for participant in (1, 2, 3):
        state = SharedState(participant)
        for kind, payload in _script(participant, 60, seed=participant):
            ops.append(_wire(state.make_op(kind, payload, sender_time=1.0)))
    return ops


def test_any_delivery_order_gives_the_same_digest(history: list[StateOp]) -> None:
    """Ten peers receiving the same ops in ten shuffled orders hold equal state and digests."""
    digests = set()
    views = []
    for seed in range(10):
        order = history[:]
        random.Random(seed).shuffle(order)
        state = SharedState(9)
        for op in order:
            state.apply(op)
        assert state.op_count == len(history)
        digests.add(state.digest())
        views.append((state.landmarks, state.strokes, state.clip_planes, state.transform, state.selection))
    assert len(digests) == 1
    assert all(view == views[0] for view in views)


def test_an_op_applies_once(history: list[StateOp]) -> None:
    """A duplicated op (retransmitted, or also in a snapshot) changes nothing the second time."""
    state = SharedState(9)
    for op in history:
        assert state.apply(op).applied
    digest = state.digest()
    assert not any(state.apply(op).applied for op in history)
    assert state.digest() == digest and state.op_count == len(history)


def test_erase_before_add_still_wins() -> None:
    """A stroke erased before its add arrives stays erased; so does a deleted landmark."""
    author, other = SharedState(1), SharedState(2)
    add = author.make_op(OpKind.STROKE_ADD, {"id": "s", "points": [[0, 1, 0]]}, 0.0)
    erase = author.make_op(OpKind.STROKE_ERASE, {"id": "s"}, 0.0)
    place = author.make_op(OpKind.LANDMARK_PLACE, {"id": "l", "position": [0, 1, 0]}, 0.0)
    delete = author.make_op(OpKind.LANDMARK_DELETE, {"id": "l"}, 0.0)
    for op in (erase, add, delete, place):
        other.apply(op)
    assert other.strokes == {} and other.landmarks == {}
    assert other.digest() == author.digest()


def test_concurrent_writes_resolve_by_lamport_then_participant() -> None:
    """Two peers move the same landmark concurrently: the higher (lamport, participant) wins everywhere."""
    a, b = SharedState(1), SharedState(2)
    place = SharedState(3).make_op(OpKind.LANDMARK_PLACE, {"id": "l", "position": [0, 0, 0]}, 0.0)
    a.apply(place)
    b.apply(place)
    move_a = a.make_op(OpKind.LANDMARK_MOVE, {"id": "l", "position": [1, 0, 0]}, 0.0)
    move_b = b.make_op(OpKind.LANDMARK_MOVE, {"id": "l", "position": [2, 0, 0]}, 0.0)
    assert move_a.lamport == move_b.lamport  # truly concurrent: the participant breaks the tie
    a.apply(move_b)
    b.apply(move_a)
    assert a.landmarks["l"]["position"] == b.landmarks["l"]["position"] == [2.0, 0.0, 0.0]
    assert a.digest() == b.digest()


def test_lamport_clock_follows_the_rules() -> None:
    """max(local, received) + 1 on receipt; local + 1 for a new op."""
    a, b = SharedState(1), SharedState(2)
    for _ in range(5):
        a.make_op(OpKind.SELECT, {"structure": None}, 0.0)
    op = a.make_op(OpKind.SELECT, {"structure": "thalamus"}, 0.0)
    assert op.lamport == 6
    b.apply(op)
    assert b.lamport == 7
    assert b.make_op(OpKind.SELECT, {"structure": None}, 0.0).lamport == 8


def test_late_joiner_gets_snapshot_then_deltas(history: list[StateOp]) -> None:
    """A joiner merging a snapshot (via chunks) and the ops around it, some twice, ends equal to the room."""
    room = SharedState(1)
    for op in history[:120]:
        room.apply(op)
    joiner = SharedState(4)
    # Ops that reached the joiner before the snapshot did (some also inside it).
    for op in history[100:130]:
        joiner.apply(op)
    body = room.snapshot_bytes()
    assembler = SnapshotAssembler()
    chunks = [decode_state(encode_state(c)) for c in chunk_snapshot(1, 77, body)]
    merged = [assembler.add(c) for c in chunks]  # type: ignore[arg-type]
    assert merged[-1] == body
    added = joiner.merge_snapshot(merged[-1])
    assert added == 100
    for op in history[110:]:  # deltas after the snapshot, overlapping it
        joiner.apply(op)
    for op in history[120:]:
        room.apply(op)
    assert joiner.op_count == room.op_count == len(history)
    assert joiner.digest() == room.digest()
    assert joiner.lamport >= max(op.lamport for op in history)


def test_rejoining_participant_resumes_its_sequence() -> None:
    """A participant that restarts and merges a snapshot continues its op sequence, so its new ops are not
    taken for duplicates."""
    before = SharedState(3)
    for _ in range(4):
        before.make_op(OpKind.SELECT, {"structure": "insula"}, 0.0)
    restarted = SharedState(3)
    restarted.merge_snapshot(before.snapshot())
    op = restarted.make_op(OpKind.SELECT, {"structure": None}, 0.0)
    assert op.seq == 5
    assert before.apply(op).applied


@pytest.mark.parametrize(
    "mutate",
    [
        lambda s: s.update(v=1),
        lambda s: s["applied"].update({"1": [[5, 2]]}),
        lambda s: s["strokes"].update({"x": {"stamp": [1, 1, 1], "points": [], "color": [1, 1, 1, 1], "width": 0.001}}),
        lambda s: s["clip"].update({"9": {"stamp": [1, 1, 1], "plane": None}}),
        lambda s: s.update(transform={"stamp": [1, 1], "value": {}}),
        lambda s: s.pop("erased"),
        lambda s: s.update(lamport=-1),
        lambda s: s["measures"].update({"m": {"stamp": [1, 1, 1], "a_mm": [0, 0, 0], "b_mm": [1, 0, 0],
                                              "distance_mm": 2.0, "label": "", "geodesic_mm": None}}),
        lambda s: s["cleared"].update({"1": [1, 1]}),
        lambda s: s.pop("measures_deleted"),
    ],
    ids=["version", "range", "stroke", "clip-index", "stamp", "missing-key", "lamport", "measure-distance", "cleared-stamp",
         "missing-measures-deleted"],
)
def test_malformed_snapshot_is_refused_and_changes_nothing(history: list[StateOp], mutate) -> None:  # type: ignore[no-untyped-def]
    """A snapshot that breaks the schema raises ProtocolError and leaves the state as it was."""
    source = SharedState(1)
    for op in history[:50]:
        source.apply(op)
    snapshot = source.snapshot()
    mutate(snapshot)
    target = SharedState(2)
    target.apply(history[60])
    digest = target.digest()
    with pytest.raises(ProtocolError):
        target.merge_snapshot(snapshot)
    assert target.digest() == digest and target.op_count == 1


def test_invalid_local_op_is_refused() -> None:
    """A local op whose payload breaks the schema is refused before it is counted or sent."""
    state = SharedState(1)
    with pytest.raises(ProtocolError):
        state.make_op(OpKind.CLIP_SET, {"index": 7, "normal": [0, 0, 1], "d": 0}, 0.0)
    assert state.seq == 0 and state.op_count == 0


def test_kept_entry_texts_stay_equal_to_the_whole_state_written_afresh(history: list[StateOp]) -> None:
    """The digest and snapshot written from the registers' kept entry texts equal canonical JSON of the
    whole state after every op and every merge (a stale text would make equal states hash apart)."""
    state = SharedState(9)
    other = SharedState(8)
    for i, op in enumerate(history):
        before = state.digest()
        applied = state.apply(op).applied
        expected = canonical_json(state._content())
        assert state._canonical() == expected
        assert state.digest() == hashlib.sha256(expected).digest()
        assert (state.digest() != before) == applied  # each new op is an applied op id at least
        if i % 25 == 24:  # a snapshot from a peer holding an overlapping, different part of the history
            for later in history[i : i + 40]:
                other.apply(later)
            state.merge_snapshot(other.snapshot_bytes())
            assert state._canonical() == canonical_json(state._content())
            assert state.snapshot_bytes() == canonical_json(state.snapshot())


def _measure(mark: str, a: list[float], b: list[float]) -> tuple[OpKind, dict]:
    return OpKind.MEASURE, {"id": mark, "a_mm": a, "b_mm": b, "distance_mm": math.dist(a, b), "label": mark}


def test_a_measurement_is_placed_once_and_its_delete_is_final() -> None:
    """A measurement shows with its endpoints and distance in twin mm; applied twice it changes nothing;
    deleted, it stays deleted, even against its own add arriving again or late."""
    author, other = SharedState(1), SharedState(2)
    add = _wire(author.make_op(*_measure("1:m", [0, 0, 0], [30, 40, 0]), 0.0))
    assert other.apply(add).applied and not other.apply(add).applied
    assert other.measurements == {"1:m": {"a_mm": [0.0, 0.0, 0.0], "b_mm": [30.0, 40.0, 0.0], "distance_mm": 50.0,
                                          "label": "1:m", "geodesic_mm": None}}
    delete = _wire(author.make_op(OpKind.MEASURE_DELETE, {"id": "1:m"}, 0.0))
    late = SharedState(3)
    for op in (delete, add):  # the delete overtakes the add
        late.apply(op)
    other.apply(delete)
    assert other.measurements == late.measurements == author.measurements == {}
    assert other.digest() == late.digest() == author.digest()


def test_clearing_removes_only_the_senders_marks_made_before() -> None:
    """Alice clears her marks: her stroke, landmark (moved by Bob meanwhile) and measurement go; Bob's
    stay; what Alice makes after the clear stays; Bob's clear does not touch Alice's."""
    alice, bob = SharedState(1), SharedState(2)
    ops = [
        alice.make_op(OpKind.STROKE_ADD, {"id": "1:s", "points": [[0, 1, 0]]}, 0.0),
        alice.make_op(OpKind.LANDMARK_PLACE, {"id": "1:l", "position": [0, 1, 0], "label": "apex"}, 0.0),
        alice.make_op(*_measure("1:m", [0, 0, 0], [1, 2, 2]), 0.0),
        bob.make_op(OpKind.STROKE_ADD, {"id": "2:s", "points": [[0, 1, 0]]}, 0.0),
        bob.make_op(OpKind.LANDMARK_PLACE, {"id": "2:l", "position": [0, 1, 0]}, 0.0),
        bob.make_op(*_measure("2:m", [0, 0, 0], [3, 4, 0]), 0.0),
    ]
    for op in ops:
        (bob if op.participant == 1 else alice).apply(op)
    moved = bob.make_op(OpKind.LANDMARK_MOVE, {"id": "1:l", "position": [0, 1.5, 0]}, 0.0)
    alice.apply(moved)
    clear = alice.make_op(OpKind.CLEAR_MARKS, {}, 0.0)
    after = alice.make_op(OpKind.STROKE_ADD, {"id": "1:s2", "points": [[0, 1, 0]]}, 0.0)
    bob.apply(clear)
    bob.apply(after)
    for state in (alice, bob):
        assert set(state.strokes) == {"2:s", "1:s2"}
        assert set(state.landmarks) == {"2:l"} and set(state.measurements) == {"2:m"}
    bob_clear = bob.make_op(OpKind.CLEAR_MARKS, {}, 0.0)
    alice.apply(bob_clear)
    for state in (alice, bob):
        assert set(state.strokes) == {"1:s2"} and state.landmarks == {} and state.measurements == {}
    assert alice.digest() == bob.digest()


@pytest.fixture
def marks_history() -> list[StateOp]:
    """Three peers drawing, placing, measuring, moving and deleting each other's marks and clearing their
    own, concurrently (each sees only its own ops); every mark has its own id, as tools make them."""
    ops = []
    for participant in (1, 2, 3):
        state = SharedState(participant)
        rng = random.Random(participant)
        for i in range(80):
            own, other = f"{participant}:{i}", f"{rng.choice((1, 2, 3))}:{rng.randrange(i + 1)}"
            pos = [rng.uniform(-1, 1), rng.uniform(0, 2), rng.uniform(-1, 1)]
            a, b = [rng.uniform(-90, 90) for _ in range(3)], [rng.uniform(-90, 90) for _ in range(3)]
            kind, payload = rng.choice([
                (OpKind.STROKE_ADD, {"id": own, "points": [pos, pos]}),
                (OpKind.LANDMARK_PLACE, {"id": own, "position": pos, "label": own}),
                _measure(own, a, b),
                (OpKind.LANDMARK_MOVE, {"id": other, "position": pos}),
                (OpKind.STROKE_ERASE, {"id": other}),
                (OpKind.MEASURE_DELETE, {"id": other}),
                (OpKind.CLEAR_MARKS, {}),
            ])  # fmt: skip
            ops.append(_wire(state.make_op(kind, payload, sender_time=1.0)))
    return ops


def test_marks_and_clears_converge_in_any_order(marks_history: list[StateOp]) -> None:
    """Ten peers receiving the marks history in ten shuffled orders (clears overtaking the marks they
    clear, moves before places) hold equal marks and digests; every clear removed something."""
    digests, views = set(), []
    for seed in range(10):
        order = marks_history[:]
        random.Random(seed).shuffle(order)
        state = SharedState(9)
        for op in order:
            state.apply(op)
        digests.add(state.digest())
        views.append((state.strokes, state.landmarks, state.measurements))
    assert len(digests) == 1 and all(view == views[0] for view in views)
    strokes, landmarks, measurements = views[0]
    assert strokes and landmarks and measurements  # marks made after the last clear of their author survive
    made = sum(1 for op in marks_history if op.kind in (OpKind.STROKE_ADD, OpKind.LANDMARK_PLACE, OpKind.MEASURE))
    assert len(strokes) + len(landmarks) + len(measurements) < made


def test_marks_survive_snapshots_and_late_clears(marks_history: list[StateOp]) -> None:
    """A snapshot taken half way, merged into a peer that then receives every op (again), gives the
    same state as applying them all; a snapshot carrying only a clear removes the marks it clears."""
    whole = SharedState(9)
    for op in marks_history:
        whole.apply(op)
    half = SharedState(8)
    for op in marks_history[::2]:
        half.apply(op)
    joiner = SharedState(7)
    joiner.merge_snapshot(half.snapshot_bytes())
    for op in marks_history:
        joiner.apply(op)
    assert joiner.digest() == whole.digest()
    assert SharedState(6).merge_snapshot(whole.snapshot()) == whole.op_count

    alice, bob = SharedState(1), SharedState(2)
    bob.apply(alice.make_op(OpKind.STROKE_ADD, {"id": "1:s", "points": [[0, 1, 0]]}, 0.0))
    clear = alice.make_op(OpKind.CLEAR_MARKS, {}, 0.0)
    only_clear = SharedState(3)
    only_clear.apply(clear)
    bob.merge_snapshot(only_clear.snapshot_bytes())
    assert bob.strokes == {} and bob.digest() == alice.digest()


def test_a_snapshot_is_vetted_entry_by_entry_against_its_writers_roles() -> None:
    """A hostile observer (3) that applied its own twin move, cut and landmark serves them in its snapshot:
    a merge with a role permit keeps the surgeon's (1) and expert's (2) entries, leaves the observer's out
    with a reason each, and judges entries after a grant in the same snapshot by the granted role."""
    from net.roles import ACTIONS, scope  # the policy the participants' permit uses

    tokens = {1: "surgeon", 2: "expert", 3: "observer"}

    def mark(mark_id: str, y: float) -> dict[str, object]:
        return {"id": mark_id, "position": [0.0, y, 0.0], "label": mark_id, "structure": None}

    hostile = SharedState(3)
    ops = [
        StateOp(1, 1, 1, OpKind.CLIP_SET, {"index": 0, "normal": [0, 1, 0], "d": 0.01}, 0.0),
        StateOp(2, 1, 2, OpKind.LANDMARK_PLACE, mark("bob:1", 0.1), 0.0),
        StateOp(3, 1, 3, OpKind.TRANSFORM, {"position": [0.5, 1, 0], "orientation": [0, 0, 0, 1], "scale": 2.0}, 0.0),
        StateOp(3, 2, 4, OpKind.CLIP_SET, {"index": 1, "normal": [1, 0, 0], "d": 0.0}, 0.0),
        StateOp(3, 3, 5, OpKind.LANDMARK_PLACE, mark("olga:1", 0.2), 0.0),
    ]
    for op in ops:
        hostile.apply(op)

    def permit(state: SharedState):  # the callable merge_snapshot takes
        def check(kind: OpKind, writer: int, stamp: tuple[int, int, int]) -> str | None:
            role = state.role_at(writer, stamp) or tokens[writer]
            return None if scope(role, kind) is not None else f"{role} may not {ACTIONS[kind]}"

        return check

    late = SharedState(4)
    late.merge_snapshot(hostile.snapshot_bytes(), permit(late))
    assert late.transform is None and set(late.clip_planes) == {0} and set(late.landmarks) == {"bob:1"}
    assert sorted(late.refused_entries) == sorted(
        ["observer may not move the twin", "observer may not set a clip plane", "observer may not place a landmark"]
    )
    unvetted = SharedState(5)
    unvetted.merge_snapshot(hostile.snapshot_bytes())  # without a permit, as before: everything is taken
    assert unvetted.transform is not None and set(unvetted.landmarks) == {"bob:1", "olga:1"}
    # a surgeon's grant (lamport 6) before the observer's next landmark (lamport 7): that one is the expert's
    hostile.apply(StateOp(1, 2, 6, OpKind.SET_ROLE, {"participant": 3, "role": "expert"}, 0.0))
    hostile.apply(StateOp(3, 4, 7, OpKind.LANDMARK_PLACE, mark("olga:2", 0.3), 0.0))
    again = SharedState(4)
    again.merge_snapshot(hostile.snapshot_bytes(), permit(again))
    assert set(again.landmarks) == {"bob:1", "olga:2"} and again.roles == {3: "expert"}
