"""Real aiortc peers on loopback through the real signaling server: channels, delivery, latency, bad input."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from net.participant import Participant
from net.protocol import OpKind, PoseRecord, WirePose, encode_pose
from net.signaling import SignalingServer

pytestmark = pytest.mark.latency


def synced(p: Participant, peers: int) -> bool:
    return sum(1 for link in p.links.values() if link.is_open) == peers and all(r.clock.synchronized for r in p.remotes.values())


async def test_two_peers_open_three_channels_and_deliver(
    join: Callable[..., Participant], server: SignalingServer, until: Callable[..., Awaitable[None]]
) -> None:
    """Two peers connect through signaling; pose is unordered without retransmits, state reliable; poses, ops and latency flow."""
    alice = await join("alice")
    bob = await join("bob")
    await until(lambda: synced(alice, 1) and synced(bob, 1))

    pose = alice.links["bob"].channels["pose"]
    state = alice.links["bob"].channels["state"]
    clock = bob.links["alice"].channels["clock"]
    assert (pose.ordered, pose.maxRetransmits) == (False, 0)
    assert (state.ordered, state.maxRetransmits, state.maxPacketLifeTime) == (True, None, None)
    assert (clock.ordered, clock.maxRetransmits) == (False, 0)

    for i in range(20):
        alice.make_op(OpKind.LANDMARK_PLACE, {"id": f"a{i}", "position": [0.01 * i, 1.2, 0.0], "label": "apex"})
        bob.make_op(OpKind.CLIP_SET, {"index": i % 6, "normal": [0, 0, 1], "d": 0.001 * i})
    await until(lambda: alice.state.op_count == bob.state.op_count == 40)
    assert alice.state.digest() == bob.state.digest()
    assert len(bob.state.landmarks) == 20

    await until(lambda: bob.counters["poses_applied"] >= 45 and alice.counters["poses_applied"] >= 45)
    figures = bob.monitor.summary("alice")
    assert figures is not None and figures.count > 0
    assert 0 < figures.p50_ms < 30 and figures.within_budget > 0.9
    state_figures = alice.monitor.summary("bob", "state")
    assert state_figures is not None and state_figures.count == 20
    # Remote poses arrive decoded to 0.1 mm.
    assert bob.remotes[alice.index].pose is not None
    assert bob.remotes[alice.index].pose.head.position[1] == pytest.approx(1.65, abs=1e-4)  # type: ignore[union-attr]

    # The server shows each direction of the link with its figures.
    def links() -> list[dict]:
        return server.snapshot()["rooms"][0]["links"]

    await until(lambda: {(k["from"], k["to"]) for k in links()} == {("alice", "bob"), ("bob", "alice")})
    assert all(k["p99_ms"] > 0 and "rtt_ms" in k for k in links())


async def test_bad_and_spoofed_messages_are_dropped_and_counted(
    join: Callable[..., Participant], until: Callable[..., Awaitable[None]]
) -> None:
    """Garbage on every channel, text frames and a pose in another participant's name are counted; the link lives on."""
    alice = await join("alice", pose_rate_hz=0)
    bob = await join("bob", pose_rate_hz=0)
    carol = await join("carol", pose_rate_hz=0)
    await until(lambda: synced(alice, 2) and synced(bob, 2) and synced(carol, 2))
    link = alice.links["bob"]
    for label in ("pose", "state", "clock"):
        link.send(label, b"\x01\xff garbage")
        link.send(label, b"")
        link.send(label, b"\x02" + bytes(40))
    link.channels["state"].send("text is not part of the protocol")
    forged = PoseRecord(carol.index, 1, alice.clock(), head=WirePose((0.0, 1.6, 0.0)))
    link.send("pose", encode_pose(forged))
    await until(lambda: bob.counters["spoofed"] == 1 and bob.counters["malformed_state"] >= 3)
    assert bob.counters["malformed_pose"] >= 2 and bob.counters["malformed_clock"] >= 2
    assert bob.remotes[carol.index].pose is None
    alice.make_op(OpKind.SELECT, {"structure": "thalamus"})
    await until(lambda: bob.state.selection == "thalamus")


async def test_backed_up_pose_channel_skips_instead_of_queueing(
    join: Callable[..., Participant], until: Callable[..., Awaitable[None]]
) -> None:
    """When bufferedAmount is above the limit a pose is skipped and counted; reliable state still goes."""
    alice = await join("alice", pose_rate_hz=0)
    bob = await join("bob", pose_rate_hz=0)
    await until(lambda: synced(alice, 1) and synced(bob, 1))
    link = alice.links["bob"]
    link.pose_buffer_limit = -1  # every pose now finds the channel "backed up"
    assert alice.send_pose({"head": WirePose((0.0, 1.6, 0.0))}) == 0
    assert link.counters.pose_skipped == 1
    alice.make_op(OpKind.SELECT, {"structure": "insula"})
    await until(lambda: bob.state.selection == "insula")
    assert bob.counters["poses_applied"] == 0


async def test_unusable_offer_is_counted_and_the_peer_keeps_working(
    join: Callable[..., Participant], until: Callable[..., Awaitable[None]]
) -> None:
    """A signal carrying a broken SDP offer, or no data type at all, is counted; real traffic still flows."""
    alice = await join("alice", pose_rate_hz=0)
    bob = await join("bob", pose_rate_hz=0)
    await until(lambda: synced(alice, 1) and synced(bob, 1))
    await alice.client.send_signal("bob", {"type": "offer", "sdp": "v=0\r\nthis is not a session description\r\n"})
    await alice.client.send_signal("bob", {"type": "pranswer", "sdp": ""})
    await until(lambda: bob.counters["signal_errors"] == 2)
    alice.make_op(OpKind.SELECT, {"structure": "amygdala"})
    await until(lambda: bob.state.selection == "amygdala")
