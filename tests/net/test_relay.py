"""Relay mode: above the mesh limit every participant connects to the server's relay, which forwards by header."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable

import pytest

from net.faults import FaultPlan
from net.participant import Participant, ParticipantConfig
from net.protocol import RELAY_TICK_HZ, OpKind, PoseRecord, WirePose, encode_pose
from net.signaling import ServerConfig, SignalingServer
from net.tokens import RELAY_ID, issue_token
from sessions.consult.scripted import procedural_poses

pytestmark = pytest.mark.latency


@pytest.fixture
def server_options() -> dict[str, object]:
    """Rooms switch to the relay above two participants; a pose budget (1,000 bundles/s) under what a room of
    four would send pose by pose (1,080), so that rooms of four flush on the relay's tick grid."""
    return {"mesh_limit": 2, "relay_options": {"pose_budget_hz": 1000.0}}


def on_relay(p: Participant, others: int) -> bool:
    link = p.links.get(RELAY_ID)
    return (
        p.topology == "relay"
        and list(p.links) == [RELAY_ID]
        and link is not None
        and link.is_open
        and sum(1 for r in p.remotes.values() if r.clock.synchronized) == others
    )


async def test_room_above_mesh_limit_switches_to_relay_and_converges(
    join: Callable[..., Participant], server: SignalingServer, until: Callable[..., Awaitable[None]]
) -> None:
    """Four participants (limit 2): all end on the relay, see each other's poses and ops, and agree on the state."""
    people = []
    for name in ("alice", "bob", "carol", "dave"):
        people.append(await join(name))
        people[-1].make_op(OpKind.LANDMARK_PLACE, {"id": f"{name}-1", "position": [0.0, 1.0, 0.0]})
    await until(lambda: all(on_relay(p, 3) for p in people))
    for i, p in enumerate(people):
        p.make_op(OpKind.CLIP_SET, {"index": i, "normal": [1, 0, 0], "d": 0.01})
    await until(lambda: all(p.state.op_count == 8 for p in people))
    assert len({p.state.digest() for p in people}) == 1
    await until(lambda: all(len(p.monitor.links) == 3 and p.monitor.summary().count >= 30 for p in people))  # type: ignore[union-attr]
    for p in people:
        figures = p.monitor.summary()
        assert figures is not None and figures.p50_ms < 30
    room = server.snapshot()["rooms"][0]
    assert room["topology"] == "relay"
    relay = room["relay_stats"]
    assert relay["open"] == 4 and relay["counters"]["forwarded_pose"] > 100
    assert relay["counters"].get("spoofed", 0) == 0


async def test_relay_drops_messages_in_someone_elses_name(
    join: Callable[..., Participant], server: SignalingServer, until: Callable[..., Awaitable[None]]
) -> None:
    """A participant sending a pose with another's index through the relay: the relay drops and counts it."""
    people = [await join(name, pose_rate_hz=0) for name in ("alice", "bob", "carol")]
    await until(lambda: all(on_relay(p, 2) for p in people))
    alice, bob, carol = people
    forged = PoseRecord(bob.index, 1, alice.clock(), head=WirePose((0.0, 1.6, 0.0)))
    alice.links[RELAY_ID].send("pose", encode_pose(forged))
    alice.links[RELAY_ID].send("pose", b"\x01\x10 not a pose")
    relay = server.rooms["ward"].relay
    assert relay is not None
    await until(lambda: relay.counters["spoofed"] == 1 and relay.counters["malformed"] == 1)
    await asyncio.sleep(0.2)
    assert carol.remotes[bob.index].pose is None
    # A broken pose in alice's own name passes the relay's header check; receivers drop it alone.
    good = encode_pose(PoseRecord(alice.index, 2, alice.clock(), head=WirePose((0.0, 1.6, 0.0))))
    alice.links[RELAY_ID].send("pose", good[:16] + b"\x17" + good[17:])  # reserved presence bit
    await until(lambda: bob.counters["malformed_pose"] == 1 and carol.counters["malformed_pose"] == 1)
    # An oversized "pose" (the channel takes up to 1,200 bytes, for bundles) never reaches a bundle.
    alice.links[RELAY_ID].send("pose", good + bytes(200))
    await until(lambda: relay.counters["malformed"] == 2)
    alice.links[RELAY_ID].send("pose", good)
    await until(lambda: carol.remotes[alice.index].pose is not None and bob.remotes[alice.index].pose is not None)
    alice.make_op(OpKind.SELECT, {"structure": "thalamus"})
    await until(lambda: bob.state.selection == carol.state.selection == "thalamus")


