"""Clock estimation over a real aiortc link with a known clock skew and a known added delay.

Two aiortc peers in one process talk across :mod:`net.faults` proxies that add 15 ms to every
datagram in each direction. The responder's clock runs 4.2 s ahead of the requester's. Pings and pongs
go over an unordered ``clock`` channel in the wire format of :mod:`net.protocol`; then the responder
sends pose records stamped with its own clock. The requester's :class:`net.clock.ClockEstimator`
must recover the skew, and the one-way latency it yields must recover the added delay, within 1 ms.
"""

from __future__ import annotations

import asyncio
import statistics
import time

import pytest
from aiortc import RTCDataChannel, RTCPeerConnection, RTCSessionDescription

from net.clock import ClockEstimator
from net.faults import FaultPlan, FaultyNetwork
from net.protocol import (
    CHANNELS,
    ClockPing,
    ClockPong,
    PoseRecord,
    WirePose,
    decode_clock,
    decode_pose,
    encode_clock,
    encode_pose,
)

pytestmark = pytest.mark.latency

SKEW_S = 4.2
DELAY_S = 0.015
TIMEOUT_S = 30.0


def remote_clock() -> float:
    """The responder's clock: the same oscillator, 4.2 s ahead."""
    return time.monotonic() + SKEW_S


async def test_skew_and_added_delay_recovered_within_1ms() -> None:
    """Skew 4.2 s and 15 ms each way: the estimated offset is within 1 ms of 4.2 s, the quickest round
    trip is 30 ms plus the bare link's, and the quickest one-way pose latency is within 1 ms of 15 ms."""
    network = FaultyNetwork(FaultPlan(delay_s=DELAY_S))
    requester, responder = RTCPeerConnection(), RTCPeerConnection()
    estimator = ClockEstimator()
    one_way: list[float] = []
    pongs = asyncio.Queue[None]()
    try:
        spec = CHANNELS["clock"]
        clock = requester.createDataChannel("clock", ordered=spec.ordered, maxRetransmits=spec.max_retransmits)
        spec = CHANNELS["pose"]
        pose = requester.createDataChannel("pose", ordered=spec.ordered, maxRetransmits=spec.max_retransmits)
        opened = asyncio.Event()
        clock.on("open", opened.set)

        @clock.on("message")
        def on_pong(data: bytes) -> None:
            t3 = time.monotonic()
            message = decode_clock(data)
            assert isinstance(message, ClockPong)
            estimator.add_pong(message, t3)
            pongs.put_nowait(None)

        @pose.on("message")
        def on_pose(data: bytes) -> None:
            arrived = time.monotonic()
            one_way.append(arrived - estimator.to_local(decode_pose(data).sender_time))

        @responder.on("datachannel")
        def on_channel(channel: RTCDataChannel) -> None:
            if channel.label == "clock":

                @channel.on("message")
                def on_ping(data: bytes) -> None:
                    t1 = remote_clock()
                    ping = decode_clock(data)
                    assert isinstance(ping, ClockPing)
                    channel.send(encode_clock(ClockPong(2, ping.ping_id, ping.t0, t1, remote_clock())))

            else:
                responder_pose.append(channel)

        responder_pose: list[RTCDataChannel] = []
        await requester.setLocalDescription(await requester.createOffer())
        offer = await network.rewrite_sdp(requester.localDescription.sdp)
        await responder.setRemoteDescription(RTCSessionDescription(offer, "offer"))
        await responder.setLocalDescription(await responder.createAnswer())
        answer = await network.rewrite_sdp(responder.localDescription.sdp)
        await requester.setRemoteDescription(RTCSessionDescription(answer, "answer"))
        await asyncio.wait_for(opened.wait(), TIMEOUT_S)

        for ping_id in range(60):
            clock.send(encode_clock(ClockPing(1, ping_id, time.monotonic())))
            await asyncio.sleep(0.02)
        # Pongs (like the pings) may be lost on an unordered, unreliable channel; most arrive.
        while estimator.accepted < 50:
            await asyncio.wait_for(pongs.get(), TIMEOUT_S)
        assert abs(estimator.offset - SKEW_S) < 0.001, estimator.summary()
        assert 2 * DELAY_S - 0.001 <= estimator.min_rtt < 2 * DELAY_S + 0.005, estimator.summary()

        # Then the responder streams poses stamped with its own clock, paced like a display.
        assert [c.readyState for c in responder_pose] == ["open"]
        for seq in range(40):
            responder_pose[0].send(encode_pose(PoseRecord(2, seq, remote_clock(), head=WirePose((0.0, 1.7, 0.0)))))
            await asyncio.sleep(0.011)
        deadline = time.monotonic() + 2.0
        while len(one_way) < 40 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert len(one_way) >= 30  # unreliable: a few may be lost, none here in practice
        assert abs(min(one_way) - DELAY_S) < 0.001, sorted(one_way)[:5]
        assert statistics.median(one_way) < DELAY_S + 0.010  # loaded machines add event-loop lag
    finally:
        await requester.close()
        await responder.close()
        network.close()
