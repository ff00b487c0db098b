"""One WebRTC peer connection to one remote, with the three data channels of docs/protocol.md.

A :class:`PeerLink` wraps an aiortc ``RTCPeerConnection``. The side that offers creates the ``pose``
(unordered, ``maxRetransmits=0``), ``state`` (ordered, reliable) and ``clock`` (unordered,
``maxRetransmits=0``) channels; the answering side receives them. Messages are handed to a callback
as raw bytes with the channel label: decoding is the caller's business (the relay forwards most of
them without decoding at all).

Sending a pose never queues behind older poses: when the channel's ``bufferedAmount`` is above
``pose_buffer_limit`` the pose is skipped and counted (newest wins anyway, and flooding an unreliable
aiortc channel stalls its SCTP association).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiortc import RTCConfiguration, RTCDataChannel, RTCPeerConnection, RTCSessionDescription
from aiortc.exceptions import InvalidAccessError, InvalidStateError

from net.errors import NetError
from net.protocol import CHANNELS

log = logging.getLogger(__name__)

#: Bytes queued on the pose channel above which new poses are skipped (about 15 records).
POSE_BUFFER_LIMIT = 1024
#: Bytes queued on the state channel above which ``send`` reports back-pressure (ops still queue).
STATE_BUFFER_WARN = 1 << 20

SdpFilter = Callable[[str], Awaitable[str]]
MessageHandler = Callable[["PeerLink", str, bytes], None]


class PeerError(NetError):
    """A peer connection could not be set up (bad session description, wrong signaling state)."""


@dataclass
class LinkCounters:
    """Traffic of one link: messages and payload bytes per direction, skips and errors."""

    sent: int = 0
    received: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    pose_bytes_sent: int = 0
    pose_skipped: int = 0
    send_errors: int = 0

    def as_dict(self) -> dict[str, int]:
        """JSON form."""
        return dict(self.__dict__)


class PeerLink:
    """A peer connection to ``remote`` carrying the ``pose``, ``state`` and ``clock`` channels.

    Parameters
    ----------
    remote : str
        The remote participant id (or ``"relay"``).
    on_message : callable
        ``on_message(link, label, data)`` for every message received (bytes; a text message is passed
        encoded so the decoder rejects and counts it).
    local_sdp_filter, remote_sdp_filter : async callable or None
        Rewrite a session description before it is sent / after it is received (fault injection).
    pose_buffer_limit : int
        See the module docstring, bytes.
    """

    def __init__(
        self,
        remote: str,
        on_message: MessageHandler,
        *,
        local_sdp_filter: SdpFilter | None = None,
        remote_sdp_filter: SdpFilter | None = None,
        pose_buffer_limit: int = POSE_BUFFER_LIMIT,
    ) -> None:
        self.remote = remote
        self._on_message = on_message
        self._local_filter = local_sdp_filter
        self._remote_filter = remote_sdp_filter
        self.pose_buffer_limit = pose_buffer_limit
        # No STUN server: consultations run on one machine or a LAN; host candidates suffice, and a
        # STUN lookup would stall gathering where the network is closed.
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.channels: dict[str, RTCDataChannel] = {}
        self.counters = LinkCounters()
        self.opened = asyncio.Event()
        self.closed = asyncio.Event()
        self.state = "new"
        self.opened_at: float | None = None  # time.monotonic() when all channels were open
        # time.monotonic() of the last message received on any channel (or of opening): a participant's
        # liveness check declares the link dead when it stays silent too long (aioice waits about 30 s).
        self.last_received: float | None = None
        self.on_state_change: Callable[[PeerLink, str], None] | None = None
        self.pc.on("datachannel", self._adopt)
        self.pc.on("connectionstatechange", self._connection_state_changed)

    # ------------------------------------------------------------------ set-up

    def _set_state(self, state: str) -> None:
        if state == self.state:
            return
        log.info("link %s: %s -> %s", self.remote, self.state, state)
        self.state = state
        if state in ("failed", "closed"):
            self.closed.set()
        if self.on_state_change is not None:
            self.on_state_change(self, state)

    def _connection_state_changed(self) -> None:
        state = self.pc.connectionState
        if state in ("failed", "closed"):
            self._set_state(state)
        elif state == "connected" and self.opened.is_set():
            self._set_state("open")

    def _adopt(self, channel: RTCDataChannel) -> None:
        if channel.label not in CHANNELS or channel.label in self.channels:
            log.warning("link %s: ignoring unexpected data channel %r", self.remote, channel.label)
            return
        self.channels[channel.label] = channel
        label = channel.label

        @channel.on("message")
        def on_message(message: bytes | str) -> None:
            data = message.encode() if isinstance(message, str) else message
            self.counters.received += 1
            self.counters.bytes_received += len(data)
            self.last_received = time.monotonic()
            self._on_message(self, label, data)

        @channel.on("open")
        def on_open() -> None:
            self._check_open()

        @channel.on("close")
        def on_close() -> None:
            if self.state == "open":
                self._set_state("closed")

        self._check_open()

    def _check_open(self) -> None:
        if not self.opened.is_set() and len(self.channels) == len(CHANNELS) and all(
            c.readyState == "open" for c in self.channels.values()
        ):
            self.opened.set()
            self.opened_at = self.last_received = time.monotonic()
            self._set_state("open")

    async def _describe(self) -> dict[str, str]:
        desc = self.pc.localDescription
        sdp = desc.sdp
        if self._local_filter is not None:
            sdp = await self._local_filter(sdp)
        return {"type": desc.type, "sdp": sdp}

    async def create_offer(self) -> dict[str, str]:
        """Create the three channels and the offer; returns ``{"type": "offer", "sdp": ...}`` to signal."""
        for spec in CHANNELS.values():
            channel = self.pc.createDataChannel(spec.label, ordered=spec.ordered, maxRetransmits=spec.max_retransmits)
            self._adopt(channel)
        self._set_state("connecting")
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return await self._describe()

    async def handle_signal(self, data: dict[str, Any]) -> dict[str, str] | None:
        """Take a remote offer (returns the answer to signal back) or answer (returns None).

        Raises
        ------
        PeerError
            ``data`` is not an offer/answer with an SDP string, or arrives in the wrong state.
        """
        kind, sdp = data.get("type"), data.get("sdp")
        if kind not in ("offer", "answer") or not isinstance(sdp, str):
            raise PeerError(f"link {self.remote}: expected an offer or answer with an sdp string, got {kind!r}")
        if "\nm=application " not in sdp.replace("\r\n", "\n"):
            # aiortc accepts a description without any media section; it could never carry our channels.
            raise PeerError(f"link {self.remote}: {kind} has no data-channel (m=application) section")
        if self._remote_filter is not None:
            sdp = await self._remote_filter(sdp)
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type=kind))
            if kind == "answer":
                return None
            self._set_state("connecting")
            await self.pc.setLocalDescription(await self.pc.createAnswer())
        except (ValueError, KeyError, IndexError, TypeError, AttributeError, InvalidAccessError, InvalidStateError) as exc:
            # aiortc raises these for SDP it cannot use; bad input from a remote must not escape.
            raise PeerError(f"link {self.remote}: unusable {kind}: {exc}") from None
        return await self._describe()

    # ------------------------------------------------------------------ traffic

    @property
    def is_open(self) -> bool:
        """True while all three channels are open."""
        return self.state == "open"

    def buffered(self, label: str) -> int:
        """Bytes queued on a channel, not yet handed to the network."""
        channel = self.channels.get(label)
        return channel.bufferedAmount if channel is not None else 0

    def send(self, label: str, data: bytes) -> bool:
        """Send one message; False when the link is not open or (pose only) the channel is backed up."""
        channel = self.channels.get(label)
        if channel is None or channel.readyState != "open":
            return False
        if label == "pose" and channel.bufferedAmount > self.pose_buffer_limit:
            self.counters.pose_skipped += 1
            return False
        try:
            channel.send(data)
        except Exception as exc:  # aiortc raises InvalidStateError and others when the transport goes away
            self.counters.send_errors += 1
            log.debug("link %s: send on %s failed: %s", self.remote, label, exc)
            return False
        self.counters.sent += 1
        self.counters.bytes_sent += len(data)
        if label == "pose":
            self.counters.pose_bytes_sent += len(data)
        return True

    def silent_for(self) -> float:
        """Seconds since the last message arrived (since opening when none has; 0 before opening)."""
        if self.last_received is None:
            return 0.0
        return time.monotonic() - self.last_received

    def pose_kbit_s(self) -> float:
        """Pose bytes sent per second since the link opened, kbit/s (payload, without SCTP/DTLS/UDP headers)."""
        if self.opened_at is None:
            return 0.0
        return self.counters.pose_bytes_sent * 8 / max(1e-3, time.monotonic() - self.opened_at) / 1e3

    async def close(self) -> None:
        """Close the connection (idempotent)."""
        await self.pc.close()
        self._set_state("closed")
