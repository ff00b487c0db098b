"""Clock sync: pings on every link, the remotes' clocks from their pongs, and the relay room's clock shares.

In a mesh a participant pings every remote (``net.clock.ClockEstimator`` per remote). In a relay
room it pings only the relay, answering as participant 0, and tells the room where its own clock
stands against the relay's (``ClockShare``), so that the others map its times through the relay's
clock (``net.clock.RelayedClock``) without pinging it. Pings carry the requester's index in the upper
16 bits of ``ping_id`` (``net.protocol.routed_id``), so that the relay routes pongs back by header alone.
"""

from __future__ import annotations

import asyncio
import math
from typing import TYPE_CHECKING

from net.clock import ClockEstimator, RelayedClock
from net.peer import PeerLink
from net.protocol import ClockMessage, ClockPing, ClockPong, ClockShare, encode_clock, routed_id
from net.tokens import RELAY_ID

if TYPE_CHECKING:
    from net.participant.room import Participant

#: Pings to the relay go this many times less often than to a mesh remote (``ClockSync.interval``).
RELAY_PING_FACTOR = 4.0


class ClockSync:
    """The participant's pings, pongs and clock shares."""

    def __init__(self, host: Participant) -> None:
        self._host = host
        #: Clock of the relay (participant 0), from its answers to our pings in a relay room.
        self.relay_clock = ClockEstimator()
        self._ping_counter = 0
        self._last_share = -math.inf

    async def ping_loop(self, link: PeerLink) -> None:
        """Ping a link that just opened: a burst, then every ``interval`` while it stays open."""
        host = self._host
        for _ in range(host.config.clock_burst):
            if not link.is_open:
                return
            self.ping(link)
            await asyncio.sleep(0.05)
        while link.is_open and not host.stopping:
            await asyncio.sleep(self.interval(link))
            self.ping(link)

    def interval(self, link: PeerLink) -> float:
        """Seconds between two pings on ``link`` once the burst is over: ``clock_interval_s`` to a mesh
        remote, four times that to the relay. Only the relay answers there (the others' clocks come from
        their shares), its clock drifts as slowly as any, and poses keep the link busy; each ping costs
        the participant two wake-ups (ping, pong) in a room where every wake-up competes with sixteen.
        Never more than a quarter of the liveness timeout: the pongs are what a healthy link is heard by."""
        cfg = self._host.config
        if link.remote != RELAY_ID:
            return cfg.clock_interval_s
        slowest = cfg.liveness_timeout_s / 4 if 0 < cfg.liveness_timeout_s < math.inf else math.inf
        return min(cfg.clock_interval_s * RELAY_PING_FACTOR, slowest)

    def ping(self, link: PeerLink) -> None:
        """Send one ping on ``link``."""
        host = self._host
        self._ping_counter = (self._ping_counter + 1) & 0xFFFF
        ping = ClockPing(host.index, routed_id(host.index, self._ping_counter), host.clock())
        link.send("clock", encode_clock(ping))

    def on_clock(self, link: PeerLink, message: ClockMessage, now: float) -> None:
        """Take a clock-channel message from ``link`` (received at ``now``, our clock)."""
        host = self._host
        roster = host.roster
        if isinstance(message, ClockShare):
            remote = roster.source(link, message.participant, "clock share")
            if remote is None:
                return
            if link.remote != RELAY_ID or not isinstance(remote.clock, RelayedClock) or not remote.clock.add_share(message):
                host.counters["clock_rejected"] += 1  # only a relay room shares clocks
            return
        if isinstance(message, ClockPing):
            if roster.source(link, message.participant, "ping") is None:
                return
            pong = ClockPong(host.index, message.ping_id, message.t0, now, max(now, host.clock()))
            link.send("clock", encode_clock(pong))
            host.counters["pongs_sent"] += 1
            return
        if message.ping_id >> 16 != host.index:
            host.counters["misrouted"] += 1
            return
        if message.participant == 0 and link.remote == RELAY_ID:  # the relay's own answer
            if not self.relay_clock.add_pong(message, now):
                host.counters["clock_rejected"] += 1
            elif self._last_share == -math.inf:  # at once the first time; then with each report
                self.share(link, now)
            return
        remote = roster.source(link, message.participant, "pong")
        if remote is not None and not (isinstance(remote.clock, ClockEstimator) and remote.clock.add_pong(message, now)):
            host.counters["clock_rejected"] += 1

    def share(self, link: PeerLink, now: float) -> None:
        """Tell the room, through the relay, where our clock stands against the relay's (``ClockShare``):
        the others map our times with it instead of pinging us (``net.clock.RelayedClock``)."""
        relay = self.relay_clock
        share = ClockShare(self._host.index, max(0.0, relay.rtt), now, relay.to_remote(now))
        link.send("clock", encode_clock(share))
        self._last_share = now
        self._host.counters["clock_shares_sent"] += 1

    def share_if_linked(self) -> None:
        """Share our clock on the relay link, if there is one open and the relay's clock is known."""
        relay = self._host.link_set.links.get(RELAY_ID)
        if relay is not None and relay.is_open and self.relay_clock.synchronized:
            self.share(relay, self._host.clock())
