"""Limits of the signaling server: how much anyone may ask of it, and what happens past that.

Every limit belongs to who asks, not to a socket, so that reconnecting resets nothing:

- **messages**: a token bucket per *identity* (room and participant, across all its connections and
  reconnects; ``ServerConfig.rate_per_s``/``burst``) and one per *source address* (all its
  identities); a message over either is dropped and counted (``rate_limited``), with at most one
  ``error`` reply a second, so a flood costs the server little and the target nothing;
- **joins**: a bucket per source address and one per identity; a refused join is answered 429 with
  ``Retry-After`` (``refused_rate_limited``); a join with a bad credential is refused (401) before
  either, cheaply (one HMAC), and logged one line per kind per 10 s;
- **back-off**: an identity that keeps going past its limits (a connection closed for flooding, or
  joins refused for rate) is barred from joining for a time that doubles with each strike
  (:attr:`Limits.backoff_s` up to :attr:`Limits.max_backoff_s`) and resets after a quiet spell as
  long. Addresses get buckets but no bar: a hospital's clinicians may share one address behind NAT,
  and one of them flooding must not lock the others out;
- **connections**: at most :attr:`Limits.max_connections_per_address` open TCP connections per
  source address and :attr:`Limits.max_connections` in all, checked when the connection is accepted,
  before a byte is read (``refused_connections``); at the total cap the oldest connection that has
  not yet sent a request is closed to make room, so idle sockets cannot lock out ``/health`` or a
  join;
- **timeouts**: a connection must complete its HTTP request (headers included) within
  :attr:`Limits.header_timeout_s` of connecting or of its previous request, else it is closed; a
  WebSocket that stops answering pings is closed by the heartbeat (``ServerConfig.heartbeat_s``).

:class:`LimitBook` holds the buckets and back-offs (plain bookkeeping, time injected);
:class:`ConnectionGuard` counts TCP connections at the aiohttp server.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from collections import OrderedDict
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from net.rooms import TokenBucket

log = logging.getLogger(__name__)


def _default_max_connections() -> int:
    """Three quarters of the process's file limit (sockets are files), at most 8,192."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return max(64, min(8192, (soft if soft != resource.RLIM_INFINITY else 8192) * 3 // 4))


@dataclass
class Limits:
    """What one source address and one identity may ask of the server (see the module docstring).

    Attributes
    ----------
    address_rate_per_s, address_burst : float
        Messages per second (sustained, burst) from one source address, all its connections together.
    join_rate_per_s, join_burst : float
        Join attempts per second from one source address.
    identity_join_rate_per_s, identity_join_burst : float
        Join attempts per second for one identity (room and participant).
    flood_close_after : int
        A connection with this many messages over its limits is closed (4008) and its identity gets a
        back-off strike.
    backoff_s, max_backoff_s : float
        First back-off, and the cap it doubles to; a spell of ``max_backoff_s`` without a strike
        forgets the strikes.
    max_connections_per_address : int
        Open TCP connections per source address.
    max_connections : int
        Open TCP connections in all (default: three quarters of the file limit, at most 8,192).
    header_timeout_s : float
        Seconds a connection has to send a complete HTTP request after connecting or after its
        previous one (also the idle keep-alive time).
    """

    address_rate_per_s: float = 200.0
    address_burst: float = 600.0
    join_rate_per_s: float = 10.0
    join_burst: float = 60.0
    identity_join_rate_per_s: float = 0.5
    identity_join_burst: float = 8.0
    flood_close_after: int = 600
    backoff_s: float = 1.0
    max_backoff_s: float = 60.0
    max_connections_per_address: int = 128
    max_connections: int = field(default_factory=_default_max_connections)
    header_timeout_s: float = 5.0

    def __post_init__(self) -> None:
        positive = (self.address_rate_per_s, self.address_burst, self.join_rate_per_s, self.join_burst,
                    self.identity_join_rate_per_s, self.identity_join_burst, self.header_timeout_s)  # fmt: skip
        if min(positive) <= 0 or self.flood_close_after < 1 or not 0 < self.backoff_s <= self.max_backoff_s:
            raise ValueError("limits: rates, bursts and timeouts must be positive, and 0 < backoff_s <= max_backoff_s")
        if self.max_connections_per_address < 1 or self.max_connections < self.max_connections_per_address:
            raise ValueError("limits: need 1 <= max_connections_per_address <= max_connections")


