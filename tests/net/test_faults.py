"""The fault-injecting UDP proxy, driven with plain asyncio UDP sockets on 127.0.0.1.

Loss rate, added delay, outages, order, NAT-style return path, and the SDP candidate rewriting.
"""

from __future__ import annotations

import asyncio
import statistics
import struct
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, cast

import pytest

from net.faults import FaultPlan, FaultyNetwork

STAMP = struct.Struct("<Id")  # sequence number, send time (time.monotonic, seconds)


class Recorder(asyncio.DatagramProtocol):
    """A UDP socket that records (data, source, arrival time) and can echo what it gets."""

    def __init__(self, echo: bool = False) -> None:
        self.echo = echo
        self.received: list[tuple[bytes, tuple[Any, ...], float]] = []
        self.transport: asyncio.DatagramTransport | None = None
        self.changed = asyncio.Event()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.received.append((data, addr, time.monotonic()))
        self.changed.set()
        if self.echo and self.transport is not None:
            self.transport.sendto(data, addr)

    @property
    def address(self) -> tuple[str, int]:
        assert self.transport is not None
        return self.transport.get_extra_info("sockname")[:2]

    def sequences(self) -> list[int]:
        return [STAMP.unpack_from(data)[0] for data, _, _ in self.received]


Open = Callable[..., "asyncio.Future[Recorder]"]


@pytest.fixture
async def udp() -> AsyncIterator[Callable[..., Any]]:
    """Open recording UDP sockets on 127.0.0.1; closed after the test."""
    sockets: list[Recorder] = []

    async def open_socket(echo: bool = False) -> Recorder:
        _, protocol = await asyncio.get_running_loop().create_datagram_endpoint(
            lambda: Recorder(echo), local_addr=("127.0.0.1", 0)
        )
        sockets.append(protocol)
        return protocol

    yield open_socket
    for sock in sockets:
        assert sock.transport is not None
        sock.transport.close()


async def send_paced(sock: Recorder, dest: tuple[str, int], count: int, *, size: int = 100, start: int = 0) -> None:
    """Send ``count`` stamped datagrams, yielding every few so that no socket buffer overflows."""
    assert sock.transport is not None
    pad = b"\0" * (size - STAMP.size)
    for i in range(start, start + count):
        sock.transport.sendto(STAMP.pack(i, time.monotonic()) + pad, dest)
        if i % 20 == 19:
            await asyncio.sleep(0.001)


