"""Reports: the compact per-link figures for the signaling server's ``/stats``, and the end-of-session JSON report."""

from __future__ import annotations

import resource
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from net.participant.room import Participant


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


@dataclass
class SignalingOutages:
    """How long this participant was without its signaling server: each outage runs from the connection
    dropping to the next successful rejoin (seconds, monotonic clock). Peer links carry on meanwhile."""

    count: int = 0
    total_s: float = 0.0
    longest_s: float = 0.0
    attempts: int = 0  # rejoin attempts that failed
    since: float | None = None  # start of the outage going on now, else None

    def begin(self, now: float) -> bool:
        """The connection dropped at ``now``; True when that starts a new outage."""
        if self.since is not None:
            return False
        self.since = now
        self.count += 1
        return True

    def end(self, now: float) -> float:
        """Rejoined at ``now``; returns the outage's length, seconds."""
        length = 0.0 if self.since is None else now - self.since
        self.since = None
        self.total_s += length
        self.longest_s = max(self.longest_s, length)
        return length

    def as_dict(self, now: float) -> dict[str, Any]:
        """For the report: an outage still going on counts up to ``now``."""
        current = 0.0 if self.since is None else now - self.since
        return {
            "outages": self.count,
            "outage_total_s": round(self.total_s + current, 3),
            "outage_longest_s": round(max(self.longest_s, current), 3),
            "failed_attempts": self.attempts,
            "connected": self.since is None,
        }


def stats_report(p: Participant) -> dict[str, Any]:
    """Compact report for the signaling server's ``/stats`` (per-link figures, ``links``)."""
    links = p.monitor.link_figures()
    for remote in p.remotes.values():
        if remote.clock.synchronized:
            figures = links.setdefault(remote.name, {})
            figures["rtt_ms"] = round(remote.clock.rtt * 1e3, 3)
            figures["offset_ms"] = round(remote.clock.offset * 1e3, 3)
    return {"links": links, "topology": p.topology, "op_count": p.state.op_count}


def session_report(p: Participant) -> dict[str, Any]:
    """The end-of-session JSON report: latency, clocks, traffic, state digest, CPU and memory."""
    wall = max(1e-9, time.monotonic() - p.started)
    cpu = time.process_time() - p.cpu_started
    sent = sum(link.counters.bytes_sent for link in p.links.values())
    received = sum(link.counters.bytes_received for link in p.links.values())
    state = p.state
    return {
        "participant": p.name,
        "index": p.index,
        "room": p.room,
        "topology": p.topology,
        "duration_s": round(wall, 3),
        "latency": p.monitor.report(),
        "clocks": {r.name: r.clock.summary() for r in p.remotes.values()},
        "links": {name: {"state": link.state, **link.counters.as_dict()} for name, link in p.links.items()},
        "counters": dict(p.counters),
        "state": {"op_count": state.op_count, "digest": state.digest().hex(), "lamport": state.lamport},
        "signaling": p.outages.as_dict(time.monotonic()),
        "state_splits": p.sync.splits.as_dict(),
        "remote_digests": {
            r.name: {"op_count": r.digest[0], "digest": r.digest[1].hex()} for r in p.remotes.values() if r.digest
        },
        "cpu_s": round(cpu, 3),
        "cpu_share": round(cpu / wall, 4),
        "max_rss_mb": round(peak_rss_kb() / 1024, 1),
        "bytes_sent_per_s": round(sent / wall, 1),
        "bytes_received_per_s": round(received / wall, 1),
        "pose_kbit_s_per_link": {name: round(link.pose_kbit_s(), 2) for name, link in p.links.items()},
        "config": {k: v for k, v in asdict(p.config).items() if k != "faults"},
    }
