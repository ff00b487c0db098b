"""Shared state over real peers: a late joiner catches up by snapshot plus deltas and every digest agrees."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from net.participant import Participant
from net.protocol import OpKind


@pytest.fixture
def participant_options() -> dict[str, object]:
    """No poses: these tests are about state."""
    return {"pose_rate_hz": 0, "report_interval_s": 0.3}


def open_links(p: Participant) -> int:
    return sum(1 for link in p.links.values() if link.is_open)


async def test_late_joiner_gets_snapshot_then_deltas(
    join: Callable[..., Participant], until: Callable[..., Awaitable[None]]
) -> None:
    """Ops made before, while and after a third peer joins all reach it once; all three digests agree."""
    alice = await join("alice", role="surgeon")  # she moves bob's landmarks
    bob = await join("bob")
    await until(lambda: open_links(alice) == 1 and open_links(bob) == 1)
    for i in range(30):
        alice.make_op(OpKind.STROKE_ADD, {"id": f"a{i}", "points": [[0.0, 1.0, 0.001 * i]]})
        bob.make_op(OpKind.LANDMARK_PLACE, {"id": f"b{i}", "position": [0.0, 1.1, 0.001 * i]})
    alice.make_op(OpKind.STROKE_ERASE, {"id": "a3"})
    carol_task = asyncio.ensure_future(join("carol"))
    # Keep editing while carol connects: some of these reach her as ops, some inside snapshots, some both.
    for i in range(30, 60):
        alice.make_op(OpKind.LANDMARK_MOVE, {"id": f"b{i - 30}", "position": [0.1, 1.1, 0.001 * i]})
        await asyncio.sleep(0.005)
    carol = await carol_task
    await until(lambda: open_links(carol) == 2)
    carol.make_op(OpKind.SELECT, {"structure": "hippocampus"})
    await until(lambda: alice.state.op_count == bob.state.op_count == carol.state.op_count == 92)
    assert alice.state.digest() == bob.state.digest() == carol.state.digest()
    assert carol.counters["snapshots_merged"] >= 1
    assert len(carol.state.strokes) == 29 and len(carol.state.landmarks) == 30
    assert carol.state.landmarks["b0"]["position"] == [0.1, 1.1, 0.03]
    # Every peer publishes its digest; each sees the others agree.
    await until(lambda: all(r.digest == (92, alice.state.digest()) for p in (alice, bob, carol) for r in p.remotes.values()))


async def test_peer_that_missed_ops_resynchronises_from_digests(
    join: Callable[..., Participant], until: Callable[..., Awaitable[None]]
) -> None:
    """Ops applied locally but never sent (a dropped connection, say) are recovered by digest comparison."""
    alice = await join("alice")
    bob = await join("bob")
    await until(lambda: open_links(alice) == 1 and open_links(bob) == 1)
    for i in range(5):
        alice.state.make_op(OpKind.LANDMARK_PLACE, {"id": f"lost{i}", "position": [0, 1, 0]}, alice.clock())  # never sent
    await until(lambda: bob.state.op_count == 5, timeout=10.0)
    assert bob.state.digest() == alice.state.digest()
    assert bob.counters["resync_requests"] >= 1
