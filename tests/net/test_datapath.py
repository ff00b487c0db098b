"""net.datapath on real aiortc peers on loopback: SACKs ride with DATA, sends leave at once, STUN demux.

Each test connects two aiortc peer connections in this process and reads every SCTP packet each side
hands to DTLS (parsed with aiortc's own parser), so it counts what would cross the wire.
"""

from __future__ import annotations

import asyncio
import random
import struct
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aioice.stun
import pytest
from aiortc import RTCDataChannel, RTCPeerConnection
from aiortc.rtcsctptransport import parse_packet

from net import datapath

pytestmark = pytest.mark.latency

TIMEOUT_S = 20.0


@dataclass
class Side:
    """One peer connection, its channel, what it received and the SCTP packets it sent."""

    pc: RTCPeerConnection
    channel: RTCDataChannel | None = None
    received: list[bytes] = field(default_factory=list)
    packets: list[list[str]] = field(default_factory=list)  # chunk type names per packet sent

    def watch(self) -> None:
        """Record the chunks of every SCTP packet this side sends from now on."""
        dtls = self.pc.sctp.transport
        send = dtls._send_data

        async def counting(data: bytes) -> None:
            self.packets.append([type(c).__name__ for c in parse_packet(data)[3]])
            await send(data)

        dtls._send_data = counting

    def sack_only(self) -> int:
        return sum(1 for p in self.packets if p == ["SackChunk"])

    def with_data(self) -> int:
        return sum(1 for p in self.packets if "DataChunk" in p)

    def outstanding(self) -> int:
        """DATA chunks sent and not yet acknowledged."""
        return len(self.pc.sctp._sent_queue)


@pytest.fixture
async def pair() -> AsyncIterator[tuple[Side, Side]]:
    """Two connected peers with one reliable ordered channel, every packet they send recorded."""
    a, b = Side(RTCPeerConnection()), Side(RTCPeerConnection())
    a.channel = a.pc.createDataChannel("state")
    opened = asyncio.Event()
    a.channel.on("open", opened.set)
    a.channel.on("message", a.received.append)

    @b.pc.on("datachannel")
    def on_channel(channel: RTCDataChannel) -> None:
        b.channel = channel
        channel.on("message", b.received.append)

    await a.pc.setLocalDescription(await a.pc.createOffer())
    await b.pc.setRemoteDescription(a.pc.localDescription)
    await b.pc.setLocalDescription(await b.pc.createAnswer())
    await a.pc.setRemoteDescription(b.pc.localDescription)
    await asyncio.wait_for(opened.wait(), TIMEOUT_S)
    await until(lambda: b.channel is not None and b.channel.readyState == "open")
    await asyncio.sleep(2 * datapath.SACK_DELAY_S)  # the opening's acknowledgements are done
    a.watch()
    b.watch()
    yield a, b
    await a.pc.close()
    await b.pc.close()


async def until(condition, timeout: float = TIMEOUT_S) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


def test_installed_with_the_pinned_versions() -> None:
    """The changes are in place with the aiortc and aioice that pyproject pins (else nothing here is tested)."""
    assert datapath.installed()
    assert datapath._unsupported() is None


def test_other_versions_are_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """An aiortc this was not written against is not touched, and the reason names it."""
    monkeypatch.setattr("aiortc.__version__", "1.99.0")
    assert datapath._unsupported() == "aiortc 1.99.0 is not one of 1.16.x"


async def test_answers_carry_the_acknowledgement(pair: tuple[Side, Side]) -> None:
    """A request every 10 ms, answered at once: every SACK rides in a DATA packet, none goes alone
    (stock aiortc sends one SACK-only packet per request and per answer), and nothing stays unacknowledged."""
    a, b = pair
    assert a.channel is not None and b.channel is not None
    b.channel.on("message", lambda data: b.channel.send(b"re:" + data))  # type: ignore[union-attr]
    for i in range(40):
        a.channel.send(f"request {i}".encode())
        await asyncio.sleep(0.01)
    await until(lambda: len(a.received) == 40)
    assert a.received == [f"re:request {i}".encode() for i in range(40)]
    await until(lambda: a.outstanding() == 0 and b.outstanding() == 0)
    assert b.sack_only() == 0 and b.with_data() == 40
    assert a.sack_only() <= 1 and a.with_data() == 40  # the last answer's SACK may go alone, after the delay
    assert all(p == ["SackChunk", "DataChunk"] for p in b.packets)


async def test_one_way_traffic_is_acknowledged_every_fourth_packet(pair: tuple[Side, Side]) -> None:
    """With nothing to answer, the receiver sends a SACK for every SACK_EVERY-th (4th) packet and the
    last few after at most SACK_DELAY_S: a quarter of the acknowledgements of stock aiortc, none missing."""
    a, b = pair
    assert a.channel is not None
    assert datapath.SACK_EVERY == 4
    for i in range(41):
        a.channel.send(struct.pack("<I", i))
        await asyncio.sleep(0.004)
    await until(lambda: len(b.received) == 41)
    sent_last = time.monotonic()
    await until(lambda: a.outstanding() == 0)
    assert time.monotonic() - sent_last < 1.0  # long before SCTP would retransmit (RTO at least 1 s)
    assert b.with_data() == 0
    # 10 for the 40 packets in fours, 1 for the last one after the delay; a delay that expires before a
    # fourth packet (a slow machine) adds one now and then.
    assert 9 <= b.sack_only() <= 14, b.packets


