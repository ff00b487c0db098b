"""Network fault injection: a lossy, delaying UDP proxy that a participant puts in front of its ICE traffic.

``tc netem`` is not available in this kernel, so faults are injected in user space. A participant with
a :class:`FaultPlan` rewrites the ICE candidates of its own session descriptions (the one it sends and
the one it receives) so that every candidate points at a :class:`UdpProxy` in its own process:

- its own candidates become proxies that forward to its real socket, so the remote reaches it only
  through a proxy;
- the remote's candidates become proxies that forward to the remote, so it reaches the remote only
  through a proxy.

Every ICE path between the two then crosses exactly one proxy, once per direction; the proxy drops a
datagram with probability ``loss``, holds each for ``delay_s`` (order kept) and drops everything
during an outage. Delays are centred on the plan's within about half a millisecond (the event loop's
timer granularity), plus whatever the event loop is late by. The plan applies to both directions, so
a delay of 20 ms adds 20 ms to each one-way trip (40 ms to a round trip): the NTP-style clock
estimate stays unbiased, which is what lets tests check that measured one-way latency recovers a
known delay.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

logger = logging.getLogger(__name__)

#: The event loop sleeps in whole milliseconds, rounded up (epoll), so a timer fires 0-1 ms late: aiming
#: half a millisecond early centres the added delay on the plan's (within +-0.5 ms) instead of adding
#: 0.5 ms on average, which a test that recovers a known delay within 1 ms could not afford.
_EARLY_S = 0.0005

# a=candidate:<foundation> <component> <transport> <priority> <address> <port> typ <type> ...
_CANDIDATE = re.compile(r"^(a=candidate:\S+ \d+ \S+ \d+ )(\S+) (\d+)( typ .*)$")


@dataclass(frozen=True)
class FaultPlan:
    """Faults applied to every datagram of a participant's connections, in both directions.

    Attributes
    ----------
    loss : float
        Probability in [0, 1) that a datagram is dropped.
    delay_s : float
        Extra one-way delay added to every datagram, seconds.
    outages : tuple of (start_s, duration_s)
        Windows, in seconds from the plan's start (the participant's start), in which every datagram
        is dropped.
    seed : int or None
        Seed of the loss generator, for repeatable runs.
    """

    loss: float = 0.0
    delay_s: float = 0.0
    outages: tuple[tuple[float, float], ...] = ()
    seed: int | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.loss < 1.0:
            raise ValueError(f"loss must be in [0, 1), got {self.loss}")
        if self.delay_s < 0:
            raise ValueError(f"delay_s must be >= 0, got {self.delay_s}")
        outages = tuple((float(a), float(b)) for a, b in self.outages)
        if any(not (math.isfinite(a) and math.isfinite(b)) or b <= 0 for a, b in outages):
            raise ValueError(f"outages must be (start_s, duration_s > 0) pairs, got {self.outages}")
        object.__setattr__(self, "outages", outages)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FaultPlan:
        """Build a plan from its JSON form (the keys of this dataclass).

        Raises
        ------
        ValueError
            Unknown keys, or values of the wrong type or range (one line, for a command-line user).
        """
        if not isinstance(data, dict):
            raise ValueError("a fault plan must be a JSON object")
        unknown = set(data) - {"loss", "delay_s", "outages", "seed"}
        if unknown:
            raise ValueError(f"unknown fault plan key(s): {', '.join(sorted(unknown))}")
        try:
            outages = tuple((float(start), float(length)) for start, length in data.get("outages", ()))
            seed = data.get("seed")
            if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
                raise ValueError("seed must be an integer")
            return cls(
                loss=float(data.get("loss", 0.0)), delay_s=float(data.get("delay_s", 0.0)), outages=outages, seed=seed
            )
        except (TypeError, ValueError) as exc:
            raise ValueError(f"invalid fault plan: {exc}") from None


@dataclass
class FaultCounters:
    """Datagrams seen by all proxies of one :class:`FaultyNetwork`."""

    forwarded: int = 0
    lost: int = 0
    blocked: int = 0


@dataclass
class FaultyNetwork:
    """The proxies of one participant and the shared switch that takes its network down.

    Parameters
    ----------
    plan : FaultPlan
        Loss, delay and scheduled outages.
    clock : callable
        Monotonic time source in seconds (the real one: proxies act on real time).
    """

    plan: FaultPlan
    clock: Callable[[], float] = time.monotonic
    counters: FaultCounters = field(default_factory=FaultCounters)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.plan.seed)
        self._start = self.clock()
        self._forced_down = False
        self._proxies: list[UdpProxy] = []
        self._by_target: dict[tuple[str, int], UdpProxy] = {}

    def set_down(self, down: bool) -> None:
        """Take the network down (drop every datagram) or bring it back, on top of scheduled outages."""
        if down != self._forced_down:
            logger.info("fault network %s", "down" if down else "up")
        self._forced_down = down

    def is_down(self) -> bool:
        """Whether datagrams are dropped right now (forced or inside a scheduled outage)."""
        if self._forced_down:
            return True
        t = self.clock() - self._start
        return any(start <= t < start + length for start, length in self.plan.outages)

    def admit(self) -> bool:
        """Decide the fate of one datagram and count it: True to forward it."""
        if self.is_down():
            self.counters.blocked += 1
            return False
        if self.plan.loss and self._rng.random() < self.plan.loss:
            self.counters.lost += 1
            return False
        self.counters.forwarded += 1
        return True

    async def proxy_for(self, target: tuple[str, int]) -> UdpProxy:
        """The proxy that forwards to ``target`` (created on first use, bound on the target's address)."""
        proxy = self._by_target.get(target)
        if proxy is None:
            proxy = UdpProxy(target, self)
            await proxy.start()
            self._by_target[target] = proxy
            self._proxies.append(proxy)
        return proxy

    async def rewrite_sdp(self, sdp: str) -> str:
        """Point every ICE candidate of ``sdp`` at a proxy that forwards to it.

        Parameters
        ----------
        sdp : str
            A session description (local or remote) with host candidates.

        Returns
        -------
        str
            The same description whose candidate addresses and ports are the proxies'.
        """
        out = []
        for line in sdp.splitlines():
            match = _CANDIDATE.match(line)
            if match:
                try:
                    proxy = await self.proxy_for((match.group(2), int(match.group(3))))
                except OSError as exc:
                    # A candidate left as it was would let traffic bypass the faults: drop it instead.
                    logger.warning("dropping ICE candidate %s:%s: cannot proxy it: %s", match.group(2), match.group(3), exc)
                    continue
                host, port = proxy.address
                out.append(f"{match.group(1)}{host} {port}{match.group(4)}")
            else:
                out.append(line)
        return "\r\n".join(out) + "\r\n"

    def close(self) -> None:
        """Close every proxy."""
        for proxy in self._proxies:
            proxy.close()
        self._proxies.clear()
        self._by_target.clear()


Address = tuple[Any, ...]  # (host, port) for IPv4, (host, port, flowinfo, scope_id) for IPv6


class _Endpoint(asyncio.DatagramProtocol):
    """One UDP socket of a proxy; hands every datagram to a callback with its source address."""

    def __init__(self, on_datagram: Callable[[bytes, Address], None]) -> None:
        self._on_datagram = on_datagram
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self._on_datagram(data, addr)

    def error_received(self, exc: Exception) -> None:
        # ICMP port-unreachable after a peer went away: the datagram is lost, as on a real network.
        logger.debug("proxy socket error: %s", exc)


class UdpProxy:
    """Forward datagrams to one target through faults, NAT-style.

    Each client that sends to :attr:`address` gets its own upstream socket, so the target sees one
    stable source per client and its replies find their way back to that client from
    :attr:`address`. Datagrams that survive the faults leave in the order they came, ``delay_s``
    later, in both directions.

    Parameters
    ----------
    target : (host, port)
        Where datagrams from clients go.
    network : FaultyNetwork
        The faults to apply (and count).
    """

    def __init__(self, target: tuple[str, int], network: FaultyNetwork) -> None:
        self.target = target
        self._network = network
        self._listen: _Endpoint | None = None
        self._upstream: dict[Address, _Endpoint] = {}
        # Datagrams from a client whose upstream socket is still being opened, in arrival order.
        self._opening: dict[Address, list[bytes]] = {}
        # Admitted datagrams waiting out the delay: (due time, socket, data, destination), FIFO.
        self._delayed: deque[tuple[float, _Endpoint, bytes, Address]] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) clients send to."""
        assert self._listen is not None and self._listen.transport is not None
        host, port = self._listen.transport.get_extra_info("sockname")[:2]
        return host, port

    async def start(self) -> None:
        """Bind the listening socket on the target's own address (port chosen by the system).

        Raises
        ------
        OSError
            The address cannot be bound.
        """
        loop = asyncio.get_running_loop()
        _, protocol = await loop.create_datagram_endpoint(
            lambda: _Endpoint(self._from_client), local_addr=(self.target[0], 0)
        )
        self._listen = protocol

    def _from_client(self, data: bytes, addr: Address) -> None:
        upstream = self._upstream.get(addr)
        if upstream is not None:
            self._forward(upstream, data, self.target)
        elif addr in self._opening:
            self._opening[addr].append(data)
        else:
            self._opening[addr] = [data]
            # Referenced until done: the event loop keeps only weak references to tasks.
            task = asyncio.ensure_future(self._open_upstream(addr))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _open_upstream(self, client: Address) -> None:
        loop = asyncio.get_running_loop()
        try:
            _, protocol = await loop.create_datagram_endpoint(
                lambda: _Endpoint(lambda data, _addr: self._to_client(client, data)),
                local_addr=(self.target[0], 0),
            )
        except OSError as exc:
            logger.warning("proxy to %s: cannot open an upstream socket: %s", self.target, exc)
            self._opening.pop(client, None)
            return
        waiting = self._opening.pop(client, [])
        if self._closed:
            protocol.transport.close()  # type: ignore[union-attr]
            return
        self._upstream[client] = protocol
        for data in waiting:
            self._forward(protocol, data, self.target)

    def _to_client(self, client: Address, data: bytes) -> None:
        assert self._listen is not None
        self._forward(self._listen, data, client)

    def _forward(self, endpoint: _Endpoint, data: bytes, dest: Address) -> None:
        if self._closed or not self._network.admit():
            return
        delay = self._network.plan.delay_s
        if delay <= 0:
            self._send(endpoint, data, dest)
            return
        # One FIFO and one timer: equal delays then keep the order exactly (timers due at the same
        # instant have no guaranteed order in asyncio).
        loop = asyncio.get_running_loop()
        self._delayed.append((loop.time() + delay, endpoint, data, dest))
        if self._timer is None:
            self._timer = loop.call_at(self._delayed[0][0] - _EARLY_S, self._release)

    def _release(self) -> None:
        self._timer = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        while self._delayed and self._delayed[0][0] <= now + _EARLY_S:
            _, endpoint, data, dest = self._delayed.popleft()
            self._send(endpoint, data, dest)
        if self._delayed and not self._closed:
            self._timer = loop.call_at(self._delayed[0][0] - _EARLY_S, self._release)

    def _send(self, endpoint: _Endpoint, data: bytes, dest: Address) -> None:
        if not self._closed and endpoint.transport is not None and not endpoint.transport.is_closing():
            endpoint.transport.sendto(data, dest)

    def close(self) -> None:
        """Close the listening socket and every upstream socket; delayed datagrams are dropped."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._delayed.clear()
        for endpoint in [self._listen, *self._upstream.values()]:
            if endpoint is not None and endpoint.transport is not None:
                endpoint.transport.close()
        self._upstream.clear()
