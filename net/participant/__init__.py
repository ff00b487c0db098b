"""A consultation participant: joins a room through signaling, streams poses, shares state, measures latency.

:class:`Participant` (``net.participant.room``) is a thin coordinator over its parts, one module per
job: ``roster`` (the remotes), ``links`` (peer links, mesh or relay), ``sync`` (shared state, ops,
snapshots, digests, resuming), ``clock`` (pings and clock shares), ``poses`` (the pose stream and
one-way latency) and ``report`` (``/stats`` and the final JSON report). What it sends of its own comes
from the caller's pose and op sources (``net.participant.config``): ``medverse consult join`` passes
the scripted ones of ``sessions.consult.scripted``, tests and ``bench/sync.py`` start it the same way.
"""

from net.participant.clock import RELAY_PING_FACTOR
from net.participant.config import OpSource, ParticipantConfig, PoseSource, local_clock
from net.participant.report import peak_rss_kb
from net.participant.room import Participant
from net.participant.roster import RemotePeer

__all__ = [
    "RELAY_PING_FACTOR", "OpSource", "Participant", "ParticipantConfig", "PoseSource", "RemotePeer", "local_clock",
    "peak_rss_kb",
]