async def test_relay_bundles_poses_within_its_budget(until: Callable[..., Awaitable[None]]) -> None:
    """A budget of 240 bundles/s for four receivers paces flushes to 60/s: each receiver gets one bundle
    per flush carrying the other three senders' newest poses; ops go with the bundles, and all arrive."""
    srv = SignalingServer(ServerConfig(secret=b"relay-budget-secret-0123456789abcd", port=0, mesh_limit=1,
                                       relay_options={"pose_budget_hz": 240.0}))
    await srv.start()
    people = []
    try:
        for name in ("alice", "bob", "carol", "dave"):
            token = issue_token(srv.config.secret, "budget", name, "expert")
            people.append(Participant(srv.url, token, ParticipantConfig(report_interval_s=0.3), poses=procedural_poses))
            await people[-1].start()
        await until(lambda: all(on_relay(p, 3) for p in people))
        relay = srv.rooms["budget"].relay
        assert relay is not None and relay.pose_interval() == pytest.approx(1 / 60)
        # Who each flush serves first (watching the relay's sends, changing nothing).
        first: list[str] = []
        forward = relay._forward

        def watching(label: str, data: bytes | list[bytes], targets: list) -> None:  # type: ignore[type-arg]
            if label == "pose" and relay.counters["pose_flushes"] != len(first):
                first.append(targets[0].remote)
            forward(label, data, targets)

        relay._forward = watching  # type: ignore[method-assign]
        before = [(p.counters["poses_applied"], p.counters["pose_bundles"]) for p in people]
        await asyncio.sleep(2.0)
        relay._forward = forward  # type: ignore[method-assign]
        # Each flush starts one receiver further along: nobody is always served first (or last).
        assert len(first) >= 60 and all(first.count(p.name) >= 0.15 * len(first) for p in people), first
        for p, (poses0, bundles0) in zip(people, before, strict=True):
            poses, bundles = p.counters["poses_applied"] - poses0, p.counters["pose_bundles"] - bundles0
            # At most 60 flushes a second (plus timer slack), most carrying a pose of each of 3 senders.
            assert 60 <= bundles <= 2 * 60 + 10, (p.name, bundles)
            assert 2.2 * bundles <= poses <= 3 * bundles, (p.name, poses, bundles)
        # Senders at 90 Hz outpace 60 flushes: the older of two waiting poses is replaced, never queued.
        assert relay.counters["pose_superseded"] > 0
        held = relay.counters["state_held"]
        for i, p in enumerate(people):
            for k in range(5):
                p.make_op(OpKind.CLIP_SET, {"index": (i + k) % 6, "normal": [0, 1, 0], "d": 0.01 * k})
        await until(lambda: all(p.state.op_count == 20 for p in people))
        assert len({p.state.digest() for p in people}) == 1
        # Ops (and digests) waited for their receivers' next bundles, and still arrived in order.
        assert relay.counters["state_held"] >= held + 20
        assert all(p.counters["ops_duplicate"] == 0 for p in people)
    finally:
        for p in people:
            await p.stop()
        await srv.stop()


async def test_participants_time_their_poses_for_the_relays_ticks(
    join: Callable[..., Participant], server: SignalingServer, until: Callable[..., Awaitable[None]]
) -> None:
    """Senders at 90 Hz learn the relay's clock from its pongs and send just before its primary ticks:
    each receiver then gets about one bundle per tick holding all three other senders' poses (unaligned
    senders would spread over the 180 Hz grid: up to twice the bundles, half as full), flushed as soon
    as all three are in, so the poses' one-way latency stays under a few milliseconds."""
    people = [await join(name) for name in ("alice", "bob", "carol", "dave")]
    await until(lambda: all(on_relay(p, 3) and p.relay_clock.synchronized for p in people))
    await asyncio.sleep(1.0)  # the pose loops re-phase within a period; give the clocks a few more samples
    relay = server.rooms["ward"].relay
    assert relay is not None
    flushes0, early0 = relay.counters["pose_flushes"], relay.counters["pose_flushes_early"]
    before = [(p.counters["poses_applied"], p.counters["pose_bundles"]) for p in people]
    start = asyncio.get_running_loop().time()
    await asyncio.sleep(2.0)
    elapsed = asyncio.get_running_loop().time() - start
    flushes, early = relay.counters["pose_flushes"] - flushes0, relay.counters["pose_flushes_early"] - early0
    # Once every sender's pose is in, the relay flushes without waiting for the tick.
    assert early >= 0.5 * flushes, (early, flushes)
    for p, (poses0, bundles0) in zip(people, before, strict=True):
        poses, bundles = p.counters["poses_applied"] - poses0, p.counters["pose_bundles"] - bundles0
        assert bundles / elapsed < 120, (p.name, bundles / elapsed)  # ~90 a second, not ~180
        assert poses / bundles > 2.4, (p.name, poses / bundles)  # nearly all three senders in each
        figures = p.monitor.summary()
        # Waiting for the tick, poses waited the senders' lead and more: p50 3.2-3.6 ms here. Flushed
        # early, 1.9-2.3 ms (four runs on an idle 2-core machine): the bound lies between the two.
        assert figures is not None and figures.p50_ms < 2.8, (p.name, figures)