async def settle(network: FaultyNetwork, expected: int, sink: Recorder, timeout_s: float = 5.0) -> None:
    """Wait until the proxies have judged ``expected`` datagrams and the sink holds every forwarded one."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        c = network.counters
        if c.forwarded + c.lost + c.blocked >= expected and len(sink.received) >= c.forwarded:
            await asyncio.sleep(0.05)  # anything still in flight would show up now
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"proxy saw {network.counters} of {expected}; sink got {len(sink.received)}")


async def test_no_faults_forwards_everything_in_order(udp: Callable[..., Any]) -> None:
    """Without faults all 2,000 datagrams arrive, in order, unchanged."""
    sink, client = await udp(), await udp()
    network = FaultyNetwork(FaultPlan())
    proxy = await network.proxy_for(sink.address)
    await send_paced(client, proxy.address, 2000)
    await settle(network, 2000, sink)
    assert sink.sequences() == list(range(2000))
    assert {len(data) for data, _, _ in sink.received} == {100}
    network.close()


@pytest.mark.parametrize("loss", [0.05, 0.2])
async def test_loss_rate_within_tolerance_and_order_kept(udp: Callable[..., Any], loss: float) -> None:
    """Over 4,000 datagrams the share dropped is the plan's loss within 1.5 points (about 5 standard
    deviations), every datagram not dropped arrives, and arrivals keep the sending order."""
    sink, client = await udp(), await udp()
    network = FaultyNetwork(FaultPlan(loss=loss, seed=11))
    proxy = await network.proxy_for(sink.address)
    await send_paced(client, proxy.address, 4000)
    await settle(network, 4000, sink)
    counters = network.counters
    assert counters.forwarded + counters.lost == 4000 and counters.blocked == 0
    assert abs(counters.lost / 4000 - loss) < 0.015
    seqs = sink.sequences()
    assert len(seqs) == counters.forwarded
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    network.close()


async def test_same_seed_drops_the_same_datagrams(udp: Callable[..., Any]) -> None:
    """A seeded plan drops exactly the same datagrams on every run."""
    runs = []
    for _ in range(2):
        sink, client = await udp(), await udp()
        network = FaultyNetwork(FaultPlan(loss=0.1, seed=3))
        proxy = await network.proxy_for(sink.address)
        await send_paced(client, proxy.address, 500)
        await settle(network, 500, sink)
        runs.append(sink.sequences())
        network.close()
    assert runs[0] == runs[1] and len(runs[0]) < 500


@pytest.mark.latency
async def test_added_delay_is_measured_and_order_kept(udp: Callable[..., Any]) -> None:
    """A 25 ms delay: no datagram arrives more than 0.6 ms early (timer granularity, see ``net.faults``),
    the median is less than 10 ms late even on a loaded machine, and order holds."""
    sink, client = await udp(), await udp()
    network = FaultyNetwork(FaultPlan(delay_s=0.025))
    proxy = await network.proxy_for(sink.address)
    await send_paced(client, proxy.address, 600)
    await settle(network, 600, sink)
    delays = [arrived - STAMP.unpack_from(data)[1] for data, _, arrived in sink.received]
    assert sink.sequences() == list(range(600))
    assert min(delays) >= 0.0244
    print("DELAYS", statistics.median(delays), min(delays), max(delays))
    assert abs(statistics.median(delays) - 0.025) < 0.001
    network.close()


async def test_delay_applies_to_each_direction(udp: Callable[..., Any]) -> None:
    """Through an echoing target, a 15 ms plan adds 30 ms to the round trip (none under 28.8 ms, the
    median less than 15 ms late); replies come back from the proxy's own address."""
    echo, client = await udp(echo=True), await udp()
    network = FaultyNetwork(FaultPlan(delay_s=0.015))
    proxy = await network.proxy_for(echo.address)
    await send_paced(client, proxy.address, 100)
    deadline = time.monotonic() + 5.0
    while len(client.received) < 100 and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    rtts = [arrived - STAMP.unpack_from(data)[1] for data, _, arrived in client.received]
    assert len(rtts) == 100 and min(rtts) >= 0.0288 and statistics.median(rtts) < 0.045
    assert {addr[:2] for _, addr, _ in client.received} == {proxy.address}
    network.close()


async def test_outage_drops_everything_then_recovers(udp: Callable[..., Any]) -> None:
    """While the network is down every datagram is dropped (and counted as blocked); then traffic flows."""
    sink, client = await udp(), await udp()
    network = FaultyNetwork(FaultPlan())
    proxy = await network.proxy_for(sink.address)
    await send_paced(client, proxy.address, 100)
    await settle(network, 100, sink)
    network.set_down(True)
    assert network.is_down()
    await send_paced(client, proxy.address, 300, start=100)
    await settle(network, 400, sink)
    assert network.counters.blocked == 300 and len(sink.received) == 100
    network.set_down(False)
    await send_paced(client, proxy.address, 100, start=400)
    await settle(network, 500, sink)
    assert sink.sequences() == list(range(100)) + list(range(400, 500))
    network.close()


def test_scheduled_outages_follow_the_plan_clock() -> None:
    """Outage windows are measured from the network's creation on its clock: down inside, up outside."""
    now = [100.0]
    network = FaultyNetwork(FaultPlan(outages=((1.0, 2.0), (10.0, 0.5))), clock=lambda: now[0])
    expected = {0.5: False, 1.0: True, 2.9: True, 3.0: False, 9.99: False, 10.2: True, 10.5: False}
    for t, down in expected.items():
        now[0] = 100.0 + t
        assert network.is_down() is down, t
        assert network.admit() is not down
    assert network.counters.blocked == 3 and network.counters.forwarded == 4


