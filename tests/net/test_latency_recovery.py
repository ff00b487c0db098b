"""Proof that latency is measured right: a known clock skew and a known extra delay are recovered within 1 ms.

Bob's clock runs 5 s ahead of Alice's (an offset added to his clock function), and every datagram of
his connections is held 20 ms by the delaying UDP proxy of ``net.faults`` (in both directions, so the
NTP-style estimate stays unbiased). Both peers live in this process, so the true one-way latency of
each pose is known from the one real clock; the reported figures must match it.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Awaitable, Callable

import pytest

from net.faults import FaultPlan
from net.participant import Participant, ParticipantConfig
from net.protocol import PoseRecord
from net.signaling import SignalingServer
from net.tokens import issue_token
from sessions.consult.scripted import procedural_poses

pytestmark = pytest.mark.latency

SKEW_S = 5.0
DELAY_S = 0.020


async def measure(
    server: SignalingServer, room: str, delay_s: float, until: Callable[..., Awaitable[None]]
) -> tuple[Participant, Participant, list[float], list[float]]:
    """Run Alice and (skewed, delayed) Bob until each has 150 pose samples; return both and the errors.

    Returns the two participants and, per direction, reported minus true one-way latency, seconds.
    """
    alice_token = issue_token(server.config.secret, room, "alice", "surgeon")
    alice = Participant(server.url, alice_token, ParticipantConfig(clock_interval_s=0.1), poses=procedural_poses)
    bob = Participant(
        server.url,
        issue_token(server.config.secret, room, "bob", "expert"),
        ParticipantConfig(clock_interval_s=0.1, faults=FaultPlan(delay_s=delay_s)),
        clock=lambda: time.monotonic() + SKEW_S,
        poses=procedural_poses,
    )
    errors_at_alice: list[float] = []
    errors_at_bob: list[float] = []
    started = time.monotonic()

    def at_alice(record: PoseRecord, latency: float | None) -> None:
        # Samples from the first second are dropped: the clock filter is still filling its window.
        if latency is not None and time.monotonic() - started > 1.0:
            errors_at_alice.append(latency - (time.monotonic() - (record.sender_time - SKEW_S)))

    def at_bob(record: PoseRecord, latency: float | None) -> None:
        if latency is not None and time.monotonic() - started > 1.0:
            errors_at_bob.append(latency - (time.monotonic() - record.sender_time))

    alice.on_pose, bob.on_pose = at_alice, at_bob
    await alice.start()
    await bob.start()
    try:
        await until(lambda: len(errors_at_alice) >= 150 and len(errors_at_bob) >= 150)
    finally:
        await bob.stop()
        await alice.stop()
    return alice, bob, errors_at_alice, errors_at_bob


async def test_known_skew_and_delay_are_recovered_within_1_ms(
    server: SignalingServer, until: Callable[..., Awaitable[None]]
) -> None:
    """Offset 5 s and 20 ms extra one-way delay: estimated offset, and every reported latency, within 1 ms of the truth."""
    alice, bob, errors_at_alice, errors_at_bob = await measure(server, "skewed", DELAY_S, until)
    offset_seen_by_alice = alice.remotes[bob.index].clock.offset
    offset_seen_by_bob = bob.remotes[alice.index].clock.offset
    assert offset_seen_by_alice == pytest.approx(SKEW_S, abs=1e-3)
    assert offset_seen_by_bob == pytest.approx(-SKEW_S, abs=1e-3)
    assert bob.remotes[alice.index].clock.min_rtt > 2 * DELAY_S - 1e-3  # the delay is really there, both ways
    for errors in (errors_at_alice, errors_at_bob):
        assert abs(statistics.median(errors)) < 1e-3
        assert sum(abs(e) < 1e-3 for e in errors) / len(errors) > 0.95
    for monitor, link in ((alice.monitor, "bob"), (bob.monitor, "alice")):
        figures = monitor.summary(link)
        assert figures is not None
        # The delay is there and nothing much else: 20 ms plus the proxy's timer and loop overheads.
        assert DELAY_S * 1e3 - 1.0 < figures.p50_ms < DELAY_S * 1e3 + 3.0
        assert figures.within_budget > 0.9


@pytest.mark.slow
async def test_added_delay_shows_as_the_difference_to_an_undelayed_run(
    server: SignalingServer, until: Callable[..., Awaitable[None]]
) -> None:
    """The same skewed pair with and without the 20 ms proxy delay: the median one-way latency differs by
    20 ms (within 1 ms plus timer slack)."""
    alice0, _, _, _ = await measure(server, "base", 0.0, until)
    alice1, _, _, _ = await measure(server, "delayed", DELAY_S, until)
    base = alice0.monitor.summary("bob")
    delayed = alice1.monitor.summary("bob")
    assert base is not None and delayed is not None
    # asyncio timers fire up to 1 ms late (epoll rounds timeouts up to whole milliseconds): allow it.
    assert 0.0 - 1.0 < delayed.p50_ms - base.p50_ms - DELAY_S * 1e3 < 1.0 + 1.0
