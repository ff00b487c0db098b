"""``Participant``: one participant of a consultation room, a thin coordinator over its parts.

It joins through :class:`net.signaling_client.SignalingClient` and routes what arrives to the part
whose job it is, the way aiortc's ``RTCPeerConnection`` sits over its transports:

- ``roster`` (``net.participant.roster``): the remotes and the room's topology;
- ``link_set`` (``links``): one ``PeerLink`` per remote (mesh) or one to the relay, rebuilt on failure;
- ``sync`` (``sync``): the ``SharedState``, ops, snapshots, digests and resuming;
- ``clock_sync`` (``clock``): pings, pongs and clock shares;
- ``poses`` (``poses``): the outgoing pose stream and every remote's newest pose; ``one_way``, the
  one-way latency of every applied pose and op, recorded in a :class:`net.latency.LatencyMonitor`,
  published to the signaling server's ``/stats`` every second and returned in the final report
  (``net.participant.report``).

What the participant sends of its own comes from its caller: a pose source and an op source
(``net.participant.config``). Bad input from a remote (malformed, spoofed, unknown) is dropped and
counted in ``counters``.

When the signaling server goes away (restarted, say), the peer links stay up and keep carrying poses
and ops: the participant rejoins with a jittered exponential back-off (``net.signaling_client.Backoff``,
0.25-3 s), claims its index back, offers only to peers it has no open link to, and counts the outage
(``outages``, in the report as ``signaling``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from net.clock import ClockEstimator
from net.errors import NetError, ProtocolError
from net.latency import LatencyMonitor
from net.participant.clock import ClockSync
from net.participant.config import OpSource, ParticipantConfig, PoseSource
from net.participant.links import Links
from net.participant.poses import OneWay, PoseStream
from net.participant.report import SignalingOutages, session_report, stats_report
from net.participant.roster import RemotePeer, Roster
from net.participant.sync import StateSync
from net.peer import PeerLink
from net.protocol import (
    OpKind,
    PoseRecord,
    StateOp,
    StateRefusal,
    TrackedPoses,
    decode_clock,
    decode_state,
    is_pose_bundle,
    pose_key,
    split_pose_bundle,
)
from net.signaling_client import Backoff, SignalingClient, SignalingClosedError, SignalingRefusedError
from net.state import SharedState
from net.tokens import RELAY_ID

log = logging.getLogger(__name__)


class Participant:
    """One participant of a consultation room (see the module docstring).

    Parameters
    ----------
    server_url : str
        Signaling server, ``http(s)://host:port``.
    token : str
        Join token.
    config : ParticipantConfig or None
        Behaviour; defaults otherwise.
    clock : callable
        Monotonic time source, seconds; every timestamp sent or compared comes from it (tests add an
        offset to it to prove that latency survives unsynchronised clocks).
    ssl : ssl.SSLContext, bool or None
        TLS verification for ``https`` servers.
    poses : PoseSource or None
        The poses to send at ``config.pose_rate_hz`` (None: the participant sends no poses of its own;
        ``send_pose`` still sends what it is given).
    ops : OpSource or None
        The ops to make at ``config.ops_rate_hz`` (None: none; ``make_op`` still makes what it is given).
    """

    def __init__(
        self,
        server_url: str,
        token: str,
        config: ParticipantConfig | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        ssl: Any = None,
        poses: PoseSource | None = None,
        ops: OpSource | None = None,
    ) -> None:
        self.config = config or ParticipantConfig()
        self.clock = clock
        self.client = SignalingClient(server_url, token, ssl=ssl)
        self.monitor = LatencyMonitor()
        self.counters: Counter[str] = Counter()
        self.index = 0
        self.name = ""
        self.room = ""
        self.on_pose: Callable[[PoseRecord, float | None], None] | None = None
        self.on_op: Callable[[StateOp, float | None], None] | None = None
        #: Called once per own op that a peer or the relay refused (docs/roles.md), with the first refusal.
        self.on_refused: Callable[[StateRefusal], None] | None = None
        #: The role the join token gives (``role`` is the role now, after any grant during the session).
        self.token_role = ""
        # Observers for a recorder: each message this participant sends (channel, bytes, its sender time),
        # and each signaling message before it is handled (peer-joined, peer-left...).
        self.on_sent: Callable[[str, bytes, float], None] | None = None
        self.on_signal: Callable[[dict[str, Any]], None] | None = None
        self.network = None  # the fault-injection proxies (net.faults.FaultyNetwork) when config.faults is set
        if self.config.faults is not None:
            from net.faults import FaultyNetwork  # noqa: PLC0415 - only fault-injection runs need the proxies

            self.network = FaultyNetwork(self.config.faults)
        self._pose_source = poses
        self._op_source = ops
        self.clock_sync = ClockSync(self)
        self.roster = Roster(self.clock_sync.relay_clock, self.counters)
        self.link_set = Links(self)
        self.sync = StateSync(self)
        self.poses = PoseStream(self)
        self.one_way = OneWay()
        self._tasks: list[asyncio.Task[Any]] = []
        self.stopping = False
        self.started = 0.0
        self.cpu_started = 0.0
        self.joined = asyncio.Event()
        # Set once the room's state is in (first snapshot merged, or nobody else was there): a participant
        # that rejoins after a crash must learn its own last op sequence before making new ops.
        self.caught_up = asyncio.Event()
        #: Time without the signaling server (its connection dropped until a rejoin succeeded).
        self.outages = SignalingOutages()
        self.backoff = Backoff()

    # ------------------------------------------------------------------ the parts' state, by its old names

    @property
    def links(self) -> dict[str, PeerLink]:
        """The peer links by remote name (``RELAY_ID`` for the relay)."""
        return self.link_set.links

    @property
    def remotes(self) -> dict[int, RemotePeer]:
        """The remote participants by index."""
        return self.roster.remotes

    @property
    def topology(self) -> str:
        """``mesh`` or ``relay``."""
        return self.roster.topology

    @property
    def state(self) -> SharedState:
        """The shared consultation state."""
        return self.sync.state

    @property
    def role(self) -> str:
        """This participant's role now: the latest ``SET_ROLE`` for it, else its token's (docs/roles.md)."""
        return self.sync.role_of(self.index)

    @property
    def relay_clock(self) -> ClockEstimator:
        """Clock of the relay (participant 0), from its answers to our pings in a relay room."""
        return self.clock_sync.relay_clock

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> dict[str, Any]:
        """Join the room and start streaming; returns the ``welcome`` message."""
        self.started = time.monotonic()
        self.cpu_started = time.process_time()
        # The window in which latency is recorded, on the monotonic clock.
        to_monotonic = self.started - time.time()
        cfg = self.config
        from_unix = -math.inf if cfg.measure_from is None else cfg.measure_from + to_monotonic
        self.one_way.measure_from = max(self.started + cfg.warmup_s, from_unix)
        self.one_way.measure_until = math.inf if cfg.measure_until is None else cfg.measure_until + to_monotonic
        welcome = await self.client.connect()
        self.index = int(welcome["index"])
        self.name = str(welcome["participant"])
        self.room = str(welcome["room"])
        self.token_role = str(welcome.get("role", ""))
        self.roster.set_topology(str(welcome["topology"]))
        self.sync.joined(self.index)
        for peer in welcome["peers"]:
            self.roster.remember(peer)
        self.joined.set()
        if not welcome["peers"]:
            self.caught_up.set()
        loops = (self._signaling_loop(), self.poses.loop(self._pose_source), self._report_loop(),
                 self.sync.ops_loop(self._op_source), self.link_set.liveness_loop())  # fmt: skip
        self._tasks = [asyncio.ensure_future(c) for c in loops]
        if self.topology == "relay":
            await self.link_set.offer(RELAY_ID)
        else:
            for peer in welcome["peers"]:
                await self.link_set.offer(peer["participant"])
        return welcome

    async def run(self, duration_s: float, stop: asyncio.Event | None = None) -> dict[str, Any]:
        """Join, take part for ``duration_s`` seconds (or until ``stop`` is set), leave; returns :meth:`report`."""
        await self.start()
        try:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for((stop or asyncio.Event()).wait(), duration_s)
        finally:
            report = self.report()
            await self.stop()
        return report

    async def stop(self) -> None:
        """Leave the room and close every connection."""
        self.stopping = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.link_set.close()
        await self.client.close()
        if self.network is not None:
            self.network.close()

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run ``coro`` in the background until :meth:`stop`."""
        task = asyncio.ensure_future(coro)
        # Finished ones go (their errors logged): a long session with many rebuilds would keep every watchdog.
        running = []
        for t in self._tasks:
            if not t.done():
                running.append(t)
            elif not t.cancelled() and t.exception() is not None:
                log.debug("%s: a background task failed: %r", self.name, t.exception())
        self._tasks = running
        self._tasks.append(task)

    # ------------------------------------------------------------------ what the caller does

    def make_op(self, kind: OpKind | int, payload: Mapping[str, Any]) -> StateOp:
        """Apply a local op to the shared state and send it to every open link.

        A participant that rejoins a room should wait for ``caught_up`` first, so that its op
        sequence continues where its previous session left it.

        Raises
        ------
        ProtocolError
            The payload does not fit the op kind's schema.
        OpRefusedError
            This participant's role does not allow the op (``net.roles``): nothing applied or sent.
        """
        return self.sync.make_op(kind, payload)

    def send_pose(self, poses: TrackedPoses, sampled_at: float | None = None) -> int:
        """Send one pose record (``head``/``left``/``right``/``pointer``) to every open link, stamped with
        ``sampled_at`` (this participant's clock) or now; returns sends."""
        return self.poses.send(poses, sampled_at)

    def stats_report(self) -> dict[str, Any]:
        """Compact report for the signaling server's ``/stats`` (per-link figures, ``links``)."""
        return stats_report(self)

    def report(self) -> dict[str, Any]:
        """The end-of-session JSON report: latency, clocks, traffic, state digest, CPU and memory."""
        return session_report(self)

    # ------------------------------------------------------------------ signaling

    async def _signaling_loop(self) -> None:
        while not self.stopping:
            try:
                message = await self.client.recv()
            except SignalingClosedError as exc:
                if self.stopping:
                    return
                try:
                    await self._reconnect(exc)
                except SignalingRefusedError as refused:
                    # 401: our credentials are revoked, expired or stale (or the server has another secret):
                    # no retry can succeed. The links carry on until the peers drop them.
                    self.counters["rejoin_refused"] += 1
                    log.warning("%s: signaling refuses our rejoin for good (%s); no more attempts", self.name, refused)
                    return
                continue
            try:
                if self.on_signal is not None:
                    self.on_signal(message)
                await self._on_signaling(message)
            except (NetError, KeyError, TypeError, ValueError) as exc:
                # A message that does not fit the schema is counted and skipped; the session goes on.
                self.counters["signal_errors"] += 1
                log.warning("%s: bad signaling message %r: %s", self.name, message.get("type"), exc)

    async def _reconnect(self, closed: SignalingClosedError) -> None:
        """One rejoin attempt after the back-off's next delay; the outage is logged once at each end."""
        if self.outages.begin(time.monotonic()):
            log.warning("%s: signaling lost (%s); keeping %d open link(s), rejoining with back-off",
                        self.name, closed, len(self.link_set.open_links()))
        await asyncio.sleep(self.backoff.next_delay())
        if self.stopping:
            return
        try:
            await self._rejoin()
        except SignalingRefusedError as exc:
            if exc.status == 401:
                raise
            self.outages.attempts += 1  # full, busy, seat still held: worth another try
            log.debug("%s: rejoin refused: %s", self.name, exc)
            return
        except NetError as exc:
            log.debug("%s: rejoin failed: %s", self.name, exc)
            if not self.client.connected:
                self.outages.attempts += 1
                return
        took = self.outages.end(time.monotonic())
        log.info("%s: signaling back after %.2f s (%d attempt(s)); %d link(s) kept",
                 self.name, took, self.backoff.attempts, len(self.link_set.open_links()))
        self.backoff.reset()

    async def _rejoin(self) -> None:
        """Rejoin claiming our index; keep every open link (the peers are still there), offer where none is open."""
        self.client.claim_index = self.index
        welcome = await self.client.connect()
        index = int(welcome["index"])
        if index != self.index:
            # Someone else holds ours (a server restarted without its index file let a newcomer in first):
            # our next ops go under the new index; a split this leaves is mended through the digests.
            self.counters["index_reassigned"] += 1
            log.warning("%s: signaling gave us index %d instead of our %d; continuing as %d", self.name, index, self.index, index)
            self.index = index
            self.sync.renumbered(index)
        topology = str(welcome["topology"])
        # Not "resumed" (renumbered, or the others were told we left): they drop their links to us and
        # wait for our offers, as for a newcomer. The relay runs inside the server: after a restart it
        # is a new one. And a topology change replaces every connection anyway.
        rebuild = welcome.get("resumed") is not True or topology == "relay" or topology != self.topology
        self.roster.set_topology(topology)
        for peer in welcome["peers"]:
            self.roster.remember(peer)
        if rebuild:
            await self.link_set.drop_all()
        targets = [RELAY_ID] if self.topology == "relay" else [p["participant"] for p in welcome["peers"]]
        for target in targets:
            link = self.links.get(target)
            if link is None or not link.is_open:
                await self.link_set.drop(target)
                await self.link_set.offer(target)

    async def _on_signaling(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "peer-joined":
            remote = self.roster.remember(message["peer"])
            link = self.links.get(remote.name)
            if message.get("resumed") is True and link is not None and link.is_open:
                return  # it only lost signaling (a server restart) and keeps its open links, as we do
            self.poses.newest.forget(remote.index)
            if self.topology == "mesh":
                # It (re)joined later than us, so it offers; an old connection to it is stale.
                await self.link_set.drop(remote.name)
        elif kind == "peer-left":
            name = str(message.get("participant"))
            index = self.roster.index_of(name)
            if index is not None:
                self.poses.newest.forget(index)
            if self.topology == "mesh":
                await self.link_set.drop(name)
        elif kind == "topology":
            if message.get("mode") == "relay" and self.topology != "relay":
                log.info("%s: room switched to relay mode", self.name)
                self.roster.set_topology("relay")
                await self.link_set.drop_all()
                await self.link_set.offer(RELAY_ID)
        elif kind == "signal":
            await self.link_set.on_signal(str(message.get("from")), message.get("data"))
        elif kind == "error":
            self.counters["server_errors"] += 1
            log.info("%s: server said: %s", self.name, message.get("reason"))

    async def on_link_open(self, link: PeerLink) -> None:
        """A link opened (state sync has already asked it for the state): keep its clock in step."""
        log.info("%s: link to %s open", self.name, link.remote)
        await self.clock_sync.ping_loop(link)

    async def _report_loop(self) -> None:
        while not self.stopping:
            await asyncio.sleep(self.config.report_interval_s)
            self.sync.send_digests()
            self.clock_sync.share_if_linked()
            with contextlib.suppress(NetError):
                await self.client.send_stats(self.stats_report())

    # ------------------------------------------------------------------ receiving

    def on_message(self, link: PeerLink, label: str, data: bytes) -> None:
        """Route a data-channel message from ``link`` to the part whose channel it is."""
        now = self.clock()
        try:
            if label == "pose":
                if is_pose_bundle(data):
                    self.poses.on_bundle(link, split_pose_bundle(data), now)
                else:
                    self.poses.apply(link, [(pose_key(data), bytes(data))], now)
            elif label == "state":
                self.sync.on_state(link, decode_state(data), now)
            elif label == "clock":
                self.clock_sync.on_clock(link, decode_clock(data), now)
        except ProtocolError as exc:
            self.counters[f"malformed_{label}"] += 1
            log.debug("%s: dropped a message from %s: %s", self.name, link.remote, exc)
