"""Two real aiortc peers (one process, host candidates) talking across the fault proxy.

One peer owns a :class:`net.faults.FaultyNetwork` and rewrites the candidates of the offer it sends and
of the answer it receives, as ``net.participant`` does; every datagram between the two then crosses a
proxy that applies the plan.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest
from aiortc import RTCDataChannel, RTCPeerConnection, RTCSessionDescription

from net.faults import FaultPlan, FaultyNetwork

TIMEOUT_S = 30.0


@dataclass
class Pair:
    """A connected pair: ``channel`` (ordered, reliable) sends from the faulty side; ``received`` holds
    the sequence numbers that arrived on the clean side, in arrival order."""

    network: FaultyNetwork
    channel: RTCDataChannel
    received: list[int] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def send(self, n: int) -> None:
        self.channel.send(json.dumps({"n": n, "pad": "x" * 150}))

    async def wait_for(self, count: int) -> None:
        while len(self.received) < count:
            self.arrived.clear()
            await asyncio.wait_for(self.arrived.wait(), TIMEOUT_S)


MakePair = Callable[[FaultPlan], Awaitable["Pair"]]


@pytest.fixture
async def make_pair() -> AsyncIterator[MakePair]:
    """Connect two aiortc peers through a FaultyNetwork with the given plan."""
    cleanup: list[object] = []

    async def connect(plan: FaultPlan) -> Pair:
        network = FaultyNetwork(plan)
        faulty, clean = RTCPeerConnection(), RTCPeerConnection()
        cleanup.extend((faulty, clean, network))
        channel = faulty.createDataChannel("state", ordered=True)
        pair = Pair(network, channel)
        opened = asyncio.Event()
        channel.on("open", opened.set)

        @clean.on("datachannel")
        def on_channel(incoming: RTCDataChannel) -> None:
            @incoming.on("message")
            def on_message(message: str) -> None:
                pair.received.append(json.loads(message)["n"])
                pair.arrived.set()

        await faulty.setLocalDescription(await faulty.createOffer())
        offer = await network.rewrite_sdp(faulty.localDescription.sdp)
        assert "a=candidate:" in offer
        await clean.setRemoteDescription(RTCSessionDescription(offer, "offer"))
        await clean.setLocalDescription(await clean.createAnswer())
        answer = await network.rewrite_sdp(clean.localDescription.sdp)
        await faulty.setRemoteDescription(RTCSessionDescription(answer, "answer"))
        await asyncio.wait_for(opened.wait(), TIMEOUT_S)
        return pair

    yield connect
    for item in cleanup:
        if isinstance(item, RTCPeerConnection):
            await item.close()
        else:
            assert isinstance(item, FaultyNetwork)
            item.close()


async def test_reliable_ordered_channel_delivers_everything_in_order_at_5_percent_loss(make_pair: MakePair) -> None:
    """300 messages on an ordered reliable channel across 5% datagram loss all arrive, in order,
    while the proxy really did drop about 5% of the datagrams it saw."""
    pair = await make_pair(FaultPlan(loss=0.05, seed=5))
    for n in range(300):
        pair.send(n)
        await asyncio.sleep(0.005)  # paced like a busy state stream, not a flood
    await pair.wait_for(300)
    assert pair.received == list(range(300))
    counters = pair.network.counters
    seen = counters.forwarded + counters.lost
    assert seen > 300  # the data, its acknowledgements and ICE/DTLS all crossed the proxies
    assert counters.lost > 0 and 0.02 < counters.lost / seen < 0.09, counters


async def test_two_second_outage_loses_nothing(make_pair: MakePair) -> None:
    """Messages sent during a 2 s outage are held by SCTP and delivered, in order, once it ends."""
    pair = await make_pair(FaultPlan())
    for n in range(20):
        pair.send(n)
    await pair.wait_for(20)
    pair.network.set_down(True)
    for n in range(20, 60):
        pair.send(n)
        await asyncio.sleep(0.05)
    assert len(pair.received) == 20 and pair.network.counters.blocked > 0
    pair.network.set_down(False)
    back = time.monotonic()
    await pair.wait_for(60)
    assert pair.received == list(range(60))
    assert time.monotonic() - back < 10.0
