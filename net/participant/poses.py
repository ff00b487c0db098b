"""Poses: sending them at the display rate on absolute deadlines, receiving them newest-wins, and one-way latency.

A participant sends a pose record on the ``pose`` channel ``pose_rate_hz`` times a second, taking the
poses from its pose source; in a relay room it times each to reach the relay just before one of the
relay's ticks (docs/protocol.md, "Sending in time for a tick"). Received poses are checked with
``pose_key`` and kept as they came, newest wins; one is decoded only when someone looks at it.
Every applied pose and op has its one-way latency recorded (``OneWay``): the sender's timestamp
mapped through the remote's clock offset to ours, within the measurement window.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from typing import TYPE_CHECKING

from net.errors import ProtocolError
from net.participant.roster import RemotePeer
from net.peer import PeerLink
from net.protocol import RELAY_TICK_HZ, NewestWins, PoseRecord, TrackedPoses, encode_pose, pose_key, seq_next
from net.tokens import RELAY_ID

if TYPE_CHECKING:
    from net.participant.config import PoseSource
    from net.participant.room import Participant

log = logging.getLogger(__name__)


class OneWay:
    """One-way latency of updates from remotes, within a measurement window on the monotonic clock."""

    def __init__(self) -> None:
        self.measure_from, self.measure_until = 0.0, math.inf

    def measuring(self) -> bool:
        """True within the measurement window (``measure_from``/``measure_until``, monotonic clock)."""
        return self.measure_from <= time.monotonic() < self.measure_until

    def latency(self, remote: RemotePeer, sender_time: float, now: float, measuring: bool | None = None) -> float | None:
        """One-way latency of an update sent at ``sender_time`` (the remote's clock) and received at
        ``now`` (ours); None outside the measurement window or before the remote's clock is known."""
        if not (self.measuring() if measuring is None else measuring) or not remote.clock.synchronized:
            return None
        return now - remote.clock.to_local(sender_time)


class PoseStream:
    """The participant's outgoing pose stream and the newest pose of every remote."""

    def __init__(self, host: Participant) -> None:
        self._host = host
        self.newest = NewestWins()
        self._seq = 0
        self._wake_ups: deque[float] = deque(maxlen=90)  # how late the pose loop woke, seconds
        self._wake_up_p90 = 0.0

    # ------------------------------------------------------------------ sending

    def send(self, poses: TrackedPoses, sampled_at: float | None = None) -> int:
        """Send one pose record (``head``/``left``/``right``/``pointer``) to every open link; returns sends.
        Its sender time is ``sampled_at`` (on the participant's clock: when the poses were sampled, for a
        sender whose poses reach this loop from elsewhere, a frame loop) or now."""
        host = self._host
        self._seq = seq_next(self._seq)
        record = PoseRecord(host.index, self._seq, host.clock() if sampled_at is None else sampled_at, **poses)
        data = encode_pose(record)
        sent = sum(link.send("pose", data) for link in host.link_set.open_links())
        host.counters["poses_sent"] += 1
        if host.on_sent is not None:
            host.on_sent("pose", data, record.sender_time)
        return sent

    async def loop(self, source: PoseSource | None) -> None:
        """Send the source's poses ``pose_rate_hz`` times a second while links are open."""
        host = self._host
        rate = host.config.pose_rate_hz
        if rate <= 0 or source is None:
            return
        period = 1.0 / rate
        due = host.clock()
        while not host.stopping:
            # Absolute deadlines: a late wake-up does not shift (or drift) the rest of the stream.
            due = self._next_time(due, period)
            delay = due - host.clock()
            if delay < -period:  # fell behind by more than a frame: skip frames rather than burst
                due += int(-delay / period) * period
                host.counters["pose_frames_skipped"] += 1
                continue
            await asyncio.sleep(max(0.0, delay))
            self._note_wake_up(host.clock() - due)
            if host.link_set.open_links():
                poses = source(host.clock(), host.index)
                if poses is not None:
                    self.send(poses)

    def _note_wake_up(self, late: float) -> None:
        """Keep how late the pose loop wakes (timer granularity, a busy loop): the 90th percentile of the
        last 90 wake-ups is added to the lead before the relay's tick, so that 9 poses in 10 make it."""
        self._wake_ups.append(late)
        if len(self._wake_ups) == self._wake_ups.maxlen and self._seq % 30 == 0:
            self._wake_up_p90 = max(0.0, sorted(self._wake_ups)[int(0.9 * len(self._wake_ups))])

    def _next_time(self, last: float, period: float) -> float:
        """When the next pose goes out (our clock): one period after ``last``; in a relay room, at the
        relay's tick rate, the time that lands it at the relay ``relay_pose_lead_s`` before a primary
        tick (docs/protocol.md, "Sending in time for a tick"), at least half a period after ``last``.
        """
        host = self._host
        link, relay = host.link_set.links.get(RELAY_ID), host.clock_sync.relay_clock
        if link is None or not link.is_open or not relay.synchronized or abs(period * RELAY_TICK_HZ - 1.0) > 0.01:
            return last + period
        lead = relay.min_rtt / 2 + host.config.relay_pose_lead_s + self._wake_up_p90
        tick = math.ceil(relay.to_remote(last + period / 2 + lead) * RELAY_TICK_HZ) / RELAY_TICK_HZ
        return relay.to_local(tick) - lead

    # ------------------------------------------------------------------ receiving

    def on_bundle(self, link: PeerLink, messages: list[bytes], now: float) -> None:
        """Apply each pose of a relay's bundle on its own: one bad pose costs only itself."""
        host = self._host
        if link.remote != RELAY_ID:  # only the relay bundles; a mesh peer sends its own poses alone
            host.counters["spoofed"] += 1
            return
        host.counters["pose_bundles"] += 1
        checked = []
        for raw in messages:
            try:
                checked.append((pose_key(raw), raw))
            except ProtocolError as exc:
                host.counters["malformed_pose"] += 1
                log.debug("%s: dropped a bundled pose: %s", host.name, exc)
        self.apply(link, checked, now)

    def apply(self, link: PeerLink, poses: list[tuple[tuple[int, int, float], bytes]], now: float) -> None:
        """Apply checked pose messages (each with its ``pose_key``: participant, seq, sender time), newest
        wins. A pose is decoded only for ``on_pose`` or when someone reads ``RemotePeer.pose``."""
        host = self._host
        measuring = host.one_way.measuring()
        accept, record, latency_of = self.newest.accept, host.monitor.record, host.one_way.latency
        applied = 0
        for (participant, seq, sender_time), raw in poses:
            remote = host.roster.source(link, participant, "pose")
            if remote is None:
                continue
            if not accept(participant, seq):
                host.counters["poses_stale"] += 1
                continue
            remote.set_pose(raw)
            applied += 1
            latency = latency_of(remote, sender_time, now, measuring)
            if latency is not None:
                record(remote.name, "pose", latency, now)
            if host.on_pose is not None:
                pose = remote.pose
                assert pose is not None
                host.on_pose(pose, latency)
        host.counters["poses_applied"] += applied
