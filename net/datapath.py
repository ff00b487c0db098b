"""aiortc's data-channel path, made cheaper per message: SCTP acknowledgements, sends and ICE demux.

Every packet a pure-Python WebRTC stack handles costs a DTLS record, a UDP datagram, a wake-up of the
receiving process and some 50-100 us of Python at each end. aiortc 1.16 spends more packets than SCTP
needs, and more event-loop turns than it needs:

- it acknowledges every packet carrying DATA at once, with a SACK in a packet of its own;
- it sends every chunk in a packet of its own (its ``_send_chunk`` says "no bundling for now");
- ``RTCDataChannel.send`` queues the message and starts a new Task to transmit it, one per message;
- every datagram first goes through aioice's STUN parser, which raises for anything else (DTLS).

In a relay room every participant sends a pose and receives a bundle each tick, so this doubled the
packets on every link (4 per participant and tick instead of 2) and the relay's work with them.
:func:`install` changes aiortc's and aioice's classes in four ways, each what the RFCs describe and
other SCTP stacks (usrsctp, Linux) do:

1. Delayed acknowledgement (RFC 9260 section 6.2). A packet with DATA is acknowledged at once only
   when it is the ``SACK_EVERY``-th (4th) not yet acknowledged, when a TSN is missing or duplicated
   (fast retransmit needs those reports at once) or outside the ESTABLISHED state; otherwise the SACK
   waits, at most ``SACK_DELAY_S`` (RFC 9260: at most 500 ms, 200 ms usual). RFC 9260 says a SACK
   SHOULD go for at least every second packet; the sockets API (RFC 6458, ``SCTP_DELAYED_SACK``'s
   ``sack_freq``) lets an application choose more, as here: both ends of a medverse link send DATA
   every 11 ms, so a SACK held a little longer rides with the next one instead of waking the peer in
   a packet of its own (a participant's op, or a bundle split in two, made the second packet of a
   tick: in a relay room of 16, p99 10.8 ms against 11.8 ms for every second packet, 4 runs each).
2. Bundling (RFC 9260 section 6.10). A waiting SACK rides, first, in the next packet that carries
   DATA to the same peer, when both fit in the largest packet aiortc itself sends. A receiver that
   answers, or sends anything within the delay, never sends a SACK of its own.
3. A data-channel send transmits at once, in the caller's turn of the event loop, instead of in a new
   Task: aiortc's transmit path never waits on anything (DTLS encryption and the UDP send are
   synchronous), so the message leaves before ``send`` returns. Were a future aiortc to wait
   somewhere on that path, the rest would carry on in a task, as before.
4. ICE demux: a datagram whose length does not match the length field of a STUN header cannot be a
   STUN message (aioice's parser raises for it), so it goes to DTLS without being parsed.
5. :func:`bundled`: within it, the DATA chunks sent to one peer (and a SACK riding with them) go out
   together, in as few packets as fit, when it ends, rather than one packet each. The relay sends a
   receiver's held state messages and its pose bundle so: one packet, one wake-up of the receiver.

Nothing changes on the wire beyond what SCTP allows a peer to do, so a browser or any other stack on
the far end is unaffected. aiortc's internals are not an API, so :func:`install` changes nothing
unless the installed aiortc and aioice are the versions this was written against and have every
method and attribute it replaces or reads; :func:`installed` says whether it did (tests check it).
Measured with ``bench/sync.py --datapath tuned,stock``, which runs every room both ways in one run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import struct
from collections.abc import Coroutine, Iterator
from typing import Any

import aioice
import aiortc
from aioice import ice as _ice
from aiortc import rtcsctptransport as _sctp

log = logging.getLogger(__name__)

#: Set to 1, :func:`install` leaves aiortc as it is (benchmarks compare both ways in one run).
STOCK_ENV = "MEDVERSE_STOCK_AIORTC"
#: Longest a SACK waits for DATA to ride with, seconds.
SACK_DELAY_S = 0.05
#: Packets with DATA after which a SACK goes at once (RFC 6458 ``sack_freq``; RFC 9260 suggests 2).
SACK_EVERY = 4
#: Versions whose internals this module was written against (major.minor).
SUPPORTED = {"aiortc": ("1.16",), "aioice": ("0.13",)}
#: Largest SCTP packet aiortc sends (common header, DATA chunk header, 1,200 bytes of user data):
#: a SACK rides along only if the packet stays within it, so no datagram grows past what aiortc sends.
MAX_PACKET_BYTES = 12 + 16 + _sctp.USERDATA_MAX_LENGTH
#: Longest message aiortc sends in one DATA chunk (a longer one goes in fragments, one packet each).
MESSAGE_IN_ONE_CHUNK = _sctp.USERDATA_MAX_LENGTH
_COMMON_HEADER = struct.Struct("!HHL")
_STUN_HEADER_BYTES = 20

_Transport = _sctp.RTCSctpTransport
_original: dict[str, Any] = {}
#: While :func:`bundled` is open: the chunks (bytes) each association has to send when it ends.
_bundle: dict[Any, list[bytes]] | None = None


def installed() -> bool:
    """True once :func:`install` has changed aiortc's and aioice's classes."""
    return bool(_original)


def install() -> bool:
    """Change aiortc's SCTP transport and aioice's STUN protocol as the module docstring says (once).

    Returns whether the changes are in place; False (and a log line) when the installed versions are
    not the ones this was written against, in which case aiortc is left as it is.
    """
    if _original:
        return True
    if os.environ.get(STOCK_ENV) == "1":
        return False
    problem = _unsupported()
    if problem:
        log.warning("aiortc's data path left as it is: %s", problem)
        return False
    _original.update(
        send_sack=_Transport._send_sack,
        send_chunk=_Transport._send_chunk,
        datagram_received=_ice.StunProtocol.datagram_received,
    )
    # Replacing aiortc's and aioice's methods is what this module is for: mypy refuses it by design.
    _Transport._send_sack = _send_sack  # type: ignore[method-assign]
    _Transport._send_chunk = _send_chunk  # type: ignore[method-assign]
    _Transport._data_channel_send = _data_channel_send  # type: ignore[method-assign]
    # aioice declares ``data: bytes | str``; a UDP socket only ever delivers bytes.
    _ice.StunProtocol.datagram_received = _datagram_received  # type: ignore[method-assign, assignment]
    return True


def _unsupported() -> str | None:
    """Why the changes cannot be made here, or None."""
    for name, module in (("aiortc", aiortc), ("aioice", aioice)):
        version = getattr(module, "__version__", "?")
        if not version.startswith(tuple(v + "." for v in SUPPORTED[name])):
            return f"{name} {version} is not one of {', '.join(SUPPORTED[name])}.x"
    needed = ("_send_sack", "_send_chunk", "_data_channel_send", "_data_channel_flush", "_handle_data", "_receive_data_chunk")
    missing = [m for m in needed if not callable(getattr(_Transport, m, None))]
    missing += [n for n in ("WEBRTC_STRING", "WEBRTC_STRING_EMPTY", "WEBRTC_BINARY", "WEBRTC_BINARY_EMPTY", "crc32c", "DataChunk")
                if not hasattr(_sctp, n)]
    if not callable(getattr(_ice.StunProtocol, "datagram_received", None)):
        missing.append("StunProtocol.datagram_received")
    return f"missing {', '.join(missing)}" if missing else None


# ---------------------------------------------------------------------------------------- running now


#: Transmissions that :func:`_drive` left to finish in a task, held until done: the event loop keeps
#: only weak references to tasks, so one nobody holds could be collected half-way.
_finishing: set[asyncio.Future[None]] = set()


def _drive(coro: Coroutine[Any, Any, None]) -> None:
    """Run ``coro`` now, in this turn of the event loop; if it waits on something, finish it in a task.

    An error is logged, as a task's would be, and does not reach the caller (``RTCDataChannel.send``
    did not raise transmit errors before either).
    """
    done, waited = _step(coro)
    if not done:
        task = asyncio.ensure_future(_finish(coro, waited))
        _finishing.add(task)
        task.add_done_callback(_finishing.discard)


async def _finish(coro: Coroutine[Any, Any, None], waited: Any) -> None:
    """Carry on with a coroutine that :func:`_drive` started and that yielded ``waited`` (what a task does)."""
    done = False
    while not done:
        if waited is None:  # a bare yield: give the loop one turn
            await asyncio.sleep(0)
        else:  # a future: once it is done, the coroutine reads its result (or its error) itself
            await asyncio.wait([waited])
        done, waited = _step(coro)


def _step(coro: Coroutine[Any, Any, None]) -> tuple[bool, Any]:
    """Resume ``coro`` until it next waits: (finished, what it waits on). An error finishes it, logged."""
    try:
        return False, coro.send(None)
    except StopIteration:
        return True, None
    except Exception as exc:
        log.debug("data channel transmit failed: %r", exc)
        return True, None


def _data_channel_send(self: _Transport, channel: Any, data: bytes | str) -> None:
    """Queue a message (RFC 8831 payload protocol ids, empty messages as one zero byte) and transmit now."""
    if isinstance(data, str):
        pp_id, payload = (_sctp.WEBRTC_STRING, data.encode("utf8")) if data else (_sctp.WEBRTC_STRING_EMPTY, b"\x00")
    else:
        pp_id, payload = (_sctp.WEBRTC_BINARY, data) if data else (_sctp.WEBRTC_BINARY_EMPTY, b"\x00")
    limit = self._remote_max_message_size
    if limit and len(payload) > limit:
        raise ValueError(f"Cannot send message of {len(payload)} bytes, the remote party takes at most {limit}")
    channel._addBufferedAmount(len(payload))
    self._data_channel_queue.append((channel, pp_id, payload))
    _drive(self._data_channel_flush())


# ---------------------------------------------------------------------------------- acknowledgements


async def _send_sack(self: _Transport) -> None:
    """aiortc calls this after each packet with DATA: hold the SACK back when RFC 9260 6.2 allows."""
    state = self.__dict__
    unacked = state.get("_mv_unacked", 0) + 1
    if (unacked < SACK_EVERY and not self._sack_misordered and not self._sack_duplicates
            and self._association_state == _Transport.State.ESTABLISHED):
        state["_mv_unacked"] = unacked
        if state.get("_mv_sack_timer") is None:
            # aiortc declares its loop optional; an established association has one.
            state["_mv_sack_timer"] = self._loop.call_later(SACK_DELAY_S, _sack_due, self)  # type: ignore[union-attr]
        return
    _sack_sent(self)
    await _original["send_sack"](self)


def _sack_due(self: _Transport) -> None:
    self.__dict__["_mv_sack_timer"] = None
    if self._sack_needed and self._association_state == _Transport.State.ESTABLISHED:
        _sack_sent(self)
        _drive(_original["send_sack"](self))


def _sack_sent(self: _Transport) -> None:
    """A SACK is going out now: nothing is waiting any more."""
    state = self.__dict__
    state["_mv_unacked"] = 0
    timer = state.get("_mv_sack_timer")
    if timer is not None:
        timer.cancel()
        state["_mv_sack_timer"] = None


async def _send_chunk(self: _Transport, chunk: Any) -> None:
    """Send one chunk; a DATA chunk takes a waiting SACK along in the same packet when both fit."""
    state = self.__dict__
    captured = state.get("_mv_capture")
    if captured is not None:  # building the SACK to bundle (below): keep it rather than send it
        captured.append(chunk)
        return
    is_data = isinstance(chunk, _sctp.DataChunk)
    if _bundle is not None and is_data:
        waiting = _bundle.setdefault(self, [])
        if self._sack_needed:
            waiting.append(await _sack_bytes(self))
        waiting.append(bytes(chunk))
        return
    if not (self._sack_needed and is_data):
        await _original["send_chunk"](self, chunk)
        return
    await _send_packed(self, [await _sack_bytes(self), bytes(chunk)])  # control chunks first (6.10)


async def _sack_bytes(self: _Transport) -> bytes:
    """The SACK aiortc would send now, as bytes to bundle; what it reports counts as reported."""
    state = self.__dict__
    state["_mv_capture"] = []
    try:
        await _original["send_sack"](self)  # builds the SACK, "sends" it into the capture, clears what it reports
    finally:
        sacks = state.pop("_mv_capture")
    _sack_sent(self)
    return b"".join(bytes(s) for s in sacks)


@contextlib.contextmanager
def bundled() -> Iterator[None]:
    """Send the DATA chunks of the data-channel sends made within, to each peer, in as few packets as
    fit (a SACK waiting to go, first), when the block ends. Nested, or without :func:`install`, it
    changes nothing."""
    global _bundle
    if _bundle is not None or not _original:
        yield
        return
    _bundle = {}
    try:
        yield
    finally:
        waiting, _bundle = _bundle, None
        for transport, chunks in waiting.items():
            _drive(_send_packed(transport, chunks))


async def _send_packed(self: _Transport, chunks: list[bytes]) -> None:
    """Send chunks in order, as many to a packet as fit in ``MAX_PACKET_BYTES`` (a SACK and a full DATA
    chunk, for one, go in two)."""
    room = MAX_PACKET_BYTES - _COMMON_HEADER.size - 4
    packet: list[bytes] = []
    size = 0
    for chunk in chunks:
        if packet and size + len(chunk) > room:
            await self.transport._send_data(_packet(self, b"".join(packet)))
            packet, size = [], 0
        packet.append(chunk)
        size += len(chunk)
    if packet:
        await self.transport._send_data(_packet(self, b"".join(packet)))


def _packet(self: _Transport, chunks: bytes) -> bytes:
    """An SCTP packet: common header (ports, verification tag, CRC32c) and the chunks' bytes."""
    header = _COMMON_HEADER.pack(self._local_port, self._remote_port, self._remote_verification_tag)
    checksum = _sctp.crc32c(header + b"\x00\x00\x00\x00" + chunks)  # type: ignore[attr-defined]  # aiortc's own CRC (google_crc32c)
    return header + struct.pack("<L", checksum) + chunks


# ------------------------------------------------------------------------------------------ ICE demux


def could_be_stun(data: bytes) -> bool:
    """False when ``data`` cannot be a STUN message: shorter than its header, or not as long as the
    header's length field says (the first checks of aioice's parser, which raises then)."""
    return len(data) >= _STUN_HEADER_BYTES and len(data) == _STUN_HEADER_BYTES + (data[2] << 8 | data[3])


def _datagram_received(self: Any, data: bytes, addr: Any) -> None:
    if could_be_stun(data):
        _original["datagram_received"](self, data, addr)
    else:
        self.receiver.data_received(data, self.local_candidate.component)
