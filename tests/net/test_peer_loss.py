"""With 5% of datagrams dropped (``net.faults`` lossy proxy, both directions), every state op still arrives, in order."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from net.faults import FaultPlan
from net.participant import Participant
from net.protocol import OpKind

pytestmark = pytest.mark.slow

Join = Callable[..., Awaitable[Participant]]


async def test_state_ops_survive_five_percent_loss_in_order(join: Join, until: Callable[..., Awaitable[None]]) -> None:
    """300 ops at 100 Hz across a link losing 5% of datagrams each way: all 300 applied, in sequence order."""
    alice = await join("alice", room="lossy", role="surgeon")
    bob = await join("bob", room="lossy", faults=FaultPlan(loss=0.05, seed=7))
    seen: list[int] = []
    bob.on_op = lambda op, latency: seen.append(op.seq) if op.participant == alice.index else None
    await until(lambda: alice.links.get("bob") is not None and alice.links["bob"].is_open, timeout=30.0)
    for i in range(300):
        alice.make_op(OpKind.LANDMARK_PLACE, {"id": f"l{i}", "position": [0.0, 1.0, 0.001 * i]})
        await asyncio.sleep(0.01)
    await until(lambda: len(seen) == 300, timeout=30.0)
    assert seen == list(range(1, 301))
    assert bob.state.digest() == alice.state.digest()
    assert bob.network is not None and bob.network.counters.lost > 0  # the loss really happened
    # Poses are unreliable: some are lost, none are delivered twice or out of order (newest wins).
    assert bob.counters["poses_applied"] < alice.counters["poses_sent"]


async def test_state_ops_made_during_an_outage_all_arrive_in_order_after_it(
    join: Join, until: Callable[..., Awaitable[None]]
) -> None:
    """The network goes down for 3 s while ops keep being made: afterwards every op arrives, in order, nothing twice."""
    alice = await join("alice", room="outage", role="surgeon")
    bob = await join("bob", room="outage", faults=FaultPlan())
    seen: list[int] = []
    bob.on_op = lambda op, latency: seen.append(op.seq) if op.participant == alice.index else None
    await until(lambda: alice.links.get("bob") is not None and alice.links["bob"].is_open, timeout=30.0)
    assert bob.network is not None
    for i in range(120):
        if i == 20:
            bob.network.set_down(True)
        if i == 80:
            bob.network.set_down(False)
        alice.make_op(OpKind.STROKE_ADD, {"id": f"s{i}", "points": [[0.0, 1.0, 0.001 * i]]})
        await asyncio.sleep(0.05)
    assert bob.network.counters.blocked > 0
    await until(lambda: len(seen) == 120, timeout=30.0)
    assert seen == list(range(1, 121))
    assert bob.state.digest() == alice.state.digest()
