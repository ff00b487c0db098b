"""The relay peer the signaling server runs for rooms above the mesh limit.

Every participant of a relay room has one peer connection, to the relay (participant ``"relay"``,
index 0), instead of one to every other participant. The relay forwards each message to the others
on the same channel, reading only the header fields it needs to route it, through the functions of
``net.protocol.channels`` (docs/protocol.md):

- the version and type (``message_type``: the type must belong to the channel) to reject foreign traffic;
- the sender's index (``sender``): a connection binds to the index of its first valid message, and a
  message claiming another index afterwards is dropped (so nobody speaks as someone else);
- for a snapshot chunk and a pong, the requester (``reply_to``: the upper 16 bits of ``snapshot_id``
  or ``ping_id``, which ``net.participant`` sets with ``routed_id``), who alone receives the reply;
- for a snapshot request, the participant asked (``snapshot_asked``, 0: any): the request goes to
  that one participant, or to the longest-connected other one, so that a joiner in a room of
  sixteen receives one snapshot, not fifteen.

Poses, ops, digests and clock shares go to everyone else. Pings are answered by the relay alone, as
participant 0, and not forwarded: each participant learns the relay's clock from these pongs and
tells the room where its own clock stands against it (``ClockShare``), so nobody pings anybody else
through the relay (a forwarded ping woke the whole room, and each answer woke its asker once more).
The pongs also mean a participant always hears from a healthy relay link (alone in the room too)
and can tell a dead one by its silence; and the relay closes a link it has heard nothing on for
``liveness_timeout_s`` (participants send poses at the display rate and pings every few seconds),
so that it stops sending into a path that is gone, and tells the participant through signaling
(``{"type": "closed"}``), who then offers a new connection. Payloads are never decoded (but a
state op's, below), so the relay's cost per message is a few byte reads and one send per receiver.

Roles (docs/roles.md): the server tells the relay each participant's token role (``role_of``); the
relay keeps a ``SharedState`` of its own for the roles granted during the session (it applies the
``SET_ROLE`` ops it forwards, and merges a snapshot it asks the first participant it hears from
for, with the grants made while the room was a mesh). Once that snapshot is in, it decodes each
state op and refuses, with ``net.roles.check`` and the role its sender had when it made it, an op
whose kind that role does not allow: the op is not forwarded, is counted (``ops_refused``) and is
answered to its sender with a ``StateRefusal`` from participant 0. Whose mark an op names is left
to the receivers, who hold the marks. Refusals from participants are routed to the op's sender alone,
like replies.

Poses travel in bundles (protocol version 2, ``POSE_BUNDLE``): a received pose waits in a slot per
sender, a newer pose from the same sender replacing it (newest wins), until the relay's next flush,
which sends each receiver one message holding every waiting pose but its own. Every message costs a
DTLS record, an SCTP packet and an acknowledgement on both ends, and in pure Python one core handles
a few thousand a second; sixteen participants at 90 Hz sending one message per pose per receiver
would need 21,600 a second, while bundled they need one per receiver per flush.

In a small room (while forwarding each pose on its own to everyone would stay within the pose
budget) a flush follows every received pose on the next turn of the event loop. Above that, flushes
happen on a fixed grid of the relay's monotonic clock: the primary ticks are the multiples of
1 / ``RELAY_TICK_HZ`` (90 Hz) seconds, with ``pose_subticks - 1`` more ticks evenly between them; a
tick flushes only if poses are waiting, and no sooner after the last flush than the pose budget allows
(``pose_budget_hz`` bundles a second in all). Participants sending at 90 Hz learn the relay's clock
from its pongs and time each pose to arrive just before a primary tick (``net.participant``), so
every pose waits at the relay only that lead, and each receiver gets one bundle per primary tick
holding every other sender's pose. The flush comes before the tick once every sender heard from in
the last period and a half has a pose waiting (nobody else is coming, and waiting would only add to
their latency), and a timer that fires early (uvloop's have 1 ms steps) waits out the rest unless
everyone is in. A pose that misses its tick (a late sender, one that does not align) waits at most
until the next subtick. Pongs and snapshot traffic go at once and are never limited; ops, digests
and clock shares wait for their receiver's next flush (a primary tick, if no pose asks for a sooner
one) and go with its bundle (``datapath.bundled``: one packet when they fit, so a receiver wakes once
a tick rather than once more per op).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from net import datapath
from net.errors import NetError, ProtocolError
from net.peer import POSE_BUFFER_LIMIT, PeerLink
from net.protocol import (
    RELAY_TICK_HZ,
    REPLY_TYPES,
    ClockPing,
    ClockPong,
    MessageType,
    OpKind,
    SnapshotAssembler,
    SnapshotChunk,
    SnapshotRequest,
    StateOp,
    StateRefusal,
    bundle_framed_poses,
    decode_clock,
    decode_state,
    encode_clock,
    encode_state,
    frame_pose,
    message_type,
    refusal_reason,
    reply_to,
    routed_id,
    sender,
    snapshot_asked,
)
from net.roles import check
from net.state import SharedState

log = logging.getLogger(__name__)

#: A link silent for this long is closed, by default (a participant's own default is the same).
DEFAULT_LIVENESS_TIMEOUT_S = 12.0
#: Flush ticks per primary tick period, by default: a pose that misses a primary tick waits half a period.
DEFAULT_POSE_SUBTICKS = 2
#: Messages held for one receiver beyond which they go at once, without waiting for its bundle.
HELD_LIMIT = 32
#: Pose bundles the relay sends per second in all, by default: a room of eight forwards every pose on its
#: own (5,040 a second), and sixteen receivers at 180 ticks a second (2,880) fit.
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
    pose_subticks : int
        Flush ticks per primary tick period (``1 / RELAY_TICK_HZ``); 1 flushes only at primary ticks.
    pose_budget_hz : float or None
        Pose bundles the relay sends per second in all (None: no limit); with R receivers the
        flushes come at most every ``R / pose_budget_hz`` seconds (ticks are skipped).
    liveness_timeout_s : float
        A link the relay has heard nothing on for this long is closed (0 or inf: never).
    role_of : callable or None
        ``role_of(participant)`` -> the role its join token gives (the signaling server's roster); None:
        the relay checks no role (docs/roles.md).
    """

    def __init__(
        self,
        room: str,
        send_signal: SendSignal,
        *,
        pose_buffer_limit: int = POSE_BUFFER_LIMIT,
        pose_subticks: int = DEFAULT_POSE_SUBTICKS,
        pose_budget_hz: float | None = DEFAULT_POSE_BUDGET_HZ,
        liveness_timeout_s: float = DEFAULT_LIVENESS_TIMEOUT_S,
        role_of: Callable[[str], str] | None = None,
    ) -> None:
        self.room = room
        self._role_of = role_of
        # The roles granted during the session (SET_ROLE), from the ops forwarded and one snapshot: roles are
        # checked once the snapshot is in (grants made while the room was a mesh are in it).
        self.roles_state = SharedState(0)
        self._roles_known = False
        self._roles_asked = False
        self._assembler = SnapshotAssembler()
        self._send_signal = send_signal
        self._pose_buffer_limit = pose_buffer_limit
        self.links: dict[str, PeerLink] = {}
        self._index_of: dict[str, int] = {}
        self._by_index: dict[int, PeerLink] = {}
        self.counters: Counter[str] = Counter()
        self._per_participant: dict[str, Counter[str]] = {}
        self._started = time.monotonic()
        self._cpu0 = time.process_time()
        self._pending_poses: dict[PeerLink, bytes] = {}  # newest pose per sender (frame_pose), not yet forwarded
        self._tick_s = 1.0 / (RELAY_TICK_HZ * max(1, pose_subticks))
        self._pose_budget_hz = pose_budget_hz
        self._flush_scheduled = False
        self._flush_timer: asyncio.TimerHandle | None = None
        self._flush_due = 0.0  # the grid tick the timer stands for (time.monotonic())
        self._last_flush = 0.0
        self._pose_heard: dict[PeerLink, float] = {}  # when each sender's latest pose arrived
        # (channel, message) for each receiver, to go with its next bundle
        self._held: dict[PeerLink, list[tuple[str, bytes]]] = {}
        self._liveness_timeout_s = liveness_timeout_s
        self._watchdog: asyncio.Task[None] | None = None

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
        if self._watchdog is None and 0 < self._liveness_timeout_s < float("inf"):
            self._watchdog = asyncio.ensure_future(self._watch_links())

    async def _watch_links(self) -> None:
        """Close open links silent for ``liveness_timeout_s``: aiortc would keep sending into a dead path for 30 s."""
        timeout = self._liveness_timeout_s
        while True:
            await asyncio.sleep(min(0.5, timeout / 4))
            for link in list(self.links.values()):
                silent = link.silent_for()
                if not link.is_open or silent <= timeout:
                    continue
                self.counters["links_dead"] += 1
                log.warning("relay %s: nothing from %s for %.1f s; closing its link", self.room, link.remote, silent)
                try:
                    await self.peer_left(link.remote)
                    # Signaling may still reach it (only the media path died): it can offer again at once
                    # instead of waiting for its own liveness check.
                    await self._send_signal({"type": "signal", "to": link.remote,
                                             "data": {"type": "closed", "reason": f"relay heard nothing for {silent:.1f} s"}})
                except Exception as exc:  # one broken link must not stop the watch over the others
                    log.warning("relay %s: closing %s's link failed: %s", self.room, link.remote, exc)

    def _state_changed(self, link: PeerLink, state: str) -> None:
        if state in ("failed", "closed") and self.links.get(link.remote) is link:
            del self.links[link.remote]
            self._unbind(link)

    def _unbind(self, link: PeerLink) -> None:
        self._pose_heard.pop(link, None)
        self._held.pop(link, None)
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
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        self._cancel_flush_timer()
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
        try:
            mtype = message_type(data, label)
        except ProtocolError:
            self.counters["malformed"] += 1
            return
        index = sender(data)
        bound = self._index_of.get(link.remote)
        if bound is None:
            holder = self._by_index.get(index)
            if index == 0 or (holder is not None and holder is not link and holder.remote in self.links):
                self.counters["spoofed"] += 1
                return
            self._index_of[link.remote] = index
            bound = index
        if index != bound:
            self.counters["spoofed"] += 1
            return
        if self._by_index.get(bound) is not link:
            self._by_index[bound] = link
        if label == "pose":
            try:
                framed = frame_pose(data)  # framed once here, bundled for every other receiver
            except ProtocolError:  # it could not go in a bundle
                self.counters["malformed"] += 1
                return
            if link in self._pending_poses:
                self.counters["pose_superseded"] += 1
            self._pending_poses[link] = framed
            now = time.monotonic()
            self._pose_heard[link] = now
            loop = asyncio.get_running_loop()
            if self._small_room():  # forwarding every pose at once fits the budget: no need to wait
                if not self._flush_scheduled:
                    self._flush_scheduled = True
                    loop.call_soon(self._flush_poses)
                return
            if not self._flush_scheduled:
                self._schedule_flush(now)
            elif self._flush_timer is None:
                pass  # a flush is already on its way (call_soon)
            elif self._all_in(now) and now >= self._last_flush + self.pose_interval():
                # Every sender's pose is here: waiting for the tick would only add to their latency.
                self._cancel_flush_timer()
                self.counters["pose_flushes_early"] += 1
                loop.call_soon(self._flush_poses)
            elif self._flush_due > self._next_tick(now, self._tick_s) + 1e-6:
                # The timer stands for a primary tick that held state messages asked for: a pose may
                # not wait that long, it goes at the next subtick.
                self._cancel_flush_timer()
                self._schedule_flush(now)
            return
        if self._role_of is not None and label == "state":
            if mtype == MessageType.STATE_OP and not self._op_allowed(link, data):
                return
            if mtype == MessageType.SNAPSHOT_CHUNK and reply_to(data) == 0:
                self._roles_chunk(data)
                return
            if not self._roles_asked:
                # Ask the first participant heard from for the room's state: the roles granted so far.
                self._roles_asked = True
                link.send("state", encode_state(SnapshotRequest(0, routed_id(0, bound))))
        if mtype in REPLY_TYPES:
            target = self._by_index.get(reply_to(data))
            targets = [target] if target is not None and target is not link else []
            if not targets:
                self.counters["unroutable"] += 1
                return
        elif mtype == MessageType.CLOCK_PING:
            # Answered here alone: the others' clocks come from their shares (net.clock.RelayedClock).
            self._pong(link, data)
            return
        elif mtype == MessageType.SNAPSHOT_REQUEST:
            wanted = self._by_index.get(snapshot_asked(data))
            if wanted is None or wanted is link:
                # Any one will do: the longest-connected other participant (links keep join order).
                wanted = next((other for other in self.links.values() if other is not link and other.is_open), None)
            if wanted is None:
                self.counters["unroutable"] += 1
                return
            targets = [wanted]
        else:
            targets = [other for other in self.links.values() if other is not link]
            if not self._small_room():  # ops, digests and clock shares
                self._hold(label, data, targets)
                return
        if label == "state":
            for other in targets:  # what was held for them goes first: the channel is ordered
                self._release(other)
        self._forward(label, data, targets)

    def _op_allowed(self, link: PeerLink, data: bytes) -> bool:
        """Check a state op against its sender's role; a refused one is answered and counted (False)."""
        try:
            op = decode_state(data)
        except ProtocolError:
            self.counters["malformed"] += 1
            return False
        assert isinstance(op, StateOp)  # the caller saw its type byte
        if self._roles_known:
            granted = self.roles_state.role_at(op.participant, (op.lamport, op.participant, op.seq))
            role = granted if granted is not None else self._role_of(link.remote) if self._role_of else ""
            reason = check(role, op, None)
            if reason is not None:
                self.counters["ops_refused"] += 1
                self._per_participant.setdefault(link.remote, Counter())["ops_refused"] += 1
                log.info("relay %s: refused op %d of %s (%s): %s", self.room, op.seq, link.remote, op.kind.name, reason)
                self._release(link)  # what was held for it goes first: the channel is ordered
                refusal = StateRefusal(0, op.participant, op.seq, op.kind, refusal_reason(reason))
                link.send("state", encode_state(refusal))
                return False
        if op.kind is OpKind.SET_ROLE:
            self.roles_state.apply(op)
        return True

    def _roles_chunk(self, data: bytes) -> None:
        """A chunk of the snapshot the relay asked for: once whole, its roles are known."""
        try:
            chunk = decode_state(data)
            assert isinstance(chunk, SnapshotChunk)
            body = self._assembler.add(chunk)
            if body is not None:
                self.roles_state.merge_snapshot(body)
        except ProtocolError:
            self.counters["malformed"] += 1
            self._roles_asked = False  # ask again, maybe someone else
            return
        if body is not None:
            self._roles_known = True
            log.info("relay %s: roles known (%d granted during the session)", self.room, len(self.roles_state.roles))

    def _hold(self, label: str, data: bytes, targets: list[PeerLink]) -> None:
        """Keep an op, digest or clock share for each target until the next flush, which sends it with the
        target's pose bundle: in one packet with it, instead of waking the receiver once more for it alone."""
        for other in targets:
            held = self._held.setdefault(other, [])
            held.append((label, data))
            if len(held) >= HELD_LIMIT:
                self._release(other)
        self.counters[f"{label}_held"] += 1
        if not self._flush_scheduled:
            # At the next primary tick, not a subtick: that flush comes anyway while poses flow, and a
            # flush of its own for state would wake every receiver once more.
            self._schedule_flush(time.monotonic(), 1.0 / RELAY_TICK_HZ)

    def _release(self, other: PeerLink) -> None:
        for label, data in self._held.pop(other, ()):
            self._forward(label, data, [other])

    def _next_tick(self, now: float, grid_s: float) -> float:
        """The first tick of the grid (every ``grid_s`` seconds) after ``now`` that the budget allows."""
        earliest = max(now, self._last_flush + self.pose_interval())
        return (math.floor(earliest / grid_s + 1e-9) + 1) * grid_s

    def _schedule_flush(self, now: float, grid_s: float | None = None) -> None:
        """Set the timer for the next tick the budget allows: of the subtick grid, or of ``grid_s``."""
        self._flush_scheduled = True
        self._flush_due = self._next_tick(now, grid_s or self._tick_s)
        self._flush_timer = asyncio.get_running_loop().call_later(self._flush_due - now, self._flush_on_tick)

    def _pong(self, link: PeerLink, ping: bytes) -> None:
        """Answer a ping as participant 0 (the relay): the link's liveness signal, and the relay's clock."""
        try:
            message = decode_clock(ping)
        except ProtocolError:
            self.counters["malformed"] += 1
            return
        assert isinstance(message, ClockPing)  # the caller saw its type byte
        now = time.monotonic()
        link.send("clock", encode_clock(ClockPong(0, message.ping_id, message.t0, now, now)))
        self.counters["pongs_sent"] += 1

    def _small_room(self) -> bool:
        """True while every pose forwarded on its own (one bundle per pose and receiver) would stay
        within the budget: then the relay flushes at once rather than on its tick (a room of four sends
        1,080 a second, eight 5,040, nine 6,480)."""
        n = len(self.links)
        return not self._pose_budget_hz or n * (n - 1) * RELAY_TICK_HZ <= self._pose_budget_hz

    def pose_interval(self) -> float:
        """Shortest time between two pose flushes now: what the budget allows with this many receivers."""
        if not self._pose_budget_hz:
            return 0.0
        return max(1, len(self.links)) / self._pose_budget_hz

    def _all_in(self, now: float) -> bool:
        """True when every sender heard from within the last one and a half tick periods has a pose
        waiting: senders aligned to the grid send one pose a period, so nobody else is coming."""
        recent = now - 1.5 / RELAY_TICK_HZ
        waiting = self._pending_poses
        return all(link in waiting for link, heard in self._pose_heard.items() if heard >= recent and link.is_open)

    def _flush_on_tick(self) -> None:
        """The timer for the grid tick: flush, unless it fired early (uvloop's timers have 1 ms steps and
        may fire up to a millisecond before their time) while a sender's pose may still be on its way."""
        self._flush_timer = None
        now = time.monotonic()
        remaining = self._flush_due - now
        if remaining > 0.0003 and not self._all_in(now):
            self._flush_timer = asyncio.get_running_loop().call_later(remaining, self._flush_on_tick)
            return
        self._flush_poses()

    def _cancel_flush_timer(self) -> None:
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None

    def _flush_poses(self) -> None:
        """Send every receiver one bundle of the newest waiting pose of each other sender.

        Each flush starts one receiver further along: a flush to sixteen takes the relay a few
        milliseconds, and in join order the last to join would always be served last.
        """
        self._flush_scheduled = False
        self._last_flush = time.monotonic()
        flushes = self.counters["pose_flushes"]
        self.counters["pose_flushes"] += 1
        pending, self._pending_poses = self._pending_poses, {}
        receivers = list(self.links.values())
        start = flushes % len(receivers) if receivers else 0
        for other in receivers[start:] + receivers[:start]:
            poses = [data for sender, data in pending.items() if sender is not other]
            with datapath.bundled():  # the bundle and held state messages: one packet when they fit
                # The bundle first: the receiver handles the packet's messages in order, and poses are
                # the ones with a budget of a few milliseconds (a digest check costs it half of one).
                if poses:
                    self.counters["poses_bundled"] += len(poses)
                    # Each bundle within one chunk: a bundle in two fragments costs two packets.
                    self._forward("pose", bundle_framed_poses(poses, datapath.MESSAGE_IN_ONE_CHUNK), [other])
                self._release(other)

    def _forward(self, label: str, data: bytes | list[bytes], targets: list[PeerLink]) -> None:
        """Send ``data`` (one message, or several) to each target, counting what went and what was dropped."""
        messages = data if isinstance(data, list) else [data]
        for other in targets:
            for message in messages:
                if other.send(label, message):
                    self.counters[f"forwarded_{label}"] += 1
                    out = self._per_participant.setdefault(other.remote, Counter())
                    out["out"] += 1
                    out["bytes_out"] += len(message)
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