@dataclass
class _Strikes:
    count: int = 0
    last: float = 0.0
    until: float = 0.0


class LimitBook:
    """Buckets and back-offs by identity and by address, kept across connections.

    Parameters
    ----------
    limits : Limits
        The numbers.
    rate_per_s, burst : float
        The message bucket of one identity.
    clock : callable
        Monotonic seconds (injectable for tests).
    """

    #: Keys remembered per table before idle ones are forgotten (a full bucket is as good as new).
    MAX_KEYS = 4096

    def __init__(self, limits: Limits, rate_per_s: float, burst: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self.clock = clock
        self._rate, self._burst = rate_per_s, burst
        self._messages: dict[Any, TokenBucket] = {}
        self._address_messages: dict[str, TokenBucket] = {}
        self._joins: dict[str, TokenBucket] = {}
        self._identity_joins: dict[Any, TokenBucket] = {}
        self._strikes: dict[Any, _Strikes] = {}

    def _bucket(self, table: dict[Any, TokenBucket], key: Any, rate: float, burst: float) -> TokenBucket:
        bucket = table.get(key)
        if bucket is None:
            if len(table) >= self.MAX_KEYS:
                self._forget_full(table)
            bucket = table[key] = TokenBucket(rate, burst, self.clock)
        return bucket

    def _forget_full(self, table: dict[Any, TokenBucket]) -> None:
        # take(burst) succeeds only on a full bucket, which is dropped anyway: spending it costs nothing.
        for key in [k for k, b in table.items() if b.take(b.burst)]:
            del table[key]

    def message(self, identity: tuple[str, str], address: str) -> bool:
        """Take one message from the identity's and the address's buckets; False when over either."""
        mine = self._bucket(self._messages, identity, self._rate, self._burst)
        if not mine.take():
            return False
        limits = self.limits
        return self._bucket(self._address_messages, address, limits.address_rate_per_s, limits.address_burst).take()

    def join(self, identity: tuple[str, str], address: str) -> float | None:
        """Admit a join attempt, or return the seconds to wait (the identity's back-off, or a bucket's refill).

        A barred identity's attempts spend nothing of its address's budget, so an attacker retrying in a
        loop does not lock out its neighbours behind the same address (a hospital's NAT)."""
        now = self.clock()
        wait = self._barred(identity, now)
        if wait > 0:
            return wait
        limits = self.limits
        if not self._bucket(self._joins, address, limits.join_rate_per_s, limits.join_burst).take():
            return 1.0 / limits.join_rate_per_s  # the address's joins: no strike against this identity
        if self._bucket(self._identity_joins, identity, limits.identity_join_rate_per_s, limits.identity_join_burst).take():
            return None
        # Rejoining faster than allowed is a strike: a loop that ignores 429 backs off longer each time
        # (and never less than the bucket needs to give a join again).
        wait = max(self.strike(identity), 1.0 / limits.identity_join_rate_per_s)
        self._strikes[identity].until = now + wait
        return wait

    def strike(self, key: Any) -> float:
        """Record a strike against an identity; return its back-off, seconds."""
        now = self.clock()
        limits = self.limits
        strikes = self._strikes.get(key)
        if strikes is None or now - strikes.last > limits.max_backoff_s:
            if len(self._strikes) >= self.MAX_KEYS:
                self._strikes = {k: s for k, s in self._strikes.items() if now - s.last <= limits.max_backoff_s}
            strikes = self._strikes[key] = _Strikes()
        strikes.count += 1
        strikes.last = now
        backoff = float(min(limits.max_backoff_s, limits.backoff_s * 2.0 ** (strikes.count - 1)))
        strikes.until = now + backoff
        return backoff

    def _barred(self, key: Any, now: float) -> float:
        strikes = self._strikes.get(key)
        return 0.0 if strikes is None else max(0.0, strikes.until - now)


class ConnectionGuard:
    """Caps on open TCP connections, per source address and in all, applied as they are accepted.

    :meth:`install` wraps the aiohttp server's ``connection_made``/``connection_lost`` (called by each
    connection's protocol before it reads anything); :meth:`requested` marks a connection that has
    sent a request, so that at the total cap the oldest one that has not is closed to make room.

    Parameters
    ----------
    limits : Limits
        ``max_connections_per_address`` and ``max_connections``.
    counters : mapping
        The server's counters; refusals go to ``refused_connections``.
    quiet : QuietLog
        The server's rate-limited log.
    """

    def __init__(self, limits: Limits, counters: MutableMapping[str, int], quiet: QuietLog) -> None:
        self.limits = limits
        self.counters = counters
        self.by_address: dict[str, int] = {}
        self.total = 0
        self._address_of: dict[asyncio.BaseTransport, str] = {}
        self._waiting: OrderedDict[asyncio.BaseTransport, None] = OrderedDict()  # no request yet, oldest first
        self._quiet = quiet

    def install(self, server: web.Server) -> None:
        """Count the connections of ``server`` (an ``aiohttp.web.Server``, ``AppRunner.server``)."""
        made, lost = server.connection_made, server.connection_lost
        # By connection_lost the handler may have dropped its transport (a timed-out socket): keep the pair.
        transports: dict[Any, asyncio.BaseTransport] = {}

        def connection_made(handler: Any, transport: asyncio.Transport) -> None:
            if self.admit(transport):
                transports[handler] = transport
                made(handler, transport)

        def connection_lost(handler: Any, exc: BaseException | None = None) -> None:
            transport = transports.pop(handler, None)
            if transport is not None:
                self.release(transport)
            lost(handler, exc)

        server.connection_made = connection_made  # type: ignore[method-assign]
        server.connection_lost = connection_lost  # type: ignore[method-assign]

    def admit(self, transport: asyncio.BaseTransport) -> bool:
        """Count a new connection, or close it (False) when its address or the server is full."""
        peer = transport.get_extra_info("peername")
        address = str(peer[0]) if isinstance(peer, tuple) and peer else "?"
        if self.by_address.get(address, 0) >= self.limits.max_connections_per_address:
            return self._refuse(transport, f"{address} has {self.limits.max_connections_per_address} connections open")
        if self.total >= self.limits.max_connections:
            if not self._waiting:
                return self._refuse(transport, f"server has {self.limits.max_connections} connections open")
            oldest, _ = self._waiting.popitem(last=False)
            self.counters["evicted_idle"] += 1
            self._quiet.info("evicts-idle", "closed a connection that sent no request, to make room")
            self.release(oldest)
            oldest.abort()  # type: ignore[attr-defined]
        self._address_of[transport] = address
        self._waiting[transport] = None
        self.by_address[address] = self.by_address.get(address, 0) + 1
        self.total += 1
        return True

    def requested(self, transport: asyncio.BaseTransport | None) -> None:
        """The connection sent a request: it is no longer one that may be closed to make room."""
        if transport is not None:
            self._waiting.pop(transport, None)

    def release(self, transport: asyncio.BaseTransport) -> None:
        """Forget a closed connection (idempotent)."""
        address = self._address_of.pop(transport, None)
        if address is None:
            return
        self._waiting.pop(transport, None)
        self.total -= 1
        left = self.by_address[address] - 1
        if left:
            self.by_address[address] = left
        else:
            del self.by_address[address]

    def _refuse(self, transport: asyncio.BaseTransport, reason: str) -> bool:
        self.counters["refused_connections"] += 1
        self._quiet.info("refused-connection", f"refused connection: {reason}")
        # Aborted on the next turn of the loop: aiohttp starts the connection's task right after this
        # call, and that task expects the connection to still be there when it starts.
        asyncio.get_running_loop().call_soon(transport.abort)  # type: ignore[attr-defined]
        return False


class QuietLog:
    """One log line per kind of event per ``every_s``, with how many were not logged: an attack that
    repeats an event ten thousand times a second must not write ten thousand lines."""

    def __init__(self, every_s: float = 10.0) -> None:
        self.every_s = every_s
        self._last: dict[str, float] = {}
        self._skipped: dict[str, int] = {}

    def info(self, kind: str, line: str) -> None:
        now = time.monotonic()
        if now - self._last.get(kind, -self.every_s) < self.every_s:
            self._skipped[kind] = self._skipped.get(kind, 0) + 1
            return
        skipped = self._skipped.pop(kind, 0)
        self._last[kind] = now
        log.info("%s%s", line, f" (and {skipped} more like it since the last line)" if skipped else "")