async def test_a_lone_message_is_acknowledged_after_the_delay(pair: tuple[Side, Side]) -> None:
    """One message and silence: its SACK is held SACK_DELAY_S, then sent alone."""
    a, b = pair
    assert a.channel is not None
    sent = time.monotonic()
    a.channel.send(b"alone")
    await until(lambda: a.outstanding() == 0)
    waited = time.monotonic() - sent
    assert datapath.SACK_DELAY_S * 0.8 <= waited < 1.0
    assert b.packets == [["SackChunk"]]


async def test_a_send_leaves_before_send_returns(pair: tuple[Side, Side]) -> None:
    """The packet is handed to DTLS within ``send`` (stock aiortc: on a later turn, in a new task)."""
    a, _ = pair
    assert a.channel is not None
    before = len(a.packets)
    a.channel.send(b"now")
    assert len(a.packets) == before + 1 and "DataChunk" in a.packets[-1]


async def test_a_large_answer_and_its_acknowledgement_go_in_separate_packets(pair: tuple[Side, Side]) -> None:
    """An answer of 5,000 bytes (five DATA fragments of up to 1,200 bytes) leaves no room for a SACK in the
    first packet: the SACK goes alone, no packet is larger than aiortc's own largest, the answer arrives whole."""
    a, b = pair
    assert a.channel is not None and b.channel is not None
    answer = random.Random(5).randbytes(5000)
    b.channel.on("message", lambda data: b.channel.send(answer))  # type: ignore[union-attr]
    sizes: list[int] = []
    send = b.pc.sctp.transport._send_data

    async def sizing(data: bytes) -> None:
        sizes.append(len(data))
        await send(data)

    b.pc.sctp.transport._send_data = sizing
    a.channel.send(b"give me the big one")
    await until(lambda: a.received == [answer])
    assert max(sizes) <= datapath.MAX_PACKET_BYTES
    assert b.packets[0] == ["SackChunk"] and [p for p in b.packets[1:] if "DataChunk" in p] == [["DataChunk"]] * 5


def test_stun_demux_never_sends_a_parsable_stun_message_past_the_parser() -> None:
    """Whatever aioice's parser accepts, ``could_be_stun`` says may be STUN: real STUN messages of every
    kind aioice sends, and 20,000 random datagrams half of which have a consistent length field."""
    rng = random.Random(7)
    messages = [
        aioice.stun.Message(aioice.stun.Method.BINDING, aioice.stun.Class.REQUEST),
        aioice.stun.Message(aioice.stun.Method.BINDING, aioice.stun.Class.RESPONSE),
    ]
    messages[0].attributes["USERNAME"] = "abcd:efgh"
    messages[0].attributes["PRIORITY"] = 1853824767
    messages[1].attributes["XOR-MAPPED-ADDRESS"] = ("127.0.0.1", 40000)
    for message in messages:
        message.add_message_integrity(b"secret-password")
        message.add_fingerprint()
        assert datapath.could_be_stun(bytes(message))
    for _ in range(20_000):
        data = bytearray(rng.randbytes(rng.randint(0, 120)))
        if len(data) >= 20 and rng.random() < 0.5:
            data[2:4] = (len(data) - 20).to_bytes(2, "big")
        try:
            aioice.stun.parse_message(bytes(data))
        except ValueError:
            continue
        assert datapath.could_be_stun(bytes(data))
    # DTLS 1.2 application data: type 23, version 254.253, epoch, sequence number, length, then the record
    dtls_record = bytes([23, 0xFE, 0xFD]) + bytes(2 + 6) + (40).to_bytes(2, "big") + bytes(40)
    assert not datapath.could_be_stun(dtls_record)


async def test_sends_within_bundled_share_packets(pair: tuple[Side, Side]) -> None:
    """Messages sent within ``bundled()`` leave together when it ends: three small ones (and the SACK
    for what came in before) in one packet, in order; more than a packet holds, in as few as fit."""
    a, b = pair
    assert a.channel is not None and b.channel is not None
    b.channel.send(b"before")  # a has a SACK to send for this
    await until(lambda: a.received == [b"before"])
    with datapath.bundled():
        for word in (b"one", b"two", b"three"):
            a.channel.send(word)
        assert a.packets == []  # nothing leaves before the block ends
    assert a.packets == [["SackChunk", "DataChunk", "DataChunk", "DataChunk"]]
    await until(lambda: len(b.received) == 3)
    assert b.received == [b"one", b"two", b"three"]
    payloads = [bytes([i]) * 500 for i in range(5)]  # 5 x 516-byte chunks: two to a packet
    with datapath.bundled():
        for payload in payloads:
            a.channel.send(payload)
    assert a.packets[1:] == [["DataChunk", "DataChunk"], ["DataChunk", "DataChunk"], ["DataChunk"]]
    await until(lambda: len(b.received) == 8)
    assert b.received[3:] == payloads


async def test_a_transmit_that_waits_finishes_in_a_task_and_errors_do_not_reach_the_sender() -> None:
    """aiortc's transmit path never waits today; should one wait (a future, a bare yield), ``_drive``
    runs it up to there at once and a task finishes it; an error is logged, not raised to ``send``."""
    out: list[object] = []

    async def waits() -> None:
        out.append("started")
        future = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_later(0.01, future.set_result, "result")
        out.append(await future)
        await asyncio.sleep(0)
        out.append("finished")

    async def fails() -> None:
        raise ConnectionError("not connected")

    datapath._drive(waits())
    datapath._drive(fails())
    assert out == ["started"]
    await until(lambda: out == ["started", "result", "finished"], timeout=2.0)
