"""The relay peer the signaling server runs for rooms above the mesh limit.

Every participant of a relay room has one peer connection, to the relay (participant ``"relay"``,
index 0), instead of one to every other participant. The relay forwards each message to the others
on the same channel, reading only the header bytes it needs to route it (docs/protocol.md):

- byte 0 (version) and byte 1 (type, which must belong to the channel) to reject foreign traffic;
- bytes 2-3 (4-5 in a state op), the sender's index: a connection binds to the index of its first valid message, and a
  message claiming another index afterwards is dropped (so nobody speaks as someone else);
- for a snapshot chunk, bytes 4-7 (``snapshot_id``) and for a pong, bytes 4-7 (``ping_id``): their
  upper 16 bits name the requester (``net.participant`` sets them so), who alone receives the reply;
- for a snapshot request, the lower 16 bits of ``request_id`` (bytes 4-5) name the participant asked
  (0: any): the request goes to that one participant, or to the longest-connected other one, so
  that a joiner in a room of sixteen receives one snapshot, not fifteen.

Poses, ops, digests and pings go to everyone else. Payloads are never decoded, so the
relay's cost per message is a few byte reads and one send per receiver.

Poses are forwarded newest-wins: a received pose waits in a slot per sender until the relay's next
turn of the event loop, where every waiting pose goes out to everyone; a newer pose from the same
sender that arrives meanwhile replaces the older one. When the relay keeps up, that adds nothing;
when it cannot (a large room on a small machine) it sends fewer, fresher poses instead of building a
queue of stale ones, so latency stays bounded and the reliable state channel is not starved.

The relay also has a pose budget (``pose_budget_hz`` messages per second in all, shared equally by the
receivers, a token bucket each): every forwarded message costs a DTLS record and an SCTP packet on
both ends, and in pure Python one core handles a few thousand a second; sixteen participants at
90 Hz would need 21,600. Over budget, a receiver gets fewer poses per sender (newest wins), never
late ones; state, clock and snapshot traffic is never limited.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from net.errors import NetError
from net.peer import POSE_BUFFER_LIMIT, PeerLink
from net.protocol import PROTOCOL_VERSION, MessageType
from net.rooms import TokenBucket

log = logging.getLogger(__name__)

#: Message types each channel may carry.
_CHANNEL_TYPES: dict[str, frozenset[int]] = {
    "pose": frozenset({MessageType.POSE}),
    "state": frozenset({MessageType.STATE_OP, MessageType.SNAPSHOT_REQUEST, MessageType.SNAPSHOT_CHUNK, MessageType.STATE_DIGEST}),
    "clock": frozenset({MessageType.CLOCK_PING, MessageType.CLOCK_PONG}),
}
#: Replies routed to one requester (named by the upper 16 bits of the uint32 at offset 4).
_REPLIES = frozenset({MessageType.SNAPSHOT_CHUNK, MessageType.CLOCK_PONG})

#: Poses the relay forwards per second in all, by default (a room of eight at 90 Hz needs 5,040).
DEFAULT_POSE_BUDGET_HZ = 6000.0

SendSignal = Callable[[dict[str, Any]], Awaitable[None]]


class RelayError(NetError):
    """A signal for the relay cannot be used (not an offer, from nobody)."""


class RelayPeer:
    """Forwards data-channel messages between the participants of one room.

    Parameters
    ----------
    room : str
        Room name (for logs and stats).
    send_signal : async callable
        ``send_signal({"type": "signal", "to": P, "data": {...}})`` delivers an answer to participant P.
    pose_buffer_limit : int
        Bytes queued towards one receiver above which forwarded poses to it are dropped (newest wins).
    pose_budget_hz : float or None
        Poses the relay forwards per second in all, split equally among receivers (None: no limit).
        The default, 6,000, leaves rooms of up to eight at 90 Hz (5,040 a second) unlimited.
    """

    def __init__(
        self,
        room: str,
        send_signal: SendSignal,
        *,
        pose_buffer_limit: int = POSE_BUFFER_LIMIT,
        pose_budget_hz: float | None = DEFAULT_POSE_BUDGET_HZ,
    ) -> None:
        self.room = room
        self._send_signal = send_signal
        self._pose_buffer_limit = pose_buffer_limit
        self.links: dict[str, PeerLink] = {}
        self._index_of: dict[str, int] = {}
        self._by_index: dict[int, PeerLink] = {}
        self.counters: Counter[str] = Counter()
        self._per_participant: dict[str, Counter[str]] = {}
        self._started = time.monotonic()
        self._cpu0 = time.process_time()
        self._pending_poses: dict[PeerLink, bytes] = {}  # newest pose per sender, not yet forwarded
        self._pose_budget_hz = pose_budget_hz
        self._budgets: dict[PeerLink, TokenBucket] = {}
        self._flush_scheduled = False

    async def handle_signal(self, message: dict[str, Any]) -> None:
        """Answer an offer ``{"type": "signal", "from": P, "data": {"type": "offer", "sdp": ...}}``.

        Raises
        ------
        RelayError, PeerError
            Not an offer, or an SDP that cannot be used.
        """
        sender, data = message.get("from"), message.get("data")
        if not isinstance(sender, str) or not isinstance(data, dict) or data.get("type") != "offer":
            raise RelayError("the relay only takes offers (participants offer to it)")
        await self.peer_left(sender)
        link = PeerLink(sender, self._on_message, pose_buffer_limit=self._pose_buffer_limit)
        link.on_state_change = self._state_changed
        self.links[sender] = link
        answer = await link.handle_signal(data)
        assert answer is not None
        await self._send_signal({"type": "signal", "to": sender, "data": answer})
        log.info("relay %s: answered %s", self.room, sender)

    def _state_changed(self, link: PeerLink, state: str) -> None:
        if state in ("failed", "closed") and self.links.get(link.remote) is link:
            del self.links[link.remote]
            self._budgets.pop(link, None)
            self._unbind(link)

    def _unbind(self, link: PeerLink) -> None:
        index = self._index_of.get(link.remote)
        if index is not None and self._by_index.get(index) is link:
            del self._by_index[index]

    async def peer_left(self, participant: str) -> None:
        """Close the connection of a participant who left (or is about to offer again)."""
        link = self.links.pop(participant, None)
        if link is not None:
            self._unbind(link)
            link.on_state_change = None
            await link.close()

    async def close(self) -> None:
        """Close every connection."""
        links = list(self.links.values())
        self.links.clear()
        self._by_index.clear()
        await asyncio.gather(*(link.close() for link in links), return_exceptions=True)
        log.info("relay %s: closed", self.room)

    # ------------------------------------------------------------------ forwarding

    def _on_message(self, link: PeerLink, label: str, data: bytes) -> None:
        counters = self._per_participant.setdefault(link.remote, Counter())
        counters["in"] += 1
        counters["bytes_in"] += len(data)
        if len(data) < 8 or data[0] != PROTOCOL_VERSION or data[1] not in _CHANNEL_TYPES.get(label, ()):
            self.counters["malformed"] += 1
            return
        at = 4 if data[1] == MessageType.STATE_OP else 2  # where the sender's index sits in this layout
        sender = data[at] | data[at + 1] << 8
        bound = self._index_of.get(link.remote)
        if bound is None:
            holder = self._by_index.get(sender)
            if sender == 0 or (holder is not None and holder is not link and holder.remote in self.links):
                self.counters["spoofed"] += 1
                return
            self._index_of[link.remote] = sender
            bound = sender
        if sender != bound:
            self.counters["spoofed"] += 1
            return
        if self._by_index.get(bound) is not link:
            self._by_index[bound] = link
        mtype = data[1]
        if label == "pose":
            if link in self._pending_poses:
                self.counters["pose_superseded"] += 1
            self._pending_poses[link] = data
            if not self._flush_scheduled:
                self._flush_scheduled = True
                asyncio.get_running_loop().call_soon(self._flush_poses)
            return
        if mtype in _REPLIES:
            target = self._by_index.get(int.from_bytes(data[4:8], "little") >> 16)
            targets = [target] if target is not None and target is not link else []
            if not targets:
                self.counters["unroutable"] += 1
                return
        elif mtype == MessageType.SNAPSHOT_REQUEST:
            wanted = self._by_index.get(data[4] | data[5] << 8)
            if wanted is None or wanted is link:
                # Any one will do: the longest-connected other participant (links keep join order).
                wanted = next((other for other in self.links.values() if other is not link and other.is_open), None)
            if wanted is None:
                self.counters["unroutable"] += 1
                return
            targets = [wanted]
        else:
            targets = [other for other in self.links.values() if other is not link]
        self._forward(label, data, targets)

    def _flush_poses(self) -> None:
        """Forward the newest pose of every sender to everyone else, within each receiver's budget."""
        self._flush_scheduled = False
        pending, self._pending_poses = self._pending_poses, {}
        links = list(self.links.values())
        share = self._pose_budget_hz / max(1, len(links)) if self._pose_budget_hz is not None else 0.0
        for sender, data in pending.items():
            targets = []
            for other in links:
                if other is sender:
                    continue
                if self._pose_budget_hz is not None:
                    bucket = self._budgets.get(other)
                    if bucket is None:
                        # A burst of a quarter second's share absorbs scheduling jitter.
                        bucket = self._budgets[other] = TokenBucket(share, share / 4)
                    bucket.rate, bucket.burst = share, share / 4
                    if not bucket.take():
                        self.counters["pose_over_budget"] += 1
                        continue
                targets.append(other)
            self._forward("pose", data, targets)

    def _forward(self, label: str, data: bytes, targets: list[PeerLink]) -> None:
        for other in targets:
            if other.send(label, data):
                self.counters[f"forwarded_{label}"] += 1
                out = self._per_participant.setdefault(other.remote, Counter())
                out["out"] += 1
                out["bytes_out"] += len(data)
            elif label == "pose" and other.is_open:
                self.counters["pose_dropped"] += 1

    def stats(self) -> dict[str, Any]:
        """Counters for the server's ``/stats``: forwarded/dropped messages, per-participant traffic, CPU."""
        wall = max(1e-9, time.monotonic() - self._started)
        return {
            "participants": sorted(self.links),
            "open": sum(1 for link in self.links.values() if link.is_open),
            "counters": dict(self.counters),
            "per_participant": {name: dict(c) for name, c in sorted(self._per_participant.items())},
            "cpu_share": round((time.process_time() - self._cpu0) / wall, 4),
        }