async def test_each_client_gets_its_own_upstream(udp: Callable[..., Any]) -> None:
    """Two clients of one proxy reach the target from two different sources, and each gets its own replies."""
    echo, first, second = await udp(echo=True), await udp(), await udp()
    network = FaultyNetwork(FaultPlan())
    proxy = await network.proxy_for(echo.address)
    await send_paced(first, proxy.address, 10)
    await send_paced(second, proxy.address, 10, start=1000)
    deadline = time.monotonic() + 5.0
    while (len(first.received) < 10 or len(second.received) < 10) and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert first.sequences() == list(range(10))
    assert second.sequences() == list(range(1000, 1010))
    assert len({addr for _, addr, _ in echo.received}) == 2
    assert await network.proxy_for(echo.address) is proxy  # one proxy per target
    network.close()


SDP = (
    "v=0\r\n"
    "o=- 1 1 IN IP4 0.0.0.0\r\n"
    "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n"
    "c=IN IP4 0.0.0.0\r\n"
    "a=candidate:1 1 udp 2130706431 127.0.0.1 {port} typ host\r\n"
    "a=candidate:2 1 udp 2130706431 192.0.2.1 40000 typ host\r\n"
    "a=candidate:3 1 udp 1694498815 127.0.0.1 {port2} typ srflx raddr 10.0.0.1 rport 5000\r\n"
    "a=end-of-candidates\r\n"
)


async def test_rewrite_points_candidates_at_proxies(udp: Callable[..., Any]) -> None:
    """Each candidate is rewritten to its proxy's address; one that cannot be proxied (an address not
    on this machine) is dropped rather than left to bypass the faults; other lines stay as they were."""
    a, b = await udp(), await udp()
    network = FaultyNetwork(FaultPlan())
    sdp = SDP.format(port=a.address[1], port2=b.address[1])
    rewritten = await network.rewrite_sdp(sdp)
    lines = rewritten.split("\r\n")
    candidates = [line for line in lines if line.startswith("a=candidate:")]
    proxy_a = await network.proxy_for(a.address)
    proxy_b = await network.proxy_for(b.address)
    assert candidates == [
        f"a=candidate:1 1 udp 2130706431 127.0.0.1 {proxy_a.address[1]} typ host",
        f"a=candidate:3 1 udp 1694498815 127.0.0.1 {proxy_b.address[1]} typ srflx raddr 10.0.0.1 rport 5000",
    ]
    assert [line for line in lines if not line.startswith("a=candidate:")] == [
        line for line in sdp.split("\r\n") if not line.startswith("a=candidate:")
    ]
    # Rewriting again reuses the same proxies.
    assert await network.rewrite_sdp(sdp) == rewritten
    network.close()


def test_plan_validation_and_json_form() -> None:
    """Loss outside [0, 1) and negative delays are refused; the JSON form round-trips."""
    with pytest.raises(ValueError, match="loss"):
        FaultPlan(loss=1.0)
    with pytest.raises(ValueError, match="delay"):
        FaultPlan(delay_s=-0.001)
    with pytest.raises(ValueError, match="outages"):
        FaultPlan(outages=((1.0, 0.0),))
    plan = FaultPlan.from_dict({"loss": 0.05, "delay_s": 0.02, "outages": [[3, 5]], "seed": 9})
    assert plan == FaultPlan(loss=0.05, delay_s=0.02, outages=((3.0, 5.0),), seed=9)
    for bad in ({"loss": "lots"}, {"outages": [[1, 2, 3]]}, {"outages": 5}, {"seed": 1.5}, {"jitter": 1}, {"loss": 2}):
        with pytest.raises(ValueError, match="fault plan"):
            FaultPlan.from_dict(bad)
