"""Client side of the signaling protocol (``docs/signaling.md``): join a room, exchange signals, report stats.

>>> client = SignalingClient("http://127.0.0.1:8443", token)   # doctest: +SKIP
>>> welcome = await client.connect()                             # doctest: +SKIP
>>> await client.send_signal("bob", {"sdp": ..., "type": "offer"})  # doctest: +SKIP
>>> async for message in client: ...                             # doctest: +SKIP

After the connection drops (``recv`` raises :class:`SignalingClosedError`, iteration ends), calling
:meth:`SignalingClient.connect` again rejoins with the session's resume ticket (the ``welcome`` gave it;
the token was spent by the first join, ``net.seats``); the server gives the participant
the same index and tells the others ``peer-left`` then ``peer-joined``. A client that sets
``claim_index`` first asks for that index back (a server restarted without its index file does not
know it); :class:`Backoff` spaces the attempts while the server is away.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
import ssl as ssl_module
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp

from net.errors import NetError
from net.seats import RESUME_HEADER

log = logging.getLogger(__name__)

#: Response header in which the server names why it refused a join (mirrors ``net.signaling``).
REASON_HEADER = "X-Medverse-Reason"


_TWIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_TWIN_HASH = re.compile(r"[0-9a-f]{16,64}")


@dataclass(frozen=True)
class RoomTwin:
    """The room's twin as signaling knows it (docs/signaling.md, "The room's twin"): a ``name`` (1-64 of
    ``[A-Za-z0-9_.-]``) and the content hash of the twin, ``sha256`` (16-64 lowercase hex digits; how
    it is computed is the participants' business: the server only stores and passes the strings)."""

    name: str
    sha256: str

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _TWIN_NAME.fullmatch(self.name):
            raise SignalingError(f"twin name must be 1-64 of [A-Za-z0-9_.-], got {str(self.name)[:80]!r}")
        if not isinstance(self.sha256, str) or not _TWIN_HASH.fullmatch(self.sha256):
            raise SignalingError(f"twin sha256 must be 16-64 lowercase hex digits, got {str(self.sha256)[:80]!r}")

    @classmethod
    def parse(cls, text: str) -> RoomTwin:
        """``NAME:SHA256`` (as ``medverse consult serve --twin`` takes it)."""
        name, sep, digest = text.rpartition(":")
        if not sep:
            raise SignalingError(f"expected NAME:SHA256, got {text[:80]!r}")
        return cls(name, digest)

    @classmethod
    def from_message(cls, value: Any) -> RoomTwin | None:
        """The ``twin`` of a ``welcome`` or ``twin`` message (``{"name", "sha256"}`` or null)."""
        if value is None:
            return None
        if not isinstance(value, dict):
            raise SignalingError(f"twin must be an object or null, got {type(value).__name__}")
        return cls(value.get("name"), value.get("sha256"))  # type: ignore[arg-type]

    def message(self) -> dict[str, str]:
        """As messages carry it."""
        return {"name": self.name, "sha256": self.sha256}


@dataclass
class Backoff:
    """Exponential back-off with jitter for reconnecting: the n-th delay (from 0) is drawn uniformly
    from [ceiling / 2, ceiling], ceiling = min(``cap_s``, ``initial_s`` * 2**(n + 1)): the first from
    [``initial_s``, 2 ``initial_s``], the later ones doubling up to [``cap_s`` / 2, ``cap_s``].

    So clients that lost the server together (it restarted) do not come back in lockstep, and a server
    that stays away costs one attempt every 1.5-3 s, not two a second; the cap keeps a participant's
    return within about 3 s of the server's.

    Attributes
    ----------
    initial_s, cap_s : float
        The first delay and the largest, seconds.
    rng : random.Random
        Source of the jitter (seeded in tests).
    attempts : int
        Delays drawn since the last :meth:`reset`.
    """

    initial_s: float = 0.25
    cap_s: float = 3.0
    rng: random.Random = field(default_factory=random.Random)
    attempts: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.initial_s <= self.cap_s:
            raise ValueError(f"back-off needs 0 < initial_s <= cap_s, got {self.initial_s}, {self.cap_s}")

    def next_delay(self) -> float:
        """The delay before the next attempt, seconds."""
        ceiling = min(self.cap_s, self.initial_s * 2.0 ** min(self.attempts + 1, 64))
        self.attempts += 1
        return self.rng.uniform(max(self.initial_s, ceiling / 2), ceiling)

    def reset(self) -> None:
        """Start again from ``initial_s`` (after a successful connection)."""
        self.attempts = 0


class SignalingError(NetError):
    """The signaling server could not be used (refused, unreachable, closed, or said something invalid)."""


class SignalingRefusedError(SignalingError):
    """The server refused the join (HTTP 401 for a missing/invalid/expired token, 403 full, 503 busy)."""

    def __init__(self, status: int, reason: str) -> None:
        self.status = status
        self.reason = reason
        super().__init__(f"signaling server refused the join (HTTP {status}): {reason}")


class ServerUnreachableError(SignalingError):
    """No signaling server answered at the URL."""


class SignalingClosedError(SignalingError):
    """The signaling connection is closed (``code`` is the WebSocket close code, 4001 when replaced)."""

    def __init__(self, code: int | None, reason: str = "") -> None:
        self.code = code
        super().__init__(f"signaling connection closed (code {code}){': ' + reason if reason else ''}")


def websocket_url(url: str) -> str:
    """Normalise ``http(s)://host:port[/ws]`` or ``ws(s)://...`` to the ``ws(s)://host:port/ws`` endpoint."""
    parts = urlsplit(url)
    scheme = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}.get(parts.scheme)
    if scheme is None or not parts.netloc:
        raise SignalingError(f"signaling URL must be http(s):// or ws(s)://host:port (got {url!r})")
    path = parts.path if parts.path not in ("", "/") else "/ws"
    return urlunsplit((scheme, parts.netloc, path, "", ""))


