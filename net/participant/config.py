"""How a participant behaves (``ParticipantConfig``) and where its poses and ops come from (the sources).

``net`` knows messages, not people: what a participant streams is the caller's. A headset session
passes its tracked poses and its tools' ops; ``medverse consult join`` passes the scripted ones of
``sessions.consult.scripted``; without sources a participant sends nothing of its own but still
answers pings, applies what the others send and serves snapshots.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from net.protocol import RELAY_POSE_LEAD_S, OpKind, TrackedPoses

if TYPE_CHECKING:
    from net.faults import FaultPlan


class PoseSource(Protocol):
    """The poses to send at time ``t`` (seconds, the participant's clock) by participant ``index``;
    ``None`` sends nothing this time."""

    def __call__(self, t: float, index: int) -> TrackedPoses | None: ...


class OpSource(Protocol):
    """The ``counter``-th op (kind and payload) participant ``index`` makes; ``None`` makes none this time."""

    def __call__(self, index: int, counter: int) -> tuple[OpKind, Mapping[str, Any]] | None: ...


@dataclass
class ParticipantConfig:
    """How a participant behaves.

    Attributes
    ----------
    pose_rate_hz : float
        Pose records sent per second to each link (0: send none), each taken from the pose source.
    clock_interval_s : float
        Seconds between clock pings on each link once synchronised (to each mesh remote, or to the
        relay, whose answers also time the poses and whose clock the others' shares refer to).
    clock_burst : int
        Pings sent 50 ms apart when a link opens, so the offset is known quickly.
    ops_rate_hz : float
        Ops asked of the op source per second (0: none); made between ``ops_start_s`` and
        ``ops_stop_s`` after joining.
    ops_start_s, ops_stop_s : float
        Window of those ops, seconds after joining.
    relay_pose_lead_s : float
        In a relay room, how long before the relay's flush tick a pose should arrive there: the margin
        for scheduling jitter (the one-way trip to the relay is added to it).
    ops_stop_at : float or None
        UNIX time at which the source's ops stop, whatever ``ops_stop_s`` says: processes that start
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
    liveness_timeout_s: float = 12.0
    connect_timeout_s: float = 3.0
    resend_log: int = 10_000


def local_clock(offset_s: float = 0.0) -> Callable[[], float]:
    """A participant's clock: the machine's monotonic clock (the same in every process of it), plus
    ``offset_s`` seconds (``join --clock-offset``, which tests clock sync)."""
    return (lambda: time.monotonic() + offset_s) if offset_s else time.monotonic
