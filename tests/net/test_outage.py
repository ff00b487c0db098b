"""Network outages (``net.faults`` proxy, both directions dropped) lose no state op and heal quickly.

Two real aiortc peers on loopback; bob's ICE traffic crosses his fault proxy, alice keeps making ops.

- Up to 10 s: the connection rides it out (aioice's consent check gives up only after about 30 s and
  the participant's liveness timeout is longer than the outage); SCTP retransmits what was lost.
- Longer: the link is declared dead by the participant's liveness check on its own traffic
  (``ParticipantConfig.liveness_timeout_s``; 4 s here instead of the default so the test stays short
  while the failure is still a real one: the old connection is torn down), the offerer rebuilds it
  through signaling, and the new link resumes from op sequence numbers before anything else.

The same outages in a relay room (tests named ``*relay*``: the server's mesh limit is 1 there): bob's
link to the relay crosses his proxy. The relay answers pings, so bob can tell his relay link is dead,
and it closes a link it has not heard from (``liveness_timeout_s``, 6 s in the long outage), so it stops
sending into the dead path, and tells the participant so through signaling. One relay outage lasts 35 s
with every timeout at its default, past aioice's own consent timeout, as a real one would.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from net.faults import FaultPlan
from net.participant import Participant
from net.protocol import OpKind
from net.signaling import SignalingServer
from net.tokens import RELAY_ID

pytestmark = pytest.mark.slow

Join = Callable[..., Awaitable[Participant]]
Until = Callable[..., Awaitable[None]]


@pytest.fixture
def server_options(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Relay rooms for the relay tests (mesh limit 1); a relay that gives up a silent link after 6 s where the test says so."""
    if "relay" not in request.node.name:
        return {}
    return {"mesh_limit": 1, "relay_options": {"liveness_timeout_s": 6.0 if "relay_gives_up" in request.node.name else 12.0}}


async def _outage_run(
    join: Join, until: Until, room: str, outage_s: float, *, every_op: bool = True, **config: Any
) -> dict[str, Any]:
    """alice and bob each make an op every 50 ms from 1 s before to 1 s after an ``outage_s`` outage of bob's network.

    Returns once every op has reached bob and the digests agree: what bob saw, and how long after the
    network returned (seconds) the last op made during the outage arrived, the states first agreed and
    the first pose arrived. ``every_op=False``: alice's ops may reach bob inside a snapshot rather
    than one by one (a rebuilt relay link), so only his state is waited for.
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
    relay = alice.topology == "relay"
    a_link, b_link = (RELAY_ID, RELAY_ID) if relay else ("bob", "alice")
    await until(lambda: a_link in alice.links and alice.links[a_link].is_open
                and b_link in bob.links and bob.links[b_link].is_open
                and bob.remotes[alice.index].clock.synchronized)
    first_link = bob.links[b_link]
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
    await until(lambda: (len(seqs) >= n or not every_op) and len(from_bob) >= n and bob.state.digest() == alice.state.digest()
                and bool(synced), timeout=20.0)
    await watcher
    await until(lambda: sum(t > restored for t in poses) > 10)  # poses flow again
    return {
        "alice": alice,
        "bob": bob,
        "n": n,
        "seqs": seqs,
        "from_bob": from_bob,
        "last_outage_op_after_s": arrivals[last_outage_op] - restored if last_outage_op in arrivals else None,
        "synced_after_s": synced[0] - restored,
        "first_pose_after_s": min(t for t in poses if t > restored) - restored,
        "rebuilt": bob.links.get(b_link) is not first_link,
    }


def _back_within_five_seconds(run: dict[str, Any], what: str) -> None:
    """Print what a long outage did and how soon after the network returned the states agreed and a pose
    arrived; the issue's target for both: within 5 s."""
    print(f"{what}; after the network returned: states equal {run['synced_after_s']:.2f} s, "
          f"first pose {run['first_pose_after_s']:.2f} s")
    assert run["synced_after_s"] < 5.0
    assert run["first_pose_after_s"] < 5.0


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
    _back_within_five_seconds(run, f"15 s outage: rebuilt, {alice.counters['ops_resent']} ops resent; last outage op "
                                   f"{run['last_outage_op_after_s']:.2f} s")