class SignalingClient:
    """A participant's connection to the signaling server.

    Parameters
    ----------
    url : str
        Server URL (``http://127.0.0.1:8443``, ``wss://host:8443/ws``, ...).
    token : str
        Join token (sent as ``Authorization: Bearer``, never in the URL).
    ssl : ssl.SSLContext, bool or None
        TLS verification for ``wss``: a context (e.g. trusting a self-signed certificate), True for the
        system store, False to skip verification (tests only).
    timeout_s : float
        Limit for connecting and for the ``welcome`` message, seconds.
    heartbeat_s : float or None
        WebSocket ping interval, seconds (None: rely on the server's pings).
    room : str or None
        The room the caller means to join; the server refuses (401) a token for any other room.
    twin : RoomTwin or None
        The twin this participant announces on joining (sent as ``?twin=NAME&twin_sha256=HASH``): the
        server makes it the room's twin when the room has none and the token's role is surgeon. May
        be set (``client.twin = ...``) before ``connect``.

    Attributes
    ----------
    room_twin : RoomTwin or None
        The room's twin as the server last said (``welcome``, then ``twin`` messages as ``recv`` reads
        them); None while nobody has named one.
    claim_index : int or None
        The index to ask for on the next ``connect`` (``?index=N``): a rejoining participant's own,
        which the server adopts when nobody else holds it (docs/signaling.md, "Restarts and outages").
    on_resume_ticket : callable or None
        Called with the new :attr:`resume_ticket` each time it changes (a welcome gave another, or it
        was set), on the thread that changed it, before ``connect`` returns: a holder elsewhere (the
        frame side of ``sessions.consult.netproc``) learns it without waiting to ask. An exception it
        raises is logged, never raised to ``connect``.
    """

    def __init__(
        self,
        url: str,
        token: str,
        *,
        ssl: ssl_module.SSLContext | bool | None = None,
        timeout_s: float = 10.0,
        heartbeat_s: float | None = 10.0,
        room: str | None = None,
        twin: RoomTwin | None = None,
    ) -> None:
        self.url = websocket_url(url)
        self._token = token
        self._ssl = True if ssl is None else ssl
        self._timeout_s = timeout_s
        self._heartbeat_s = heartbeat_s
        self._room = room
        self.twin = twin
        self._session: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self.welcome: dict[str, Any] | None = None
        self.room_twin: RoomTwin | None = None
        self.claim_index: int | None = None
        # The session's resume ticket (net.seats) from the last welcome: the token is spent by the first
        # join, and every reconnect proves with this that it is the same session.
        self._resume: str | None = None
        self.on_resume_ticket: Callable[[str | None], None] | None = None

    @property
    def resume_ticket(self) -> str | None:
        """The session's current resume ticket (None before the first welcome). Another client (a process
        started again in place of one that died) given it rejoins the same seat: the next
        :meth:`connect` presents it instead of the token."""
        return self._resume

    @resume_ticket.setter
    def resume_ticket(self, ticket: str | None) -> None:
        if ticket == self._resume:
            return
        self._resume = ticket
        if self.on_resume_ticket is not None:
            try:
                self.on_resume_ticket(ticket)
            except Exception:
                log.exception("the resume ticket's observer failed")

    @property
    def connected(self) -> bool:
        """True while the WebSocket is open."""
        return self._ws is not None and not self._ws.closed

    async def connect(self) -> dict[str, Any]:
        """Join (or rejoin) the room; return the ``welcome`` message.

        Raises
        ------
        SignalingRefusedError
            The server refused the token or the room is full.
        ServerUnreachableError
            Nothing answered at the URL within ``timeout_s``.
        SignalingError
            The first message was not ``welcome``.
        """
        if self._ws is not None and not self._ws.closed:
            await self._ws.close()
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        try:
            self._ws = await self._session.ws_connect(
                self.url,
                headers={RESUME_HEADER: self._resume} if self._resume else {"Authorization": f"Bearer {self._token}"},
                params=self._params(),
                heartbeat=self._heartbeat_s,
                ssl=self._ssl,
                timeout=aiohttp.ClientWSTimeout(ws_close=2.0),
                max_msg_size=4 * 1024 * 1024,
                autoclose=True,
            )
        except aiohttp.WSServerHandshakeError as exc:
            await self.close()
            reason = exc.headers.get(REASON_HEADER, exc.message) if exc.headers else exc.message
            raise SignalingRefusedError(exc.status, reason) from None
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            await self.close()
            raise ServerUnreachableError(f"cannot reach signaling server at {self.url}: {exc or type(exc).__name__}") from None
        try:
            welcome = await asyncio.wait_for(self.recv(), self._timeout_s)
        except TimeoutError:
            await self._ws.close()
            raise SignalingError(f"no welcome from {self.url} within {self._timeout_s:g} s") from None
        if welcome.get("type") != "welcome":
            await self._ws.close()
            raise SignalingError(f"expected a welcome message, got {welcome.get('type')!r}: {welcome.get('reason', '')}")
        # Kept here, out of the welcome that callers store or record: it is this session's credential.
        self.resume_ticket = welcome.pop("resume", None)
        self.welcome = welcome
        self._note_twin(welcome)
        log.info("joined room %s as %s (index %s, %s)",
                 welcome["room"], welcome["participant"], welcome["index"], welcome["topology"])
        return welcome

    async def recv(self) -> dict[str, Any]:
        """The next message from the server.

        Raises
        ------
        SignalingClosedError
            The connection is closed.
        """
        ws = self._require_ws()
        while True:
            try:
                msg = await ws.receive()
            except ConnectionError as exc:  # answering a ping (autoping) on a socket the server is closing
                raise SignalingClosedError(ws.close_code, str(exc)) from None
            if msg.type == aiohttp.WSMsgType.TEXT:
                try:
                    message = json.loads(msg.data)
                except ValueError:
                    log.warning("ignoring a non-JSON message from the signaling server")
                    continue
                if isinstance(message, dict):
                    if message.get("type") == "twin":
                        self._note_twin(message)
                    return message
                log.warning("ignoring a non-object message from the signaling server")
            elif msg.type == aiohttp.WSMsgType.CLOSE:
                # The code the server sent (4001: replaced); ws.close_code can read 1006 by now, because
                # the automatic close reply finds the server already gone.
                raise SignalingClosedError(msg.data if isinstance(msg.data, int) else ws.close_code, str(msg.extra or ""))
            elif msg.type in (aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED):
                raise SignalingClosedError(ws.close_code, str(msg.extra or ""))
            elif msg.type == aiohttp.WSMsgType.ERROR:
                raise SignalingClosedError(ws.close_code, str(ws.exception() or ""))

    def _params(self) -> dict[str, str]:
        params = {"room": self._room} if self._room is not None else {}
        if self.twin is not None:
            params |= {"twin": self.twin.name, "twin_sha256": self.twin.sha256}
        if self.claim_index is not None:
            params["index"] = str(self.claim_index)
        return params

    def _note_twin(self, message: dict[str, Any]) -> None:
        try:
            self.room_twin = RoomTwin.from_message(message.get("twin"))
        except SignalingError as exc:
            log.warning("ignoring the server's twin: %s", exc)

    async def send_signal(self, to: str, data: dict[str, Any]) -> None:
        """Send ``data`` (an SDP description, say) to participant ``to`` (or ``"relay"``)."""
        await self._send({"type": "signal", "to": to, "data": data})

    async def send_stats(self, report: dict[str, Any]) -> None:
        """Publish a stats report (shown in the server's ``/stats``; ``report["links"]``: peer -> figures)."""
        await self._send({"type": "stats", "report": report})

    async def _send(self, message: dict[str, Any]) -> None:
        ws = self._require_ws()
        try:
            await ws.send_str(json.dumps(message, separators=(",", ":")))
        except (ConnectionError, RuntimeError) as exc:
            raise SignalingClosedError(ws.close_code, str(exc)) from None

    def _require_ws(self) -> aiohttp.ClientWebSocketResponse:
        if self._ws is None:
            raise SignalingClosedError(None, "not connected")
        return self._ws

    async def close(self) -> None:
        """Leave the room and release the HTTP session; ``connect()`` may be called again afterwards."""
        if self._ws is not None:
            await self._ws.close()
        if self._session is not None:
            await self._session.close()
            self._session = None

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[dict[str, Any]]:
        while True:
            try:
                yield await self.recv()
            except SignalingClosedError:
                return

    async def __aenter__(self) -> SignalingClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
