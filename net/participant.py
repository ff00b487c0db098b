"""A consultation participant without a headset: joins through signaling, streams poses, shares state, measures.

:class:`Participant` is what ``medverse consult join`` runs, and what tests and ``bench/sync.py`` start
in separate processes. It

- joins a room through :class:`net.signaling_client.SignalingClient` and keeps one
  :class:`net.peer.PeerLink` per remote (mesh) or one to the server's relay (relay mode), following the
  offer rule of docs/signaling.md;
- sends its poses on the ``pose`` channel at the display rate (90 Hz), paced on absolute deadlines;
- keeps a :class:`net.state.SharedState`: local ops go to every link, received ops are applied once,
  every link that opens is asked for a snapshot, and state digests are exchanged every second so that
  a peer that falls behind asks again (anti-entropy);
- pings every mesh remote on the ``clock`` channel (``net.clock.ClockEstimator`` per remote), or in a
  relay room only the relay, sharing where its clock stands against the relay's so that the others
  map its times through the relay's clock (``ClockShare``, ``net.clock.RelayedClock``), and records
  the one-way latency of every applied pose and op in a :class:`net.latency.LatencyMonitor`, published
  to the signaling server's ``/stats`` every second and returned in the final report.

aiortc has no ICE restart, so a link that fails (aiortc says so, or nothing at all has arrived on it for
``liveness_timeout_s``: remotes and the relay answer pings, so a healthy link is never that silent) is
closed and the side that offered it offers a new connection through signaling, again every
``connect_timeout_s`` while the network stays down. When a link to a remote (or to the relay) it was
linked with before opens, a participant holds its live ops back from that link, asks for a snapshot
(the remote's; through the relay, any participant's), resends (in sequence order, from a log of its last
``resend_log`` ops) those of its own ops that the snapshot lacks, and only then sends live ops on it. A
mesh remote resumes the same way, so its snapshot is merged once its resent ops are in (at most 2 s
later): every op arrives once, in order, and the snapshot only fills in what no resend carries. Through
the relay the snapshot is merged at once: the ops the others made meanwhile come from it.

Clock pings carry the requester's index in the upper 16 bits of ``ping_id`` and snapshot requests in
the upper 16 bits of ``request_id``, so that the relay can route pongs and snapshot chunks back to the
requester from their header alone; the lower 16 bits of ``request_id`` name the participant whose
snapshot is wanted (0: any), so that through the relay one peer answers, not the whole room.

Bad input from a remote (malformed, spoofed, unknown) is dropped and counted in ``counters``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import resource
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from net.clock import ClockEstimator, RelayedClock
from net.errors import NetError, ProtocolError
from net.latency import LatencyMonitor
from net.peer import PeerError, PeerLink
from net.protocol import (
    RELAY_POSE_LEAD_S,
    RELAY_TICK_HZ,
    ClockPing,
    ClockPong,
    ClockShare,
    NewestWins,
    OpKind,
    PoseRecord,
    SnapshotAssembler,
    SnapshotChunk,
    SnapshotRequest,
    StateDigest,
    StateOp,
    TrackedPoses,
    WirePose,
    chunk_snapshot,
    decode_clock,
    decode_pose,
    decode_state,
    encode_clock,
    encode_pose,
    encode_state,
    is_pose_bundle,
    parse_json,
    pose_key,
    seq_next,
    split_pose_bundle,
)
from net.signaling_client import SignalingClient, SignalingClosedError
from net.state import SharedState
from net.tokens import RELAY_ID

if TYPE_CHECKING:
    from net.faults import FaultPlan

log = logging.getLogger(__name__)

#: Pings to the relay go this many times less often than to a mesh remote (``_clock_interval``).
RELAY_PING_FACTOR = 4.0


@dataclass
class ParticipantConfig:
    """How a headless participant behaves.

    Attributes
    ----------
    pose_rate_hz : float
        Pose records sent per second to each link (0: send none).
    clock_interval_s : float
        Seconds between clock pings on each link once synchronised (to each mesh remote, or to the
        relay, whose answers also time the poses and whose clock the others' shares refer to).
    clock_burst : int
        Pings sent 50 ms apart when a link opens, so the offset is known quickly.
    ops_rate_hz : float
        Scripted state ops per second (0: none); made between ``ops_start_s`` and ``ops_stop_s``
        after joining.
    ops_start_s, ops_stop_s : float
        Window of the scripted ops, seconds after joining.
    relay_pose_lead_s : float
        In a relay room, how long before the relay's flush tick a pose should arrive there: the margin
        for scheduling jitter (the one-way trip to the relay is added to it).
    ops_stop_at : float or None
        UNIX time at which scripted ops stop, whatever ``ops_stop_s`` says: processes that start
        at different moments (a benchmark's room) stop together, so their final states can be compared.
    warmup_s : float
        Latency samples of the first seconds after joining are not recorded (connection set-up and
        the clock filter filling up are not what a benchmark wants to measure).
    measure_from, measure_until : float or None
        UNIX times outside which latency samples are not recorded either: processes that join at
        different moments (a benchmark's room) then all measure the same window, one in which every
        one of them is in the room, rather than each its own.
    report_interval_s : float
        Seconds between stats reports to the signaling server and state digests to the peers.
    faults : FaultPlan or None
        Loss/delay/outages put in front of this participant's connections (``net.faults``).
    seed : int or None
        Seed of the scripted ops (default: the participant's index).
    liveness_timeout_s : float
        An open mesh link on which nothing at all has arrived for this long (seconds) is declared dead and
        closed, and the offering side builds a new one through signaling (0 or inf: never). Clock pings
        go every ``clock_interval_s`` and poses at ``pose_rate_hz``, so a live link is never silent for
        long. The default, 12 s, lets an outage of up to 10 s heal on the same connection (SCTP
        retransmits what was lost) and makes a longer one a rebuild well before aioice's consent check
        gives up (about 30 s).
    connect_timeout_s : float
        A rebuilt link (offered again after a failure) that has not opened after this long (seconds) is
        given up and offered anew (0 or inf: never). While the network is down every attempt fails; a
        fresh attempt starts its ICE checks with short retransmission intervals (0.5, 1, 2 s...), so the
        rebuild follows the network's return within about this bound instead of after an old attempt's
        backed-off retry. First offers are not timed: a crowded room may take long to set up.
    resend_log : int
        How many of this participant's own latest ops are kept to resend after a link is rebuilt
        (older ones still reach a remote through snapshots, just not as individual ops).
    """

    pose_rate_hz: float = 90.0
    clock_interval_s: float = 0.5
    clock_burst: int = 10
    ops_rate_hz: float = 0.0
    ops_start_s: float = 0.5
    ops_stop_s: float = math.inf
    ops_stop_at: float | None = None
    relay_pose_lead_s: float = RELAY_POSE_LEAD_S
    warmup_s: float = 0.0
    measure_from: float | None = None
    measure_until: float | None = None
    report_interval_s: float = 1.0
    faults: FaultPlan | None = None
    seed: int | None = None
    liveness_timeout_s: float = 12.0
    connect_timeout_s: float = 3.0
    resend_log: int = 10_000


@dataclass
class RemotePeer:
    """What is known of one remote participant: its name, clock and latest pose."""

    name: str
    index: int
    clock: ClockEstimator | RelayedClock = field(default_factory=ClockEstimator)  # RelayedClock in a relay room
    pose_message: bytes | None = None  # the newest pose applied, as it came (checked): ``pose`` decodes it
    digest: tuple[int, bytes] | None = None
    digest_link: PeerLink | None = None  # where the latest digest came from, not yet compared with ours
    behind: int = 0  # consecutive digests showing this remote ahead of us
    _pose: PoseRecord | None = field(default=None, repr=False)

    @property
    def pose(self) -> PoseRecord | None:
        """The newest pose applied, decoded from ``pose_message`` when first asked for: a renderer wants
        each remote's pose once a frame, while a room of sixteen brings 1,350 a second."""
        if self._pose is None and self.pose_message is not None:
            self._pose = decode_pose(self.pose_message)
        return self._pose

    def set_pose(self, message: bytes) -> None:
        """Take ``message`` (checked by ``pose_key``) as the newest pose."""
        self.pose_message = message
        self._pose = None


def procedural_poses(t: float, index: int) -> TrackedPoses:
    """Head and two hands of a participant standing round the twin, swaying: a pure function of time.

    Parameters
    ----------
    t : float
        Seconds.
    index : int
        Participant index; spreads participants round a 1 m circle.

    Returns
    -------
    TrackedPoses
        ``head``, ``left`` and ``right`` poses (metres, unit quaternions).
    """
    angle = index * 0.9
    cx, cz = math.sin(angle), math.cos(angle)
    sway = 0.05 * math.sin(2 * math.pi * 0.5 * t + index)
    half = (angle + 0.2 * math.sin(t)) / 2
    q = (0.0, math.sin(half), 0.0, math.cos(half))
    head = WirePose((cx + sway, 1.65, cz), q)
    left = WirePose((cx - 0.2, 1.1 + 0.1 * math.sin(3 * t), cz - 0.3), q)
    right = WirePose((cx + 0.2, 1.1 + 0.1 * math.cos(3 * t), cz - 0.3), q)
    return {"head": head, "left": left, "right": right}


def peak_rss_kb() -> int:
    """This process's peak resident memory, kB.

    ``VmHWM`` from ``/proc/self/status`` where there is one: a process started by fork and exec from a
    large parent (a test runner, a benchmark) inherits that parent's peak in ``ru_maxrss`` on Linux,
    which would make every participant look as big as its launcher.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)

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
    """

    def __init__(
        self,
        server_url: str,
        token: str,
        config: ParticipantConfig | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        ssl: Any = None,
    ) -> None:
        self.config = config or ParticipantConfig()
        self.clock = clock
        self.client = SignalingClient(server_url, token, ssl=ssl)
        self.monitor = LatencyMonitor()
        self.counters: Counter[str] = Counter()
        self.links: dict[str, PeerLink] = {}
        self.remotes: dict[int, RemotePeer] = {}
        #: Clock of the relay (participant 0), from its answers to our pings in a relay room.
        self.relay_clock = ClockEstimator()
        self.index = 0
        self.name = ""
        self.room = ""
        self.topology = "mesh"
        self.state = SharedState(0)
        self.on_pose: Callable[[PoseRecord, float | None], None] | None = None
        self.on_op: Callable[[StateOp, float | None], None] | None = None
        self._newest = NewestWins()
        self._assemblers: dict[int, SnapshotAssembler] = {}
        self._offered: set[str] = set()  # remotes this side offers to (it re-offers after a failure)
        # Resuming a rebuilt link (see _resume): own ops kept for resending, remotes that had an open
        # link before, and links waiting for the remote's snapshot before live ops go on them.
        self._own_ops: deque[StateOp] = deque(maxlen=max(0, self.config.resend_log))
        self._was_linked: set[str] = set()
        self._resuming: set[PeerLink] = set()
        self._pose_seq = 0
        self._wake_ups: deque[float] = deque(maxlen=90)  # how late the pose loop woke, seconds
        self._wake_up_p90 = 0.0
        self._ping_counter = 0
        self._last_share = -math.inf
        self._last_request = -math.inf
        self._tasks: list[asyncio.Task[Any]] = []
        self._stopping = False
        self.network = None  # the fault-injection proxies (net.faults.FaultyNetwork) when config.faults is set
        if self.config.faults is not None:
            from net.faults import FaultyNetwork  # noqa: PLC0415 - only fault-injection runs need the proxies

            self.network = FaultyNetwork(self.config.faults)
        self._started = 0.0
        self._measure_from, self._measure_until = 0.0, math.inf
        self._cpu0 = 0.0
        self.joined = asyncio.Event()
        # Set once the room's state is in (first snapshot merged, or nobody else was there): a participant
        # that rejoins after a crash must learn its own last op sequence before making new ops.
        self.caught_up = asyncio.Event()

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> dict[str, Any]:
        """Join the room and start streaming; returns the ``welcome`` message."""
        self._started = time.monotonic()
        self._cpu0 = time.process_time()
        # The window in which latency is recorded, on the monotonic clock.
        to_monotonic = self._started - time.time()
        cfg = self.config
        from_unix = -math.inf if cfg.measure_from is None else cfg.measure_from + to_monotonic
        self._measure_from = max(self._started + cfg.warmup_s, from_unix)
        self._measure_until = math.inf if cfg.measure_until is None else cfg.measure_until + to_monotonic
        welcome = await self.client.connect()
        self.index = int(welcome["index"])
        self.name = str(welcome["participant"])
        self.room = str(welcome["room"])
        self._set_topology(str(welcome["topology"]))
        self.state = SharedState(self.index)
        for peer in welcome["peers"]:
            self._remember(peer)
        self.joined.set()
        if not welcome["peers"]:
            self.caught_up.set()
        loops = (self._signaling_loop(), self._pose_loop(), self._report_loop(), self._ops_loop(), self._liveness_loop())
        self._tasks = [asyncio.ensure_future(c) for c in loops]
        if self.topology == "relay":
            await self._offer(RELAY_ID)
        else:
            for peer in welcome["peers"]:
                await self._offer(peer["participant"])
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
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for link in list(self.links.values()):
            await link.close()
        self.links.clear()
        await self.client.close()
        if self.network is not None:
            self.network.close()

    # ------------------------------------------------------------------ signaling

    def _remember(self, peer: dict[str, Any]) -> RemotePeer:
        index, name = int(peer["index"]), str(peer["participant"])
        remote = self.remotes.get(index)
        if remote is None or remote.name != name:
            remote = self.remotes[index] = RemotePeer(name, index, clock=self._remote_clock())
        return remote

    def _remote_clock(self) -> ClockEstimator | RelayedClock:
        """A new clock for a remote: pinged directly in a mesh, known through the relay in a relay room."""
        return RelayedClock(self.relay_clock) if self.topology == "relay" else ClockEstimator()

    def _set_topology(self, topology: str) -> None:
        """Follow the room's topology; on a change every remote's clock is learnt afresh, the new way."""
        if topology != self.topology:
            self.topology = topology
            for remote in self.remotes.values():
                remote.clock = self._remote_clock()

    def _index_of(self, name: str) -> int | None:
        for remote in self.remotes.values():
            if remote.name == name:
                return remote.index
        return None

    async def _signaling_loop(self) -> None:
        while not self._stopping:
            try:
                message = await self.client.recv()
            except SignalingClosedError as exc:
                if self._stopping:
                    return
                log.warning("%s: signaling closed (%s); rejoining", self.name, exc)
                await asyncio.sleep(0.5)
                with contextlib.suppress(NetError):
                    await self._rejoin()
                continue
            try:
                await self._on_signaling(message)
            except (NetError, KeyError, TypeError, ValueError) as exc:
                # A message that does not fit the schema is counted and skipped; the session goes on.
                self.counters["signal_errors"] += 1
                log.warning("%s: bad signaling message %r: %s", self.name, message.get("type"), exc)

    async def _rejoin(self) -> None:
        welcome = await self.client.connect()
        self._set_topology(str(welcome["topology"]))
        for peer in welcome["peers"]:
            self._remember(peer)
        for name in list(self.links):
            await self._drop_link(name)
        targets = [RELAY_ID] if self.topology == "relay" else [p["participant"] for p in welcome["peers"]]
        for target in targets:
            await self._offer(target)

    async def _on_signaling(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "peer-joined":
            remote = self._remember(message["peer"])
            self._newest.forget(remote.index)
            if self.topology == "mesh":
                # It (re)joined later than us, so it offers; an old connection to it is stale.
                await self._drop_link(remote.name)
        elif kind == "peer-left":
            name = str(message.get("participant"))
            index = self._index_of(name)
            if index is not None:
                self._newest.forget(index)
            if self.topology == "mesh":
                await self._drop_link(name)
        elif kind == "topology":
            if message.get("mode") == "relay" and self.topology != "relay":
                log.info("%s: room switched to relay mode", self.name)
                self._set_topology("relay")
                for name in list(self.links):
                    await self._drop_link(name)
                await self._offer(RELAY_ID)
        elif kind == "signal":
            await self._on_signal(str(message.get("from")), message.get("data"))
        elif kind == "error":
            self.counters["server_errors"] += 1
            log.info("%s: server said: %s", self.name, message.get("reason"))

    async def _on_signal(self, sender: str, data: Any) -> None:
        if not isinstance(data, dict):
            raise PeerError(f"signal from {sender} without a data object")
        if data.get("type") == "offer":
            if self.topology == "relay":
                # In relay mode everyone offers to the relay and the relay never offers.
                raise PeerError(f"offer from {sender} in a relay room")
            link = self._make_link(sender)
            try:
                answer = await link.handle_signal(data)
            except PeerError:
                await link.close()  # an unusable offer leaves the existing connection alone
                raise
            assert answer is not None
            await self._drop_link(sender)
            self.links[sender] = link
            await self.client.send_signal(sender, answer)
        elif data.get("type") == "answer":
            offered = self.links.get(sender)
            if offered is None:
                raise PeerError(f"answer from {sender} without an offer")
            await offered.handle_signal(data)
        elif data.get("type") == "closed" and sender == RELAY_ID:
            # The relay gave our link up (it heard nothing on it): build a new one now, not after our own timeout.
            given_up = self.links.get(sender)
            if given_up is not None and given_up.state != "closed":
                self.counters["links_closed_by_relay"] += 1
                log.info("%s: the relay closed our link (%s); offering again", self.name, data.get("reason"))
                await given_up.close()  # -> "closed" -> _link_state_changed re-offers
        else:
            raise PeerError(f"signal from {sender} of unknown type {data.get('type')!r}")

    def _new_link(self, remote: str) -> PeerLink:
        link = self._make_link(remote)
        self.links[remote] = link
        return link

    def _make_link(self, remote: str) -> PeerLink:
        net = self.network
        link = PeerLink(
            remote,
            self._on_message,
            local_sdp_filter=net.rewrite_sdp if net else None,
            remote_sdp_filter=net.rewrite_sdp if net else None,
        )
        link.on_state_change = self._link_state_changed
        return link

    async def _offer(self, remote: str, *, retry: bool = False) -> None:
        if (remote == RELAY_ID) != (self.topology == "relay"):
            return  # the room switched topology while offers were being made
        self._offered.add(remote)
        link = self._new_link(remote)
        offer = await link.create_offer()
        if self.links.get(remote) is link and not self._stopping:
            await self.client.send_signal(remote, offer)
            timeout = self.config.connect_timeout_s
            if retry and 0 < timeout < math.inf:
                self._spawn(self._watch_connect(link, timeout))

    async def _watch_connect(self, link: PeerLink, timeout: float) -> None:
        """Give up an offered link that has not opened in ``timeout`` s; closing it makes a new offer."""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(link.opened.wait(), timeout)
        if not link.opened.is_set() and self.links.get(link.remote) is link and not self._stopping:
            self.counters["connect_timeouts"] += 1
            log.info("%s: link to %s not open after %.1f s; offering again", self.name, link.remote, timeout)
            await link.close()  # -> "closed" -> _link_state_changed re-offers

    async def _liveness_loop(self) -> None:
        """Close open links silent for ``liveness_timeout_s`` (a dead path aiortc cannot restart).

        A healthy link is never that silent: a mesh remote answers pings, and so does the relay (as
        participant 0), even for a participant alone in its room.
        """
        timeout = self.config.liveness_timeout_s
        if not 0 < timeout < math.inf:
            return
        while not self._stopping:
            await asyncio.sleep(min(0.5, timeout / 4))
            for link in list(self.links.values()):
                if link.is_open and link.silent_for() > timeout:
                    self.counters["links_dead"] += 1
                    log.warning("%s: nothing from %s for %.1f s; closing the link", self.name, link.remote, link.silent_for())
                    await link.close()  # -> "closed" -> the offering side builds a new connection

    async def _drop_link(self, remote: str) -> None:
        link = self.links.pop(remote, None)
        if link is not None:
            self._resuming.discard(link)
            link.on_state_change = None
            await link.close()

    def _link_state_changed(self, link: PeerLink, state: str) -> None:
        if state == "open":
            self._spawn(self._on_link_open(link))
        elif state in ("failed", "closed") and self.links.get(link.remote) is link and not self._stopping:
            self._resuming.discard(link)
            self.counters["links_failed"] += 1
            # aiortc has no ICE restart: the offering side builds a new connection through signaling.
            if link.remote in self._offered and (link.remote == RELAY_ID or self._index_of(link.remote) is not None):
                self._spawn(self._reoffer(link))

    async def _reoffer(self, link: PeerLink) -> None:
        await asyncio.sleep(0.2)
        if self.links.get(link.remote) is link and not self._stopping:
            await self._drop_link(link.remote)
            with contextlib.suppress(NetError):
                await self._offer(link.remote, retry=True)

    def _spawn(self, coro: Any) -> None:
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

    async def _on_link_open(self, link: PeerLink) -> None:
        log.info("%s: link to %s open", self.name, link.remote)
        remote_index = 0 if link.remote == RELAY_ID else self._index_of(link.remote)
        if link.remote in self._was_linked and remote_index is not None:
            # A rebuilt link: no live op goes on it until a snapshot says which of our ops the other side
            # lacks, so that those are resent first and every op arrives in sequence order (_resume).
            # Through the relay any participant's snapshot will do (0: the relay picks one): everyone
            # got the same ops from the relay, in the same order.
            self._resuming.add(link)
            self._request_snapshot(link, remote_index)
            self._spawn(self._until_resumed(link, remote_index))
        else:
            self._request_snapshot(link)
        self._was_linked.add(link.remote)
        self._spawn(self._until_caught_up(link))
        for _ in range(self.config.clock_burst):
            if not link.is_open:
                return
            self._ping(link)
            await asyncio.sleep(0.05)
        while link.is_open and not self._stopping:
            await asyncio.sleep(self._clock_interval(link))
            self._ping(link)

    # ------------------------------------------------------------------ sending

    async def _until_caught_up(self, link: PeerLink) -> None:
        """Ask again each second until a snapshot arrives (the relay may have had nobody to ask yet)."""
        while not self.caught_up.is_set() and link.is_open and not self._stopping:
            await asyncio.sleep(1.0)
            if not self.caught_up.is_set() and link.is_open:
                self._request_snapshot(link)

    async def _until_resumed(self, link: PeerLink, remote_index: int) -> None:
        """Ask again each second until the remote's snapshot resumes ``link`` (a request can cross a close)."""
        while link in self._resuming and link.is_open and not self._stopping:
            await asyncio.sleep(1.0)
            if link in self._resuming and link.is_open:
                self._request_snapshot(link, remote_index)

    def _resume(self, link: PeerLink, remote: int, body: bytes) -> bool:
        """Resend, in order, our ops that the snapshot ``body`` from ``remote`` lacks; open ``link`` to live ops.

        Returns True when the snapshot holds ops of ``remote`` that we lack: the remote resends those
        (it resumes too), so merging the snapshot should wait for them (see :meth:`_merge_later`).
        """
        have = _applied(body, self.index)
        missing = [op for op in self._own_ops if op.seq not in have]
        for op in missing:
            link.send("state", encode_state(op))
        self._resuming.discard(link)
        self.counters["ops_resent"] += len(missing)
        log.info("%s: link to %s resumed (%d ops resent)", self.name, link.remote, len(missing))
        theirs = _applied(body, remote)
        return bool(theirs) and not self.state.has(remote, max(theirs))

    async def _merge_later(self, remote: int, body: bytes, wait_s: float = 2.0) -> None:
        """Merge a snapshot once ``remote``'s resent ops are in (they come in order), or after ``wait_s``."""
        theirs = _applied(body, remote)
        deadline = time.monotonic() + wait_s
        while not self.state.has(remote, max(theirs)) and time.monotonic() < deadline and not self._stopping:
            await asyncio.sleep(0.02)
        self._merge(remote, body)

    def _merge(self, source: int, body: bytes) -> None:
        try:
            added = self.state.merge_snapshot(body)
        except ProtocolError as exc:
            self.counters["malformed_state"] += 1
            log.debug("%s: dropped a snapshot from %d: %s", self.name, source, exc)
            return
        self.counters["snapshots_merged"] += 1
        self.caught_up.set()
        log.info("%s: merged a snapshot from %d (%d new ops)", self.name, source, added)

    def _clock_interval(self, link: PeerLink) -> float:
        """Seconds between two pings on ``link`` once the burst is over: ``clock_interval_s`` to a mesh
        remote, four times that to the relay. Only the relay answers there (the others' clocks come from
        their shares), its clock drifts as slowly as any, and poses keep the link busy; each ping costs
        the participant two wake-ups (ping, pong) in a room where every wake-up competes with sixteen.
        Never more than a quarter of the liveness timeout: the pongs are what a healthy link is heard by."""
        cfg = self.config
        if link.remote != RELAY_ID:
            return cfg.clock_interval_s
        slowest = cfg.liveness_timeout_s / 4 if 0 < cfg.liveness_timeout_s < math.inf else math.inf
        return min(cfg.clock_interval_s * RELAY_PING_FACTOR, slowest)

    def _open_links(self) -> list[PeerLink]:
        return [link for link in self.links.values() if link.is_open]

    def _ping(self, link: PeerLink) -> None:
        self._ping_counter = (self._ping_counter + 1) & 0xFFFF
        ping = ClockPing(self.index, (self.index << 16) | self._ping_counter, self.clock())
        link.send("clock", encode_clock(ping))

    def _request_snapshot(self, link: PeerLink, source: int = 0) -> None:
        """Ask for a snapshot on ``link``; through the relay, from participant ``source`` (0: any one)."""
        # request_id: requester index in the upper 16 bits (the relay routes the chunks back by it),
        # the participant asked in the lower 16 (the relay asks only that one; 0 lets it choose).
        request = encode_state(SnapshotRequest(self.index, (self.index << 16) | (source & 0xFFFF)))
        self._last_request = time.monotonic()
        link.send("state", request)

    def make_op(self, kind: OpKind | int, payload: dict[str, Any]) -> StateOp:
        """Apply a local op to the shared state and send it to every open link.

        A participant that rejoins a room should wait for ``caught_up`` first, so that its op
        sequence continues where its previous session left it.

        Raises
        ------
        ProtocolError
            The payload does not fit the op kind's schema.
        """
        op = self.state.make_op(kind, payload, self.clock())
        self._own_ops.append(op)
        data = encode_state(op)
        for link in self._open_links():
            if link not in self._resuming:  # a resuming link gets it with the resent ops, in order
                link.send("state", data)
        self.counters["ops_sent"] += 1
        return op

    def send_pose(self, poses: TrackedPoses) -> int:
        """Send one pose record (``head``/``left``/``right``/``pointer``) to every open link; returns sends."""
        self._pose_seq = seq_next(self._pose_seq)
        record = PoseRecord(self.index, self._pose_seq, self.clock(), **poses)
        data = encode_pose(record)
        sent = sum(link.send("pose", data) for link in self._open_links())
        self.counters["poses_sent"] += 1
        return sent

    async def _pose_loop(self) -> None:
        rate = self.config.pose_rate_hz
        if rate <= 0:
            return
        period = 1.0 / rate
        due = self.clock()
        while not self._stopping:
            # Absolute deadlines: a late wake-up does not shift (or drift) the rest of the stream.
            due = self._next_pose_time(due, period)
            delay = due - self.clock()
            if delay < -period:  # fell behind by more than a frame: skip frames rather than burst
                due += int(-delay / period) * period
                self.counters["pose_frames_skipped"] += 1
                continue
            await asyncio.sleep(max(0.0, delay))
            self._note_wake_up(self.clock() - due)
            if self._open_links():
                self.send_pose(procedural_poses(self.clock(), self.index))

    def _note_wake_up(self, late: float) -> None:
        """Keep how late the pose loop wakes (timer granularity, a busy loop): the 90th percentile of the
        last 90 wake-ups is added to the lead before the relay's tick, so that 9 poses in 10 make it."""
        self._wake_ups.append(late)
        if len(self._wake_ups) == self._wake_ups.maxlen and self._pose_seq % 30 == 0:
            self._wake_up_p90 = max(0.0, sorted(self._wake_ups)[int(0.9 * len(self._wake_ups))])

    def _next_pose_time(self, last: float, period: float) -> float:
        """When the next pose goes out (our clock): one period after ``last``; in a relay room, at the
        relay's tick rate, the time that lands it at the relay ``relay_pose_lead_s`` before a primary
        tick (docs/protocol.md, "Sending in time for a tick"), at least half a period after ``last``.
        """
        link, relay = self.links.get(RELAY_ID), self.relay_clock
        if link is None or not link.is_open or not relay.synchronized or abs(period * RELAY_TICK_HZ - 1.0) > 0.01:
            return last + period
        lead = relay.min_rtt / 2 + self.config.relay_pose_lead_s + self._wake_up_p90
        tick = math.ceil(relay.to_remote(last + period / 2 + lead) * RELAY_TICK_HZ) / RELAY_TICK_HZ
        return relay.to_local(tick) - lead

    async def _ops_loop(self) -> None:
        cfg = self.config
        if cfg.ops_rate_hz <= 0:
            return
        rng = random.Random(cfg.seed if cfg.seed is not None else self.index)
        await asyncio.sleep(cfg.ops_start_s)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.caught_up.wait(), 10.0)
        period = 1.0 / cfg.ops_rate_hz
        counter = self.state.seq  # ids stay unique across a rejoin: "<index>:<counter>"
        while not self._stopping and time.monotonic() - self._started < cfg.ops_stop_s \
                and (cfg.ops_stop_at is None or time.time() < cfg.ops_stop_at):
            counter += 1
            kind, payload = scripted_op(rng, self.index, counter)
            self.make_op(kind, payload)
            await asyncio.sleep(period)

    async def _report_loop(self) -> None:
        while not self._stopping:
            await asyncio.sleep(self.config.report_interval_s)
            digest = encode_state(StateDigest(self.index, self.state.op_count, self.clock(), self.state.digest()))
            for link in self._open_links():
                link.send("state", digest)
            self._compare_digests()
            relay = self.links.get(RELAY_ID)
            if relay is not None and relay.is_open and self.relay_clock.synchronized:
                self._share_clock(relay, self.clock())
            with contextlib.suppress(NetError):
                await self.client.send_stats(self.stats_report())

    # ------------------------------------------------------------------ receiving

    def _on_message(self, link: PeerLink, label: str, data: bytes) -> None:
        now = self.clock()
        try:
            if label == "pose":
                if is_pose_bundle(data):
                    self._on_pose_bundle(link, split_pose_bundle(data), now)
                else:
                    self._apply_poses(link, [(pose_key(data), bytes(data))], now)
            elif label == "state":
                self._on_state(link, decode_state(data), now)
            elif label == "clock":
                self._on_clock(link, decode_clock(data), now)
        except ProtocolError as exc:
            self.counters[f"malformed_{label}"] += 1
            log.debug("%s: dropped a message from %s: %s", self.name, link.remote, exc)

    def _source(self, link: PeerLink, participant: int, what: str) -> RemotePeer | None:
        """The remote a message claims to come from, or None (counted) when it cannot be."""
        remote = self.remotes.get(participant)
        if remote is None:
            self.counters["unknown_participant"] += 1
            return None
        # Directly connected, a peer may speak only as itself; through the relay, the relay checks.
        if link.remote != RELAY_ID and remote.name != link.remote:
            self.counters["spoofed"] += 1
            log.debug("%s: %s from %s claims to be %s", self.name, what, link.remote, remote.name)
            return None
        return remote

    def _measuring(self) -> bool:
        """True within the measurement window (``measure_from``/``measure_until``, monotonic clock)."""
        return self._measure_from <= time.monotonic() < self._measure_until

    def _latency(self, remote: RemotePeer, sender_time: float, now: float, measuring: bool | None = None) -> float | None:
        """One-way latency of an update sent at ``sender_time`` (the remote's clock) and received at
        ``now`` (ours); None outside the measurement window or before the remote's clock is known."""
        if not (self._measuring() if measuring is None else measuring) or not remote.clock.synchronized:
            return None
        return now - remote.clock.to_local(sender_time)

    def _on_pose_bundle(self, link: PeerLink, messages: list[bytes], now: float) -> None:
        """Apply each pose of a relay's bundle on its own: one bad pose costs only itself."""
        if link.remote != RELAY_ID:  # only the relay bundles; a mesh peer sends its own poses alone
            self.counters["spoofed"] += 1
            return
        self.counters["pose_bundles"] += 1
        checked = []
        for raw in messages:
            try:
                checked.append((pose_key(raw), raw))
            except ProtocolError as exc:
                self.counters["malformed_pose"] += 1
                log.debug("%s: dropped a bundled pose: %s", self.name, exc)
        self._apply_poses(link, checked, now)

    def _apply_poses(self, link: PeerLink, poses: list[tuple[tuple[int, int, float], bytes]], now: float) -> None:
        """Apply checked pose messages (each with its ``pose_key``: participant, seq, sender time), newest
        wins. A pose is decoded only for ``on_pose`` or when someone reads ``RemotePeer.pose``."""
        measuring = self._measuring()
        accept, record = self._newest.accept, self.monitor.record
        applied = 0
        for (participant, seq, sender_time), raw in poses:
            remote = self._source(link, participant, "pose")
            if remote is None:
                continue
            if not accept(participant, seq):
                self.counters["poses_stale"] += 1
                continue
            remote.set_pose(raw)
            applied += 1
            latency = self._latency(remote, sender_time, now, measuring)
            if latency is not None:
                record(remote.name, "pose", latency, now)
            if self.on_pose is not None:
                pose = remote.pose
                assert pose is not None
                self.on_pose(pose, latency)
        self.counters["poses_applied"] += applied

    def _on_state(self, link: PeerLink, message: Any, now: float) -> None:
        if isinstance(message, StateOp):
            remote = self._source(link, message.participant, "op")
            if remote is None:
                return
            if not self.state.apply(message).applied:
                self.counters["ops_duplicate"] += 1
                return
            self.counters["ops_applied"] += 1
            latency = self._latency(remote, message.sender_time, now)
            if latency is not None:
                self.monitor.record(remote.name, "state", latency, now)
            if self.on_op is not None:
                self.on_op(message, latency)
        elif isinstance(message, SnapshotRequest):
            for chunk in chunk_snapshot(self.index, message.request_id, self.state.snapshot_bytes()):
                link.send("state", encode_state(chunk))
            self.counters["snapshots_sent"] += 1
        elif isinstance(message, SnapshotChunk):
            if message.snapshot_id >> 16 != self.index:
                self.counters["misrouted"] += 1
                return
            assembler = self._assemblers.setdefault(message.participant, SnapshotAssembler())
            body = assembler.add(message)
            if body is not None:
                source = self.remotes.get(message.participant)
                resuming = link in self._resuming and source is not None and link.remote in (source.name, RELAY_ID)
                # A mesh remote resumes too and resends its own ops: wait for them before merging.
                # Through the relay nobody else resumes, so the snapshot is merged at once.
                if resuming and self._resume(link, message.participant, body) and link.remote != RELAY_ID:
                    self._spawn(self._merge_later(message.participant, body))
                    return
                self._merge(message.participant, body)
        elif isinstance(message, StateDigest):
            remote = self._source(link, message.participant, "digest")
            if remote is None:
                return
            # Compared with ours at our next report (_compare_digests), not now: our digest after the
            # latest op costs a pass over the whole state (0.4 ms at 1,600 ops), and sixteen
            # participants' digests a second would cost every receiver that many times over.
            remote.digest = (message.op_count, message.digest)
            remote.digest_link = link

    def _compare_digests(self) -> None:
        """Compare every digest received since the last report with our state (digested once): a remote
        ahead of us (more ops, or as many but others) twice in a row is asked for a snapshot."""
        count = self.state.op_count
        for remote in self.remotes.values():
            link, remote.digest_link = remote.digest_link, None
            if link is None or remote.digest is None:
                continue
            their_count, theirs = remote.digest
            ahead = their_count > count or (their_count == count and theirs != self.state.digest())
            remote.behind = remote.behind + 1 if ahead else 0
            # Two digests in a row: ops in flight explain one, not two a second apart.
            if remote.behind >= 2 and time.monotonic() - self._last_request > 2.0 and link.is_open:
                self.counters["resync_requests"] += 1
                self._request_snapshot(link, remote.index)
                remote.behind = 0

    def _on_clock(self, link: PeerLink, message: Any, now: float) -> None:
        if isinstance(message, ClockShare):
            remote = self._source(link, message.participant, "clock share")
            if remote is None:
                return
            if link.remote != RELAY_ID or not isinstance(remote.clock, RelayedClock) or not remote.clock.add_share(message):
                self.counters["clock_rejected"] += 1  # only a relay room shares clocks
            return
        if isinstance(message, ClockPing):
            if self._source(link, message.participant, "ping") is None:
                return
            pong = ClockPong(self.index, message.ping_id, message.t0, now, max(now, self.clock()))
            link.send("clock", encode_clock(pong))
            self.counters["pongs_sent"] += 1
        else:
            if message.ping_id >> 16 != self.index:
                self.counters["misrouted"] += 1
                return
            if message.participant == 0 and link.remote == RELAY_ID:  # the relay's own answer
                if not self.relay_clock.add_pong(message, now):
                    self.counters["clock_rejected"] += 1
                elif self._last_share == -math.inf:  # at once the first time; then with each report
                    self._share_clock(link, now)
                return
            remote = self._source(link, message.participant, "pong")
            if remote is not None and not (isinstance(remote.clock, ClockEstimator) and remote.clock.add_pong(message, now)):
                self.counters["clock_rejected"] += 1

    def _share_clock(self, link: PeerLink, now: float) -> None:
        """Tell the room, through the relay, where our clock stands against the relay's (``ClockShare``):
        the others map our times with it instead of pinging us (``net.clock.RelayedClock``)."""
        relay = self.relay_clock
        share = ClockShare(self.index, max(0.0, relay.rtt), now, relay.to_remote(now))
        link.send("clock", encode_clock(share))
        self._last_share = now
        self.counters["clock_shares_sent"] += 1

    # ------------------------------------------------------------------ reports

    def stats_report(self) -> dict[str, Any]:
        """Compact report for the signaling server's ``/stats`` (per-link figures, ``links``)."""
        links = self.monitor.link_figures()
        for remote in self.remotes.values():
            if remote.clock.synchronized:
                figures = links.setdefault(remote.name, {})
                figures["rtt_ms"] = round(remote.clock.rtt * 1e3, 3)
                figures["offset_ms"] = round(remote.clock.offset * 1e3, 3)
        return {"links": links, "topology": self.topology, "op_count": self.state.op_count}

    def report(self) -> dict[str, Any]:
        """The end-of-session JSON report: latency, clocks, traffic, state digest, CPU and memory."""
        wall = max(1e-9, time.monotonic() - self._started)
        cpu = time.process_time() - self._cpu0
        sent = sum(link.counters.bytes_sent for link in self.links.values())
        received = sum(link.counters.bytes_received for link in self.links.values())
        return {
            "participant": self.name,
            "index": self.index,
            "room": self.room,
            "topology": self.topology,
            "duration_s": round(wall, 3),
            "latency": self.monitor.report(),
            "clocks": {r.name: r.clock.summary() for r in self.remotes.values()},
            "links": {name: {"state": link.state, **link.counters.as_dict()} for name, link in self.links.items()},
            "counters": dict(self.counters),
            "state": {"op_count": self.state.op_count, "digest": self.state.digest().hex(), "lamport": self.state.lamport},
            "remote_digests": {
                r.name: {"op_count": r.digest[0], "digest": r.digest[1].hex()} for r in self.remotes.values() if r.digest
            },
            "cpu_s": round(cpu, 3),
            "cpu_share": round(cpu / wall, 4),
            "max_rss_mb": round(peak_rss_kb() / 1024, 1),
            "bytes_sent_per_s": round(sent / wall, 1),
            "bytes_received_per_s": round(received / wall, 1),
            "pose_kbit_s_per_link": {name: round(link.pose_kbit_s(), 2) for name, link in self.links.items()},
            "config": {k: v for k, v in asdict(self.config).items() if k != "faults"},
        }


def scripted_op(rng: random.Random, index: int, counter: int) -> tuple[OpKind, dict[str, Any]]:
    """A plausible op for scripted participants: landmarks, strokes, clip planes, selection, transform."""
    choice = rng.random()
    own = f"{index}:{counter}"
    previous = f"{index}:{max(1, counter - 1)}"
    point = [round(rng.uniform(-0.2, 0.2), 4), round(rng.uniform(1.0, 1.4), 4), round(rng.uniform(-0.2, 0.2), 4)]
    if choice < 0.3:
        return OpKind.LANDMARK_PLACE, {"id": own, "position": point, "label": f"mark {counter}", "structure": None}
    if choice < 0.45:
        return OpKind.LANDMARK_MOVE, {"id": previous, "position": point}
    if choice < 0.65:
        points = [[c + 0.001 * i for c in point] for i in range(8)]
        return OpKind.STROKE_ADD, {"id": own, "points": points}
    if choice < 0.72:
        return OpKind.STROKE_ERASE, {"id": previous}
    if choice < 0.85:
        return OpKind.CLIP_SET, {"index": rng.randrange(6), "normal": [0.0, 0.0, -1.0], "d": round(rng.uniform(-0.1, 0.1), 4)}
    if choice < 0.93:
        return OpKind.SELECT, {"structure": rng.choice(["hippocampus", "thalamus", None, "insula"])}
    return OpKind.TRANSFORM, {"position": point, "orientation": [0.0, 0.0, 0.0, 1.0], "scale": 1.0}


def _applied(body: bytes, participant: int) -> set[int]:
    """The op sequence numbers of ``participant`` that a snapshot says are applied (empty if unreadable).

    Only used to choose what to resend: an unreadable snapshot means resending everything, and a
    duplicate op is dropped by the receiver.
    """
    try:
        runs = parse_json(body, "snapshot")["applied"].get(str(participant), [])
        return {s for lo, hi in runs if isinstance(lo, int) and isinstance(hi, int) and 0 < lo <= hi < lo + 10_000_000
                for s in range(lo, hi + 1)}
    except (ProtocolError, AttributeError, KeyError, TypeError, ValueError):
        return set()