async def test_a_small_relay_room_forwards_each_pose_at_once(until: Callable[..., Awaitable[None]]) -> None:
    """Three participants with the default budget: forwarding every pose on its own (540 a second) fits,
    so the relay flushes as soon as a pose arrives instead of waiting for its tick."""
    srv = SignalingServer(ServerConfig(secret=b"relay-small-secret-0123456789abcde", port=0, mesh_limit=2))
    await srv.start()
    people = []
    try:
        for name in ("alice", "bob", "carol"):
            token = issue_token(srv.config.secret, "small", name, "expert")
            people.append(Participant(srv.url, token, ParticipantConfig(report_interval_s=0.3), poses=procedural_poses))
            await people[-1].start()
        await until(lambda: all(on_relay(p, 2) for p in people))
        await asyncio.sleep(1.0)
        before = [(p.counters["poses_applied"], p.counters["pose_bundles"]) for p in people]
        await asyncio.sleep(1.5)
        for p, (poses0, bundles0) in zip(people, before, strict=True):
            poses, bundles = p.counters["poses_applied"] - poses0, p.counters["pose_bundles"] - bundles0
            assert poses > 200 and poses / bundles <= 2.0, (p.name, poses, bundles)
            figures = p.monitor.summary()
            # On the tick grid a pose would wait the senders' lead before the tick (2 ms and more).
            assert figures is not None and figures.p50_ms < 2.0, (p.name, figures)
    finally:
        for p in people:
            await p.stop()
        await srv.stop()


async def test_clocks_through_the_relay_recover_a_known_skew_and_delay_within_1_ms(
    server: SignalingServer, until: Callable[..., Awaitable[None]]
) -> None:
    """Relay room of three: Bob's clock runs 5 s ahead and every datagram of his link is held 20 ms each
    way. Only the relay is pinged (nobody answers anybody else's ping); the clocks the others share
    still give every one-way latency within 1 ms of the truth (all three live in this process, so
    the truth is known from the one real clock)."""
    skew, delay = 5.0, 0.020

    def person(name: str, **config: object) -> Participant:
        options = {"clock_interval_s": 0.1, "report_interval_s": 0.3, **config}
        return Participant(server.url, issue_token(server.config.secret, "skewed", name, "expert"),
                           ParticipantConfig(**options), poses=procedural_poses)  # type: ignore[arg-type]

    alice, carol = person("alice"), person("carol")
    bob = Participant(server.url, issue_token(server.config.secret, "skewed", "bob", "expert"),
                      ParticipantConfig(clock_interval_s=0.1, report_interval_s=0.3, faults=FaultPlan(delay_s=delay)),
                      clock=lambda: time.monotonic() + skew, poses=procedural_poses)
    errors_at_alice: list[float] = []
    errors_at_bob: list[float] = []

    def at_alice(record: PoseRecord, latency: float | None) -> None:
        if latency is not None and record.participant == bob.index:
            errors_at_alice.append(latency - (time.monotonic() - (record.sender_time - skew)))

    def at_bob(record: PoseRecord, latency: float | None) -> None:
        if latency is not None and record.participant == alice.index:
            errors_at_bob.append(latency - (time.monotonic() - record.sender_time))

    people = (alice, bob, carol)
    try:
        for p in people:
            await p.start()
        await until(lambda: all(on_relay(p, 2) for p in people), timeout=20.0)
        await asyncio.sleep(1.0)  # a few more relay samples in every estimate
        alice.on_pose, bob.on_pose = at_alice, at_bob
        await until(lambda: len(errors_at_alice) >= 150 and len(errors_at_bob) >= 150)
        assert alice.remotes[bob.index].clock.offset == pytest.approx(skew, abs=1e-3)
        assert bob.remotes[alice.index].clock.offset == pytest.approx(-skew, abs=1e-3)
        assert bob.relay_clock.min_rtt > 2 * delay - 1e-3  # the delay is really there, both ways
        for errors in (errors_at_alice, errors_at_bob):
            assert abs(statistics.median(errors)) < 1e-3
            assert sum(abs(e) < 1e-3 for e in errors) / len(errors) > 0.95
        figures = alice.monitor.summary("bob")
        assert figures is not None and delay * 1e3 - 1.0 < figures.p50_ms < delay * 1e3 + 4.0
        # Nobody answered a ping but the relay; what the relay forwarded on the clock channel is shares.
        assert all(p.counters["pongs_sent"] == 0 and p.counters["clock_shares_sent"] >= 2 for p in people)
        relay = server.snapshot()["rooms"][0]["relay_stats"]["counters"]
        assert relay["pongs_sent"] > 30
        assert 0 < relay.get("forwarded_clock", 0) <= 2 * sum(p.counters["clock_shares_sent"] for p in people)
    finally:
        for p in people:
            await p.stop()


