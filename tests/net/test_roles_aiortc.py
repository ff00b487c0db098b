"""Roles on loopback: real signaling server, real aiortc peers, in a mesh and through the relay (docs/roles.md)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from net.participant import Participant
from net.protocol import OpKind, StateOp, StateRefusal, encode_state
from net.signaling import SignalingServer
from net.state import OpRefusedError

TWIN_MOVE = {"position": [0.1, 1.0, -0.4], "orientation": [0.0, 0.0, 0.0, 1.0], "scale": 1.0}


@pytest.fixture(params=["mesh", "relay"])
def server_options(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Three participants: a mesh, or (mesh limit 2) a room that switches to the relay when the third joins."""
    return {} if request.param == "mesh" else {"mesh_limit": 2}


def unchecked(p: Participant, kind: OpKind, payload: dict[str, Any]) -> StateOp:
    """Send an op the way a client without the local role check would (applied nowhere here, as if it
    waited for acceptance): the relay and the receivers must refuse it on their own."""
    p.state.seq += 1
    op = StateOp(p.index, p.state.seq, p.state.lamport + 1, kind, payload, p.clock())
    for link in p.link_set.open_links():
        link.send("state", encode_state(op))
    return op


def linked(p: Participant, topology: str) -> bool:
    """Linked to everyone (mesh) or to the relay, and holding the room's state."""
    want = 1 if topology == "relay" else 2
    return p.caught_up.is_set() and p.topology == topology and len(p.link_set.open_links()) == want


async def test_roles_are_enforced_granted_and_revoked_everywhere(
    join: Callable[..., Awaitable[Participant]],
    until: Callable[..., Awaitable[None]],
    server: SignalingServer,
    server_options: dict[str, Any],
) -> None:
    """An observer's twin move and landmark are refused everywhere with reasons and digests stay equal; once a
    surgeon grants the observer the expert role the same ops apply everywhere; revoked, they are refused again."""
    topology = "relay" if server_options else "mesh"
    alice = await join("alice", role="surgeon")
    bob = await join("bob", role="expert")
    olga = await join("olga", role="observer")
    people = [alice, bob, olga]
    await until(lambda: all(linked(p, topology) for p in people), timeout=30)
    refusals: list[StateRefusal] = []
    olga.on_refused = refusals.append

    def converged(count: int) -> bool:
        return all(p.state.op_count == count for p in people) and len({p.state.digest() for p in people}) == 1

    bob.make_op(OpKind.LANDMARK_PLACE, {"id": "bob:1", "position": [0.0, 1.1, 0.0]})
    await until(lambda: converged(1))

    # The observer's own participant refuses to make the ops at all...
    for kind, payload in ((OpKind.TRANSFORM, TWIN_MOVE), (OpKind.LANDMARK_PLACE, {"id": "olga:1", "position": [0, 1, 0]})):
        with pytest.raises(OpRefusedError, match="observer may not"):
            olga.make_op(kind, payload)
    assert olga.counters["ops_refused_local"] == 2 and olga.state.op_count == 1
    # ...and a client without that check is refused by the relay, or by every receiver, with reasons.
    move = unchecked(olga, OpKind.TRANSFORM, TWIN_MOVE)
    mark = unchecked(olga, OpKind.LANDMARK_PLACE, {"id": "olga:2", "position": [0.0, 1.2, 0.0]})
    await until(lambda: {r.seq for r in refusals} == {move.seq, mark.seq})
    assert {r.reason for r in refusals} == {"observer may not move the twin", "observer may not place a landmark"}
    assert all(r.to == olga.index for r in refusals)
    if topology == "relay":
        relay = server.rooms["ward"].relay
        assert relay is not None and relay.counters["ops_refused"] == 2
        assert all(r.participant == 0 for r in refusals)
    else:
        await until(lambda: alice.counters["ops_refused"] == bob.counters["ops_refused"] == 2)
    assert converged(1) and alice.state.transform is None and "olga:2" not in bob.state.landmarks

    # The surgeon grants the observer the expert role: once it has the grant, the same ops apply everywhere.
    alice.make_op(OpKind.SET_ROLE, {"participant": olga.index, "role": "expert"})
    await until(lambda: all(p.sync.role_of(olga.index) == "expert" for p in people) and converged(2))
    assert olga.role == "expert" and bob.state.roles == {olga.index: "expert"}
    olga.make_op(OpKind.TRANSFORM, TWIN_MOVE)
    olga.make_op(OpKind.LANDMARK_PLACE, {"id": "olga:3", "position": [0.0, 1.2, 0.0]})
    await until(lambda: converged(4))
    assert alice.state.transform is not None and "olga:3" in bob.state.landmarks
    # The ops refused before the grant stay refused: they were made before it.
    assert not any(p.state.has(olga.index, move.seq) or p.state.has(olga.index, mark.seq) for p in people)

    # Revoked (back to observer), the expert's ops are refused again.
    alice.make_op(OpKind.SET_ROLE, {"participant": olga.index, "role": "observer"})
    await until(lambda: all(p.sync.role_of(olga.index) == "observer" for p in people) and converged(5))
    with pytest.raises(OpRefusedError):
        olga.make_op(OpKind.SELECT, {"structure": "thalamus"})
    again = unchecked(olga, OpKind.SELECT, {"structure": "thalamus"})
    await until(lambda: again.seq in {r.seq for r in refusals})
    assert converged(5) and alice.state.selection is None
    # A non-surgeon may not grant: bob's attempt is refused locally and, unchecked, everywhere.
    with pytest.raises(OpRefusedError, match="expert may not grant or revoke a role"):
        bob.make_op(OpKind.SET_ROLE, {"participant": bob.index, "role": "surgeon"})
    bob_refusals: list[StateRefusal] = []
    bob.on_refused = bob_refusals.append
    unchecked(bob, OpKind.SET_ROLE, {"participant": bob.index, "role": "surgeon"})
    await until(lambda: len(bob_refusals) == 1)
    assert converged(5) and alice.sync.role_of(bob.index) == "expert"


async def test_a_late_joiner_leaves_out_what_a_hostile_observer_put_in_its_snapshot(
    join: Callable[..., Awaitable[Participant]],
    until: Callable[..., Awaitable[None]],
    server_options: dict[str, Any],
) -> None:
    """An observer's client that moved the twin at home (never sent, so never refused) serves that move in
    its snapshots: the expert who joins later and merges one leaves the entry out with a counted line, and
    ends with the surgeon's state, not the observer's."""
    topology = "relay" if server_options else "mesh"
    alice = await join("alice", role="surgeon")
    olga = await join("olga", role="observer")
    await until(lambda: alice.caught_up.is_set() and olga.caught_up.is_set() and len(olga.link_set.open_links()) == 1)
    olga.state.seq += 1
    olga.state.apply(StateOp(olga.index, olga.state.seq, olga.state.lamport + 1, OpKind.TRANSFORM, TWIN_MOVE, olga.clock()))
    carol = await join("carol", role="expert")
    people = [alice, olga, carol]
    await until(lambda: all(linked(p, topology) for p in people), timeout=30)
    # the snapshot a late joiner merges may come from anyone (through the relay, whoever the relay asks):
    # ask the observer for one, as carol would have had she asked it first
    link = carol.link_set.links["olga"] if topology == "mesh" else carol.link_set.open_links()[0]
    carol.sync.request_snapshot(link, olga.index)
    await until(lambda: carol.counters["snapshot_entries_refused"] >= 1, timeout=15)
    assert carol.state.transform is None and alice.state.transform is None
    await until(lambda: carol.state.digest() == alice.state.digest(), timeout=10)
