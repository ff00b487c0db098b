"""The roster: who else is in the room (``RemotePeer`` by index), the room's topology, and who may speak as whom."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from net.clock import ClockEstimator, RelayedClock
from net.peer import PeerLink
from net.protocol import PoseRecord, decode_pose
from net.tokens import RELAY_ID

if TYPE_CHECKING:
    from collections import Counter

log = logging.getLogger(__name__)


@dataclass
class RemotePeer:
    """What is known of one remote participant: its name, clock and latest pose."""

    name: str
    index: int
    role: str = ""  # the role its token gives it (signaling's peer entry)
    clock: ClockEstimator | RelayedClock = field(default_factory=ClockEstimator)  # RelayedClock in a relay room
    pose_message: bytes | None = None  # the newest pose applied, as it came (checked): ``pose`` decodes it
    digest: tuple[int, bytes] | None = None
    digest_link: PeerLink | None = None  # where the latest digest came from, not yet compared with ours
    behind: int = 0  # consecutive digests showing this remote ahead of us
    split_reports: int = 0  # consecutive digests at our op count that differ from ours
    split_at: float | None = None  # when a split with this remote was seen (monotonic s), until mended
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


class Roster:
    """The remote participants by index and the room's topology (``mesh`` or ``relay``).

    Parameters
    ----------
    relay_clock : ClockEstimator
        The relay's clock (``net.participant.clock``): in a relay room each remote's clock is known
        through it (``RelayedClock``).
    counters : Counter
        The participant's counters (``unknown_participant``, ``spoofed``).
    """

    def __init__(self, relay_clock: ClockEstimator, counters: Counter[str]) -> None:
        self.remotes: dict[int, RemotePeer] = {}
        self.topology = "mesh"
        self._relay_clock = relay_clock
        self._counters = counters

    def remember(self, peer: dict[str, Any]) -> RemotePeer:
        """The remote of a signaling ``peer`` entry (``index``, ``participant``), new if its name changed."""
        index, name = int(peer["index"]), str(peer["participant"])
        remote = self.remotes.get(index)
        if remote is not None and remote.name != name:
            # Indices are never reused in a room: two participants under one index split the state.
            self._counters["index_conflicts"] += 1
            log.warning("signaling gives index %d to %s, which we know as %s's", index, name, remote.name)
        if remote is None or remote.name != name:
            for other in [r for r in self.remotes.values() if r.name == name and r.index != index]:
                del self.remotes[other.index]  # renumbered: its old index is no longer its own
            remote = self.remotes[index] = RemotePeer(name, index, clock=self._remote_clock())
        remote.role = str(peer.get("role", ""))
        return remote

    def _remote_clock(self) -> ClockEstimator | RelayedClock:
        """A new clock for a remote: pinged directly in a mesh, known through the relay in a relay room."""
        return RelayedClock(self._relay_clock) if self.topology == "relay" else ClockEstimator()

    def set_topology(self, topology: str) -> None:
        """Follow the room's topology; on a change every remote's clock is learnt afresh, the new way."""
        if topology != self.topology:
            self.topology = topology
            for remote in self.remotes.values():
                remote.clock = self._remote_clock()

    def index_of(self, name: str) -> int | None:
        """The index of the remote called ``name``, or None."""
        for remote in self.remotes.values():
            if remote.name == name:
                return remote.index
        return None

    def source(self, link: PeerLink, participant: int, what: str) -> RemotePeer | None:
        """The remote a message on ``link`` claims to come from, or None (counted) when it cannot be."""
        remote = self.remotes.get(participant)
        if remote is None:
            self._counters["unknown_participant"] += 1
            return None
        # Directly connected, a peer may speak only as itself; through the relay, the relay checks.
        if link.remote != RELAY_ID and remote.name != link.remote:
            self._counters["spoofed"] += 1
            log.debug("%s from %s claims to be %s", what, link.remote, remote.name)
            return None
        return remote