async def test_ten_second_relay_outage_loses_no_op(join: Join, until: Until, server: SignalingServer) -> None:
    """Through the relay, a 10 s outage of bob's link is ridden out: every op once, in order, both ways."""
    run = await _outage_run(join, until, "relay-outage-10", 10.0)
    alice, bob = run["alice"], run["bob"]
    assert alice.topology == bob.topology == "relay"
    assert bob.network.counters.blocked > 0
    assert run["seqs"] == list(range(1, run["n"] + 1))
    assert run["from_bob"] == list(range(1, run["n"] + 1))
    assert not run["rebuilt"] and bob.counters["links_dead"] == 0  # 10 s is under both liveness timeouts
    print(f"10 s relay outage: last outage op {run['last_outage_op_after_s']:.2f} s, "
          f"states equal {run['synced_after_s']:.2f} s after the network returned")
    assert run["last_outage_op_after_s"] < 8.0


@pytest.mark.parametrize("who", ["relay_gives_up", "participant_gives_up", "defaults_35s"])
async def test_long_relay_outage_rebuilds_the_link_and_resyncs_within_five_seconds(
    join: Join, until: Until, server: SignalingServer, who: str
) -> None:
    """Through the relay, a 15 s outage of bob's link. Either the relay gives the silent link up first (6 s)
    and tells bob through signaling, or bob does (4 s) and offers again; either way his ops of the outage
    are resent in order, alice's reach him in a snapshot, and all is in sync < 5 s after the network returns.
    ``defaults_35s``: 35 s with every timeout at its default (12 s on both sides; aioice's consent check
    would give up at about 30 s), so bob's tries fail for over 20 s before one holds."""
    room = f"relay-outage-{who}"
    config = {"liveness_timeout_s": 4.0} if who == "participant_gives_up" else {}
    outage_s = 35.0 if who == "defaults_35s" else 15.0
    run = await _outage_run(join, until, room, outage_s, every_op=False, **config)
    alice, bob = run["alice"], run["bob"]
    relay = server.rooms[room].relay
    assert relay is not None and run["rebuilt"]
    if who == "relay_gives_up":
        assert relay.counters["links_dead"] > 0 and bob.counters["links_closed_by_relay"] > 0
    elif who == "participant_gives_up":
        assert bob.counters["links_dead"] > 0  # bob heard nothing from the relay, not even its pongs
    else:
        assert bob.counters["connect_timeouts"] >= 4  # (35 - 12) s of failed tries, one every 3 s
    assert alice.counters["links_dead"] == 0 and alice.links[RELAY_ID].is_open  # alice's link was never touched
    assert bob.counters["ops_resent"] > 0  # bob's ops of the outage went out again on the new link
    assert run["from_bob"] == list(range(1, run["n"] + 1))  # each reached alice once, in order
    assert bob.counters["snapshots_merged"] >= 2  # alice's ops of the outage came in a snapshot
    assert bob.state.has(alice.index, run["n"]) and bob.state.digest() == alice.state.digest()
    _back_within_five_seconds(run, f"{outage_s:.0f} s relay outage ({who}): rebuilt, {bob.counters['connect_timeouts']} "
                                   f"failed tries, {bob.counters['ops_resent']} ops resent")


async def test_relay_answers_pings_so_a_lone_participant_hears_a_healthy_link(
    join: Join, until: Until, server: SignalingServer
) -> None:
    """Alone in a relay room, a participant still hears the relay (its pongs), so liveness never closes a healthy link."""
    solo = await join("solo", room="relay-alone", liveness_timeout_s=1.0, pose_rate_hz=0)
    other = await join("other", room="relay-alone")  # the second one takes the room above the mesh limit
    await until(lambda: solo.topology == "relay" and RELAY_ID in solo.links and solo.links[RELAY_ID].is_open)
    await other.stop()
    link = solo.links[RELAY_ID]
    await asyncio.sleep(3.0)  # three liveness timeouts
    assert solo.links.get(RELAY_ID) is link and link.is_open and solo.counters["links_dead"] == 0
    assert solo.relay_clock.synchronized and abs(solo.relay_clock.offset) < 0.005  # same machine, same clock
    relay = server.rooms["relay-alone"].relay
    assert relay is not None and relay.counters["pongs_sent"] >= 10