async def test_ops_alone_are_flushed_at_a_primary_tick_and_a_pose_brings_the_flush_forward(
    join: Callable[..., Participant], server: SignalingServer, until: Callable[..., Awaitable[None]]
) -> None:
    """Room of four on the tick grid, nobody streaming poses: an op waits for the next primary tick
    (1/90 s grid), not the subtick between two (a flush of its own would wake every receiver once
    more while poses flow). A pose arriving while only held state waits is flushed at the next subtick."""
    people = [await join(name, pose_rate_hz=0) for name in ("alice", "bob", "carol", "dave")]
    await until(lambda: all(on_relay(p, 3) for p in people))
    relay = server.rooms["ward"].relay
    assert relay is not None
    await asyncio.sleep(0.5)  # snapshots and the first digests and shares are through
    flushed: list[float] = []
    original = relay._flush_poses

    def observed() -> None:
        flushed.append(time.monotonic())
        original()

    relay._flush_poses = observed  # type: ignore[method-assign]
    period = 1.0 / RELAY_TICK_HZ

    def phase(t: float) -> float:  # how far after a primary tick, as a share of the period
        return (t / period) % 1.0

    ops = people[0].counters["ops_sent"]
    for i in range(20):
        people[i % 4].make_op(OpKind.SELECT, {"structure": f"s{i}"})
        await asyncio.sleep(0.013 + 0.0017 * (i % 5))  # all phases of the grid
    await until(lambda: all(p.state.op_count >= 20 + ops for p in people))
    assert len(flushed) >= 10
    # uvloop and asyncio timers fire within a millisecond or so; a subtick is half a period away.
    on_primary = [min(phase(t), 1.0 - phase(t)) * period < 0.0025 for t in flushed]
    assert sum(on_primary) / len(on_primary) > 0.9, [round(phase(t), 2) for t in flushed]
    # Held state, then a pose while another recent sender's is not in: the pose may not wait for the
    # primary tick (the op asked for), it goes at the subtick.
    async def until_phase(target: float) -> None:
        await asyncio.sleep(((target - phase(time.monotonic())) % 1.0) * period)

    head = {"head": WirePose((0.0, 1.6, 0.0))}
    flushed_after_pose: list[float] = []
    for _ in range(10):
        await until_phase(0.85)
        people[2].send_pose(head)  # both senders heard: the relay expects both
        people[3].send_pose(head)
        await until_phase(0.1)
        flushed.clear()
        people[1].make_op(OpKind.SELECT, {"structure": "again"})
        await asyncio.sleep(0.001)
        people[2].send_pose(head)  # one of the two: not everyone is in
        await asyncio.sleep(period * 0.75)
        flushed_after_pose.extend(flushed)
    at_subtick = [abs(phase(t) - 0.5) * period < 0.0025 for t in flushed_after_pose]
    assert sum(at_subtick) >= 7, [round(phase(t), 2) for t in flushed_after_pose]
