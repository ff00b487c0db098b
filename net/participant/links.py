"""The peer links: one ``PeerLink`` per remote (mesh) or one to the relay (relay room), offered, answered and rebuilt.

The offer rule of docs/signaling.md: whoever joined later offers to those already there, and in a
relay room everyone offers to the relay, which never offers. aiortc has no ICE restart, so a link
that fails (aiortc says so, or nothing at all has arrived on it for ``liveness_timeout_s``: remotes
and the relay answer pings, so a healthy link is never that silent) is closed and the side that
offered it offers a new connection through signaling, again every ``connect_timeout_s`` while the
network stays down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from typing import TYPE_CHECKING, Any

from net.errors import NetError
from net.peer import PeerError, PeerLink
from net.tokens import RELAY_ID

if TYPE_CHECKING:
    from net.participant.room import Participant

log = logging.getLogger(__name__)


class Links:
    """The participant's peer links by remote name (``RELAY_ID`` for the relay)."""

    def __init__(self, host: Participant) -> None:
        self._host = host
        self.links: dict[str, PeerLink] = {}
        self._offered: set[str] = set()  # remotes this side offers to (it re-offers after a failure)

    def open_links(self) -> list[PeerLink]:
        """The links open now."""
        return [link for link in self.links.values() if link.is_open]

    def _make_link(self, remote: str) -> PeerLink:
        host = self._host
        net = host.network
        link = PeerLink(
            remote,
            host.on_message,
            local_sdp_filter=net.rewrite_sdp if net else None,
            remote_sdp_filter=net.rewrite_sdp if net else None,
        )
        link.on_state_change = self._state_changed
        return link

    async def offer(self, remote: str, *, retry: bool = False) -> None:
        """Offer a new link to ``remote`` through signaling; with ``retry``, offer again if it does not open."""
        host = self._host
        if (remote == RELAY_ID) != (host.roster.topology == "relay"):
            return  # the room switched topology while offers were being made
        self._offered.add(remote)
        link = self._make_link(remote)
        self.links[remote] = link
        offer = await link.create_offer()
        if self.links.get(remote) is link and not host.stopping:
            await host.client.send_signal(remote, offer)
            timeout = host.config.connect_timeout_s
            if retry and 0 < timeout < math.inf:
                host.spawn(self._watch_connect(link, timeout))

    async def on_signal(self, sender: str, data: Any) -> None:
        """Take an offer, answer or ``closed`` notice from ``sender`` (``PeerError`` for anything else)."""
        host = self._host
        if not isinstance(data, dict):
            raise PeerError(f"signal from {sender} without a data object")
        if data.get("type") == "offer":
            if host.roster.topology == "relay":
                # In relay mode everyone offers to the relay and the relay never offers.
                raise PeerError(f"offer from {sender} in a relay room")
            link = self._make_link(sender)
            try:
                answer = await link.handle_signal(data)
            except PeerError:
                await link.close()  # an unusable offer leaves the existing connection alone
                raise
            assert answer is not None
            await self.drop(sender)
            self.links[sender] = link
            await host.client.send_signal(sender, answer)
        elif data.get("type") == "answer":
            offered = self.links.get(sender)
            if offered is None:
                raise PeerError(f"answer from {sender} without an offer")
            await offered.handle_signal(data)
        elif data.get("type") == "closed" and sender == RELAY_ID:
            # The relay gave our link up (it heard nothing on it): build a new one now, not after our own timeout.
            given_up = self.links.get(sender)
            if given_up is not None and given_up.state != "closed":
                host.counters["links_closed_by_relay"] += 1
                log.info("%s: the relay closed our link (%s); offering again", host.name, data.get("reason"))
                await given_up.close()  # -> "closed" -> _state_changed re-offers
        else:
            raise PeerError(f"signal from {sender} of unknown type {data.get('type')!r}")

    async def _watch_connect(self, link: PeerLink, timeout: float) -> None:
        """Give up an offered link that has not opened in ``timeout`` s; closing it makes a new offer."""
        host = self._host
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(link.opened.wait(), timeout)
        if not link.opened.is_set() and self.links.get(link.remote) is link and not host.stopping:
            host.counters["connect_timeouts"] += 1
            log.info("%s: link to %s not open after %.1f s; offering again", host.name, link.remote, timeout)
            await link.close()  # -> "closed" -> _state_changed re-offers

    async def liveness_loop(self) -> None:
        """Close open links silent for ``liveness_timeout_s`` (a dead path aiortc cannot restart).

        A healthy link is never that silent: a mesh remote answers pings, and so does the relay (as
        participant 0), even for a participant alone in its room.
        """
        host = self._host
        timeout = host.config.liveness_timeout_s
        if not 0 < timeout < math.inf:
            return
        while not host.stopping:
            await asyncio.sleep(min(0.5, timeout / 4))
            for link in list(self.links.values()):
                if link.is_open and link.silent_for() > timeout:
                    host.counters["links_dead"] += 1
                    log.warning("%s: nothing from %s for %.1f s; closing the link", host.name, link.remote, link.silent_for())
                    await link.close()  # -> "closed" -> the offering side builds a new connection

    async def drop(self, remote: str) -> None:
        """Close the link to ``remote`` without offering again."""
        link = self.links.pop(remote, None)
        if link is not None:
            self._host.sync.forget_link(link)
            link.on_state_change = None
            await link.close()

    async def drop_all(self) -> None:
        """Close every link without offering again."""
        for name in list(self.links):
            await self.drop(name)

    def _state_changed(self, link: PeerLink, state: str) -> None:
        host = self._host
        if state == "open":
            # at once, not in the task: a rebuilt link must be marked as resuming before any live op can
            # be sent on it (make_op sends on every open link), or a new op overtakes the resent ones
            host.sync.link_opened(link)
            host.spawn(host.on_link_open(link))
        elif state in ("failed", "closed") and self.links.get(link.remote) is link and not host.stopping:
            host.sync.forget_link(link)
            host.counters["links_failed"] += 1
            # aiortc has no ICE restart: the offering side builds a new connection through signaling.
            if link.remote in self._offered and (link.remote == RELAY_ID or host.roster.index_of(link.remote) is not None):
                host.spawn(self._reoffer(link))

    async def _reoffer(self, link: PeerLink) -> None:
        await asyncio.sleep(0.2)
        if self.links.get(link.remote) is link and not self._host.stopping:
            await self.drop(link.remote)
            with contextlib.suppress(NetError):
                await self.offer(link.remote, retry=True)

    async def close(self) -> None:
        """Close every link (leaving the room)."""
        for link in list(self.links.values()):
            await link.close()
        self.links.clear()
