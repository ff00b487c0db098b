"""Network outages (``net.faults`` proxy, both directions dropped) lose no state op and heal quickly.

Two real aiortc peers on loopback; bob's ICE traffic crosses his fault proxy, alice keeps making ops.

- Up to 10 s: the connection rides it out (aioice's consent check gives up only after about 30 s and
  the participant's liveness timeout is longer than the outage); SCTP retransmits what was lost.
- Longer: the link is declared dead by the participant's liveness check on its own traffic
  (``ParticipantConfig.liveness_timeout_s``; 4 s here instead of the default so the test stays short
  while the failure is still a real one: the old connection is torn down), the offerer rebuilds it
  through signaling, and the new link resumes from op sequence numbers before anything else.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from net.faults import FaultPlan
from net.participant import Participant
from net.protocol import OpKind

Join = Callable[..., Awaitable[Participant]]
Until = Callable[..., Awaitable[None]]


async def _outage_run(join: Join, until: Until, room: str, outage_s: float, **config: Any) -> dict[str, Any]:
    """alice and bob each make an op every 50 ms from 1 s before to 1 s after an ``outage_s`` outage of bob's network.

    Returns once every op has reached bob and the digests agree: what bob saw, and how long after the
    network returned (seconds) the last op made during the outage arrived, the states first agreed and
    the first pose arrived.
    """
    alice = await join("alice", room=room, role="surgeon", **config)
    bob = await join("bob", room=room, faults=FaultPlan(), **config)
    arrivals: dict[int, float] = {}
    seqs: list[int] = []

    def on_op(op: Any, latency: float | None) -> None:
        if op.participant == alice.index:
            seqs.append(op.seq)
            arrivals[op.seq] = time.monotonic()

    poses: list[float] = []
    bob.on_op = on_op
    from_bob: list[int] = []
    alice.on_op = lambda op, latency: from_bob.append(op.seq) if op.participant == bob.index else None
    bob.on_pose = lambda record, latency: poses.append(time.monotonic()) if record.participant == alice.index else None
    await until(lambda: "bob" in alice.links and alice.links["bob"].is_open and "alice" in bob.links and bob.links["alice"].is_open)
    first_link = alice.links["bob"]
    assert bob.network is not None
    n = 0

    async def make_ops(seconds: float) -> None:
        nonlocal n
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            n += 1
            alice.make_op(OpKind.STROKE_ADD, {"id": f"s{n}", "points": [[0.0, 1.0, 0.001 * n]]})
            bob.make_op(OpKind.LANDMARK_PLACE, {"id": f"b{n}", "position": [0.1, 1.0, 0.001 * n]})
            await asyncio.sleep(0.05)

    await make_ops(1.0)
    bob.network.set_down(True)
    await make_ops(outage_s)
    bob.network.set_down(False)
    restored, last_outage_op = time.monotonic(), n
    synced: list[float] = []

    async def watch_sync() -> None:
        while not synced:
            if bob.state.has(alice.index, last_outage_op) and bob.state.digest() == alice.state.digest():
                synced.append(time.monotonic())
            await asyncio.sleep(0.01)

    watcher = asyncio.ensure_future(watch_sync())
    await make_ops(1.0)
    await until(lambda: len(seqs) >= n and len(from_bob) >= n and bob.state.digest() == alice.state.digest() and bool(synced), timeout=20.0)
    await watcher
    await until(lambda: sum(t > restored for t in poses) > 10)  # poses flow again
    return {
        "alice": alice,
        "bob": bob,
        "n": n,
        "seqs": seqs,
        "from_bob": from_bob,
        "last_outage_op_after_s": arrivals[last_outage_op] - restored,
        "synced_after_s": synced[0] - restored,
        "first_pose_after_s": min(t for t in poses if t > restored) - restored,
        "rebuilt": alice.links.get("bob") is not first_link,
    }


async def test_ten_second_outage_loses_no_op(join: Join, until: Until) -> None:
    """A 10 s outage while ops are made: every op reaches bob once, in order, and the states agree."""
    run = await _outage_run(join, until, "outage-10", 10.0)
    alice, bob = run["alice"], run["bob"]
    assert bob.network.counters.blocked > 0  # the outage really dropped traffic
    assert run["seqs"] == list(range(1, run["n"] + 1))  # all of them, once each, in order
    assert run["from_bob"] == list(range(1, run["n"] + 1))  # and the same the other way
    assert bob.state.digest() == alice.state.digest()
    print(f"10 s outage: rebuilt={run['rebuilt']}, last outage op {run['last_outage_op_after_s']:.2f} s, "
          f"states equal {run['synced_after_s']:.2f} s after the network returned")
    # The same connection heals by SCTP retransmission, whose timer backs off 1, 2, 4, 8 s during the
    # outage: the next retransmission comes up to about 5 s after the network returns (0.6-3.5 s measured
    # on a loaded 2-core box), then the backlog drains. The issue sets no time for this case; 8 s keeps
    # the measurement honest without flaking.
    assert run["last_outage_op_after_s"] < 8.0


async def test_long_outage_rebuilds_the_link_and_resyncs_within_five_seconds(join: Join, until: Until) -> None:
    """A 15 s outage outlives the link (4 s liveness timeout): it is rebuilt, nothing is lost, all in sync < 5 s after."""
    run = await _outage_run(join, until, "outage-15", 15.0, liveness_timeout_s=4.0)
    alice, bob = run["alice"], run["bob"]
    assert run["rebuilt"]  # a new connection, not the old one healed
    # bob offered the link, so his liveness check declares it dead (alice's may or may not fire before
    # his new offer replaces her side of it).
    assert bob.counters["links_dead"] > 0
    assert bob.counters["connect_timeouts"] > 0  # rebuilding while the network was still down failed
    assert alice.counters["ops_resent"] > 0  # the ops of the outage were resent on the new link
    assert run["seqs"] == list(range(1, run["n"] + 1))  # every op once, in order
    assert run["from_bob"] == list(range(1, run["n"] + 1))  # and the same the other way
    assert bob.counters["ops_resent"] > 0
    assert bob.state.digest() == alice.state.digest()
    print(f"15 s outage: rebuilt, {alice.counters['ops_resent']} ops resent; after the network returned: last outage "
          f"op {run['last_outage_op_after_s']:.2f} s, states equal {run['synced_after_s']:.2f} s, "
          f"first pose {run['first_pose_after_s']:.2f} s")
    assert run["synced_after_s"] < 5.0
    assert run["first_pose_after_s"] < 5.0
