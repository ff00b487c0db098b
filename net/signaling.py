"""The signaling server: an aiohttp app with a WebSocket endpoint, rooms, presence, ``/health``, ``/stats``.

Participants connect to ``/ws`` with a join token (``Authorization: Bearer`` or ``?token=``); the
token decides room, participant id, name and role, and the server stamps every forwarded message with
the sender it took from the token. A client may add ``?room=R``: a token for any other room is then
refused (401) instead of taking the participant to the token's room. Rooms larger than ``mesh_limit``
switch to relay mode: the server runs :class:`net.relay.RelayPeer` in process as participant
``"relay"`` and every participant connects to it instead of to each other. The message schema is in ``docs/signaling.md``.

The room's twin is the room's: the server's configuration names it for every room (``twin``), else
the first surgeon who joins announcing one (``?twin=NAME&twin_sha256=HASH``) names it for that room;
``welcome`` carries it (null while none is named) and a ``twin`` message tells those already in the
room when it gets named. The server stores and passes the strings; participants compare content.

Hostile input never stops the server: every malformed, oversized, binary, unknown, spoofed or
over-rate message is dropped, answered with an ``error`` message and counted in ``/stats``. This
module wires the jobs together; each has its own owner:

- :mod:`net.signaling_messages`: the client message schema (one pure function, fuzzed);
- :mod:`net.seats`: a token exchanged once for a session, resume tickets, revocation;
- :mod:`net.limits`: rate limits per identity and address, back-off, connection caps, timeouts;
- :mod:`net.access`: the Origin check, who reads ``/stats``, what the logs and headers show;
- :mod:`net.rooms`: presence, indices and topology, free of any transport.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import ssl
import time
from collections import Counter
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from net.access import PathOnlyAccessLogger, ServerLog, hide_versions, machine_names, origin_allowed
from net.errors import NetError
from net.limits import ConnectionGuard, LimitBook, Limits, QuietLog
from net.roles import STATS_SCOPE
from net.rooms import MAX_INDEX, IndexFile, Member, Room, RoomError
from net.seats import RESUME_HEADER, RevocationList, SeatBook, SeatError, Session, issue_ticket, verify_ticket
from net.signaling_client import RoomTwin, SignalingError
from net.signaling_messages import SignalingMessageError, parse_client_message
from net.tokens import RELAY_ID, TokenClaims, TokenError, TokenExpiredError, verify_token

log = logging.getLogger(__name__)

WS_PATH = "/ws"
#: Response header with the one-line reason a connection was refused.
REASON_HEADER = "X-Medverse-Reason"
#: Close code sent to a connection that a newer connection of the same participant replaced.
CLOSE_REPLACED = 4001
#: Close code sent after refusing a connection that passed the handshake (room filled meanwhile).
CLOSE_REFUSED = 4003
#: Close code sent when the server shuts down.
CLOSE_SHUTDOWN = WSCloseCode.GOING_AWAY
#: Close code sent to a connection whose token or seat was revoked (``medverse consult revoke``).
CLOSE_REVOKED = 4004
#: Close code sent to a connection that kept sending past its rate limits (net.limits); it backs off.
CLOSE_FLOODING = 4008
#: Names of the counters in ``/stats``; all start at zero so a reader sees every one.
COUNTERS: tuple[str, ...] = (
    "connections",
    "refused_missing_token",
    "refused_invalid_token",
    "refused_expired_token",
    "refused_room_full",
    "refused_too_many_rooms",
    "refused_bad_twin",
    "refused_token_reused",
    "refused_seat_taken",
    "refused_stale_resume",
    "refused_revoked",
    "refused_rate_limited",
    "refused_origin",
    "refused_connections",
    "evicted_idle",
    "malformed_http",
    "revoked",
    "flood_closed",
    "refused_bad_claim",
    "rejoined",
    "index_claims_refused",
    "replaced",
    "messages",
    "malformed",
    "oversized",
    "binary",
    "unknown_type",
    "spoofed",
    "unknown_target",
    "rate_limited",
    "dropped",
    "relay_errors",
)


class ServerConfigError(NetError):
    """The server cannot start as configured (plain HTTP on a public address, bad certificate)."""


@dataclass
class ServerConfig:
    """Configuration of :class:`SignalingServer`.

    Attributes
    ----------
    secret : bytes
        HMAC key that join tokens are checked with.
    host : str
        Address to bind; plain HTTP is allowed only on loopback.
    port : int
        TCP port; 0 picks a free one (see :attr:`SignalingServer.port`).
    ssl_context : ssl.SSLContext or None
        TLS for HTTPS/WSS (see :func:`server_ssl_context`).
    mesh_limit : int
        Participants connected peer to peer; one more switches the room to relay mode.
    max_rooms, max_participants : int
        Rooms on the server; participants in one room.
    max_message_bytes : int
        Largest text message handled; larger ones are answered with an error and dropped.
    max_frame_bytes : int
        Largest frame read at all; a larger one closes the connection (1009) so memory stays bounded.
    max_report_bytes : int
        Largest ``stats`` report stored, as compact JSON.
    rate_per_s, burst : float
        Token bucket of incoming messages per identity (room and participant), across all its
        connections and reconnects (``net.limits``).
    send_queue : int
        Outgoing messages buffered per connection; beyond it messages to that connection are dropped.
    heartbeat_s : float
        WebSocket ping interval; a connection that misses the pong for half of it is closed.
    relay_options : dict
        Keyword arguments for :class:`net.relay.RelayPeer`.
    twin : RoomTwin or None
        The twin of every room on this server (``serve --twin``); None: the first surgeon to join a
        room announcing one names that room's.
    state_file : str, Path or None
        Where the rooms' index tables are kept (``net.rooms.IndexFile``), so that a restarted server
        hands out no index twice; None: kept in memory only (rejoining participants still claim theirs).
    state_ttl_s : float
        Seconds the table of a room that nobody came back to is kept in ``state_file``.
    limits : Limits
        Per-address and per-identity limits, connection caps and timeouts (``net.limits``).
    revocation_file : Path or None
        The revocation list (``net.seats``; ``serve`` uses the file beside the secret).
    allowed_origins : tuple of str
        Browser origins allowed besides the server's own names (``net.access``).
    server_names : tuple of str
        Extra host names the server is reached by (its certificate's, say), for the Origin check.
    """

    secret: bytes
    host: str = "127.0.0.1"
    port: int = 8443
    ssl_context: ssl.SSLContext | None = None
    mesh_limit: int = 4
    max_rooms: int = 64
    max_participants: int = 32
    max_message_bytes: int = 64 * 1024
    max_frame_bytes: int = 1024 * 1024
    max_report_bytes: int = 16 * 1024
    rate_per_s: float = 20.0
    burst: float = 60.0
    send_queue: int = 256
    heartbeat_s: float = 10.0
    relay_options: dict[str, Any] = field(default_factory=dict)
    twin: RoomTwin | None = None
    state_file: str | Path | None = None
    state_ttl_s: float = 12 * 3600.0
    limits: Limits = field(default_factory=Limits)
    revocation_file: Path | None = None
    allowed_origins: tuple[str, ...] = ()
    server_names: tuple[str, ...] = ()


def server_ssl_context(cert: str, key: str) -> ssl.SSLContext:
    """A TLS server context from a PEM certificate chain and private key.

    Raises
    ------
    ServerConfigError
        The files cannot be read or do not match.
    """
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise ServerConfigError(f"cannot load TLS certificate {cert} / key {key}: {exc}") from exc
    return context


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _version() -> str:
    try:
        return metadata.version("medverse")
    except metadata.PackageNotFoundError:
        return "0+unknown"


@dataclass(eq=False)
class _Connection:
    """One accepted WebSocket: who it is, its outgoing queue and writer task, what it has overspent."""

    ws: web.WebSocketResponse
    claims: TokenClaims
    address: str
    queue: asyncio.Queue[str | None]
    resuming: Session | None = None  # the session its resume ticket named; None: it joined with a token
    session: Session | None = None  # the seat's session once admitted
    over_limit: int = 0  # messages refused for rate
    limit_told_at: float = -1.0  # monotonic time of the last rate-limit error sent back
    writer: asyncio.Task[None] | None = None
    twin: RoomTwin | None = None  # the twin it announced on joining
    claim: int | None = None  # the index it says it held (?index=, a rejoin after a server restart)


class SignalingServer:
    """Rooms, presence and message forwarding over WebSockets.

    Parameters
    ----------
    config : ServerConfig
        Addresses, limits and the token secret.

    Examples
    --------
    >>> server = SignalingServer(ServerConfig(secret=secret, port=0))  # doctest: +SKIP
    >>> await server.start(); print(server.url)                       # doctest: +SKIP
    """

    def __init__(self, config: ServerConfig) -> None:
        if config.ssl_context is None and not is_loopback(config.host):
            raise ServerConfigError(
                f"refusing plain HTTP on non-loopback host {config.host!r}: give a TLS certificate and key "
                "(--cert/--key) or bind 127.0.0.1"
            )
        if config.mesh_limit < 1 or config.max_participants < 1 or config.max_rooms < 1:
            raise ServerConfigError("mesh limit, max participants and max rooms must be at least 1")
        self.config = config
        self.counters: Counter[str] = Counter({name: 0 for name in COUNTERS})
        self.seats = SeatBook()
        self.revocations = RevocationList(config.revocation_file)
        self.limits = LimitBook(config.limits, config.rate_per_s, config.burst)
        #: one line per kind of repeated event per 10 s (an attack must not write a line per message)
        self.quiet = QuietLog()
        self.guard = ConnectionGuard(config.limits, self.counters, self.quiet)
        self._names = machine_names(config.host, config.server_names)
        self.rooms: dict[str, Room] = {}
        #: each open room's twin, by room name (absent while none is named)
        self.twins: dict[str, RoomTwin] = {}
        self.started_at = time.time()
        self._started_mono = time.monotonic()
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._port: int | None = None
        # Background tasks (closing replaced sockets, relay start-up) kept referenced until done.
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stopping = False
        # The rooms' index tables, kept across restarts when there is a state file (docs/signaling.md).
        self.index_file = IndexFile(config.state_file, config.state_ttl_s) if config.state_file is not None else None
        if self.index_file is not None:
            rooms = self.index_file.load()
            self.seats.restore(self.index_file.seats, time.time())
            log.info("index file %s: %d room(s) to resume, %d seat(s), %d spent token(s)", self.index_file.path, rooms,
                     len(self.seats.sessions), len(self.seats.spent))
        self.app = web.Application(middlewares=[self._requested])
        self.app.router.add_get("/health", self._health)
        self.app.router.add_get("/stats", self._stats)
        self.app.router.add_get(WS_PATH, self._websocket)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Bind and start serving."""
        hide_versions()
        self.revocations.refresh()
        self._runner = web.AppRunner(
            self.app, access_log_class=PathOnlyAccessLogger, handle_signals=False, shutdown_timeout=2.0,
            keepalive_timeout=self.config.limits.header_timeout_s, logger=ServerLog(self.counters, self.quiet),
        )  # fmt: skip
        await self._runner.setup()
        assert self._runner.server is not None
        self.guard.install(self._runner.server)
        self._site = web.TCPSite(
            self._runner, self.config.host, self.config.port, ssl_context=self.config.ssl_context
        )
        try:
            await self._site.start()
        except OSError as exc:
            await self._runner.cleanup()
            raise ServerConfigError(f"cannot listen on {self.config.host}:{self.config.port}: {exc.strerror or exc}") from exc
        server = self._site._server
        sockets = getattr(server, "sockets", None) or []
        self._port = sockets[0].getsockname()[1] if sockets else self.config.port
        self._spawn(self._watch_revocations())
        log.info("signaling server listening on %s", self.url)

    async def _watch_revocations(self, every_s: float = 1.0) -> None:
        """Read the revocation list when it changes and close the connections it now refuses."""
        while True:
            await asyncio.sleep(every_s)
            if self.revocations.refresh():
                self.apply_revocations()

    def apply_revocations(self) -> int:
        """Close (4004) every connection whose token or seat the revocation list refuses; how many."""
        closed = 0
        for room in list(self.rooms.values()):
            for member in list(room.members.values()):
                conn: _Connection = member.connection
                opened = conn.session.opened_at if conn.session is not None else None
                reason = self.revocations.reason(conn.claims, opened)
                if reason is None:
                    continue
                closed += 1
                self.counters["revoked"] += 1
                log.info("room %s: closed %s's connection: %s", room.name, member.participant, reason)
                self._spawn(conn.ws.close(code=CLOSE_REVOKED, message=reason.encode()[:120]))
        return closed

    async def stop(self) -> None:
        """Close every connection (1001), every relay, and the listening socket; the index file keeps the rooms."""
        self._stopping = True
        for room in list(self.rooms.values()):
            for member in list(room.members.values()):
                await member.connection.ws.close(code=CLOSE_SHUTDOWN, message=b"server shutting down")
        for room in list(self.rooms.values()):
            await self._close_relay(room)
        self.rooms.clear()
        for task in list(self._tasks):
            task.cancel()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        log.info("signaling server stopped")

    @property
    def port(self) -> int:
        """The bound TCP port (useful with ``port=0``)."""
        if self._port is None:
            raise RuntimeError("server not started")
        return self._port

    @property
    def url(self) -> str:
        """Base URL, ``http(s)://host:port``."""
        scheme = "https" if self.config.ssl_context else "http"
        host = f"[{self.config.host}]" if ":" in self.config.host else self.config.host
        return f"{scheme}://{host}:{self.port}"

    @property
    def ws_url(self) -> str:
        """WebSocket URL, ``ws(s)://host:port/ws``."""
        return self.url.replace("http", "ws", 1) + WS_PATH

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ HTTP endpoints

    @web.middleware
    async def _requested(self, request: web.Request, handler: Any) -> web.StreamResponse:
        # A connection that sent a request is no longer an idle one to close when the server is full.
        self.guard.requested(request.transport)
        response: web.StreamResponse = await handler(request)
        return response

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response(self._aggregates())

    def _aggregates(self) -> dict[str, Any]:
        """What anyone may know: no names, no rooms, no versions."""
        return {
            "ok": True,
            "uptime_s": round(time.monotonic() - self._started_mono, 3),
            "rooms": len(self.rooms),
            "participants": sum(len(r.members) for r in self.rooms.values()),
        }

    async def _stats(self, request: web.Request) -> web.Response:
        """Aggregates and counters for anyone; rooms in detail for a token that may read them (net.access)."""
        header = request.headers.get("Authorization", "")
        if header[:7].lower() != "bearer ":
            return web.json_response({**self._aggregates(), "counters": dict(self.counters)})
        try:
            claims = verify_token(self.config.secret, header[7:].strip())
        except TokenError as exc:
            return self._refuse("refused_invalid_token", 401, f"invalid token for /stats: {exc}")
        scope = STATS_SCOPE.get(claims.role)
        if scope is None or self.revocations.reason(claims) is not None:
            return self._refuse("refused_invalid_token", 403, f"role {claims.role!r} may not read /stats in detail")
        return web.json_response(self.snapshot(None if scope == "server" else claims.room))

    def snapshot(self, room_name: str | None = None) -> dict[str, Any]:
        """What ``GET /stats`` returns to a reader allowed to see rooms: rooms (all, or ``room_name``'s),
        participants, links, relay stats and counters."""
        now = time.time()
        rooms = []
        for room in self.rooms.values():
            if room_name is not None and room.name != room_name:
                continue
            participants = []
            links = []
            for member in sorted(room.members.values(), key=lambda m: m.index):
                participants.append(
                    {
                        **member.describe(),
                        "connected_at": member.connected_at,
                        "connected_s": round(now - member.connected_at, 3),
                        "report_at": member.report_at,
                    }
                )
                links.extend(_links_from_report(member))
            relay_stats: dict[str, Any] | None = None
            if room.relay is not None:
                try:
                    relay_stats = room.relay.stats()
                except Exception as exc:  # a broken relay must not take /stats down with it
                    self.counters["relay_errors"] += 1
                    relay_stats = {"error": str(exc)}
            rooms.append(
                {
                    "room": room.name,
                    "topology": room.topology,
                    "relay": room.relay_id,
                    "created_at": room.created_at,
                    "participants": participants,
                    "links": links,
                    "relay_stats": relay_stats,
                    "twin": _twin_message(self.twins.get(room.name)),
                }
            )
        return {
            "version": _version(),
            "uptime_s": round(time.monotonic() - self._started_mono, 3),
            "mesh_limit": self.config.mesh_limit,
            "rooms": rooms,
            "counters": dict(self.counters),
        }

    # ------------------------------------------------------------------ joining

    def _refuse(self, counter: str, status: int, reason: str) -> web.Response:
        self.counters[counter] += 1
        # One line per kind of refusal per 10 s: a spray of bad joins must not become a spray of lines.
        self.quiet.info(counter, f"refused connection: {reason}")
        # A header carries the detail too: WebSocket clients see the status and headers, not the body.
        return web.json_response({"error": reason}, status=status, headers={REASON_HEADER: reason})

    def _credentials(self, request: web.Request) -> tuple[TokenClaims, Session | None] | web.Response:
        """The claims of a join: from a resume ticket (and the session it names) or from a join token."""
        ticket = request.headers.get(RESUME_HEADER) or request.query.get("resume")
        if ticket:
            try:
                session = verify_ticket(self.config.secret, ticket)
            except SeatError as exc:
                return self._refuse("refused_stale_resume", 401, f"invalid resume ticket: {exc}")
            claims: TokenClaims = session.claims
        else:
            header = request.headers.get("Authorization", "")
            token = header[7:].strip() if header[:7].lower() == "bearer " else request.query.get("token", "")
            if not token:
                return self._refuse("refused_missing_token", 401, "missing join token")
            try:
                claims, session = verify_token(self.config.secret, token), None
            except TokenExpiredError as exc:
                return self._refuse("refused_expired_token", 401, f"expired join token: {exc}")
            except TokenError as exc:
                return self._refuse("refused_invalid_token", 401, f"invalid join token: {exc}")
        # A client may name the room it means to join (?room=); a token for another room is refused
        # rather than silently taking the participant somewhere else.
        wanted = request.query.get("room")
        if wanted is not None and wanted != claims.room:
            return self._refuse("refused_invalid_token", 401, f"join token is for another room, not {wanted[:64]!r}")
        self.revocations.refresh()
        revoked = self.revocations.reason(claims, session.opened_at if session else None)
        if revoked is not None:
            return self._refuse("refused_revoked", 401, revoked)
        return claims, session

    def _seat_refusal(self, claims: TokenClaims, session: Session | None) -> tuple[str, str] | None:
        """Why this join may not have the seat now (net.seats), or None."""
        if session is not None:
            return self.seats.check_ticket(session)
        room = self.rooms.get(claims.room)
        return self.seats.check_token(claims, room is not None and claims.participant in room.members)

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        scheme = "https" if self.config.ssl_context else "http"
        allowed = frozenset(self.config.allowed_origins)
        if not origin_allowed(origin, scheme=scheme, port=self.port, names=self._names, allowed=allowed):
            return self._refuse("refused_origin", 403, f"origin {str(origin)[:80]!r} is not served here")
        address = request.remote or "?"
        credentials = self._credentials(request)
        if isinstance(credentials, web.Response):
            return credentials
        claims, resuming = credentials
        wait = self.limits.join((claims.room, claims.participant), address)
        if wait is not None:
            refused = self._refuse("refused_rate_limited", 429, f"too many joins: retry in {wait:.1f} s")
            refused.headers["Retry-After"] = str(max(1, round(wait)))
            return refused
        seat = self._seat_refusal(claims, resuming)
        if seat is not None:
            return self._refuse(seat[0], 409 if seat[0] == "refused_seat_taken" else 401, seat[1])
        announced = self._announced_twin(request)
        if isinstance(announced, web.Response):
            return announced
        claim = self._claimed_index(request)
        if isinstance(claim, web.Response):
            return claim
        # Capacity is checked before the upgrade so refused clients get an HTTP status, and again
        # at admission because other joins may have happened while the handshake was awaited.
        room = self.rooms.get(claims.room)
        if room is None and len(self.rooms) >= self.config.max_rooms:
            return self._refuse("refused_too_many_rooms", 503, f"server has no room left ({self.config.max_rooms} rooms)")
        if room is not None and claims.participant not in room.members and len(room.members) >= room.max_participants:
            return self._refuse("refused_room_full", 403, f"room {claims.room!r} is full ({room.max_participants} participants)")

        ws = web.WebSocketResponse(heartbeat=self.config.heartbeat_s, max_msg_size=self.config.max_frame_bytes, timeout=2.0)
        await ws.prepare(request)
        conn = _Connection(
            ws=ws,
            claims=claims,
            address=address,
            queue=asyncio.Queue(maxsize=self.config.send_queue),
            resuming=resuming,
            twin=announced,
            claim=claim,
        )
        conn.writer = asyncio.ensure_future(self._write_loop(conn))
        admitted = self._admit(conn)
        try:
            if admitted is not None:
                await self._read_loop(conn, *admitted)
        finally:
            if admitted is not None:
                await self._leave(*admitted)
            await self._stop_writer(conn)
            if not ws.closed:
                await ws.close(code=CLOSE_REFUSED if admitted is None else WSCloseCode.OK)
        return ws

    def _admit(self, conn: _Connection) -> tuple[Room, Member] | None:
        """Put an upgraded connection into its room and tell everyone; None when refused (error queued)."""
        claims = conn.claims
        # Checked again now, with no await until the seat is taken: two joins with one token may both
        # have passed the check before the upgrade.
        seat = self._seat_refusal(claims, conn.resuming)
        if seat is not None:
            self._violation(conn, *seat)
            return None
        room = self.rooms.get(claims.room)
        if room is None:
            if len(self.rooms) >= self.config.max_rooms:
                self._violation(conn, "refused_too_many_rooms", "server has no room left")
                return None
            room = Room(claims.room, self.config.mesh_limit, self.config.max_participants)
            self.rooms[claims.room] = room
            if self.index_file is not None:
                room.restore(*self.index_file.take(room.name))
                room.on_assign = lambda: self._note_indices(room)
                if room.topology == "relay":  # it was a relay room: its relay comes back before anyone rejoins
                    self._open_relay(room)
            if self.config.twin is not None:
                self.twins[room.name] = self.config.twin
            log.info("room %s opened", room.name)
        try:
            member, replaced, switched = room.admit(claims.participant, claims.name, claims.role, conn, claim=conn.claim)
        except RoomError as exc:
            self._violation(conn, "refused_room_full", str(exc))
            return None
        self.counters["connections"] += 1
        now = time.time()
        conn.session = self.seats.open(claims, now) if conn.resuming is None else self.seats.resume(conn.resuming, now)
        log.info("room %s: %s joined as %s (index %d, %s)", room.name, member.participant, member.role, member.index,
                 "new session" if conn.resuming is None else "resumed session")
        # A rejoin that kept its index and was not announced as gone keeps its peer connections.
        resumed = member.resumed
        if replaced is not None:
            self.counters["replaced"] += 1
            log.info("room %s: %s reconnected; closing the old connection", room.name, member.participant)
            self._spawn(replaced.connection.ws.close(code=CLOSE_REPLACED, message=b"replaced by a newer connection"))
            if not resumed:  # it did not leave: its peers keep their links to it
                self._broadcast(room, {"type": "peer-left", "participant": member.participant}, exclude=member.participant)
            self._spawn(self._relay_peer_left(room, member.participant))
        if switched:
            self._open_relay(room)
            self._note_indices(room)
            self._broadcast(room, {"type": "topology", "mode": "relay", "relay": RELAY_ID}, exclude=member.participant)
        named = room.name not in self.twins and conn.twin is not None and member.role == "surgeon"
        if named and conn.twin is not None:
            self.twins[room.name] = conn.twin
            log.info("room %s: twin %s (%s), named by %s", room.name, conn.twin.name, conn.twin.sha256, member.participant)
        if self.index_file is not None:  # the new index and session, written once, before the welcome hands out a ticket
            self.index_file.put_seats(self.seats.state(now))
        welcome = {**room.welcome(member), "twin": _twin_message(self.twins.get(room.name)),
                   "resume": issue_ticket(self.config.secret, conn.session, now=now)}  # fmt: skip
        self._enqueue(conn, welcome)
        if named:
            self._broadcast(room, {"type": "twin", "twin": _twin_message(conn.twin)}, exclude=member.participant)
        if resumed:
            self.counters["rejoined"] += 1
        elif conn.claim is not None and conn.claim != member.index:
            self.counters["index_claims_refused"] += 1
            log.info("room %s: %s claimed index %d, held by another; given %d",
                     room.name, member.participant, conn.claim, member.index)
        joined = {"type": "peer-joined", "peer": member.describe(), **({"resumed": True} if resumed else {})}
        self._broadcast(room, joined, exclude=member.participant)
        return room, member

    def _claimed_index(self, request: web.Request) -> int | web.Response | None:
        """The index a rejoining client says it held (``?index=N``), None, or a 400 refusal."""
        text = request.query.get("index")
        if text is None:
            return None
        if not (text.isdigit() and len(text) <= 5 and 1 <= int(text) <= MAX_INDEX):
            return self._refuse("refused_bad_claim", 400, f"index claim must be an integer 1-{MAX_INDEX}, got {text[:16]!r}")
        return int(text)

    def _note_indices(self, room: Room) -> None:
        """Record ``room``'s table and topology for the state file; ``_admit`` writes it with the seat, once."""
        if self.index_file is not None and self.rooms.get(room.name) is room:
            self.index_file.put(room.name, room.index_table(), room.topology, write=False)

    def _announced_twin(self, request: web.Request) -> RoomTwin | web.Response | None:
        """The twin a joining client announced (``?twin=NAME&twin_sha256=HASH``), None, or a 400 refusal."""
        name, digest = request.query.get("twin"), request.query.get("twin_sha256")
        if name is None and digest is None:
            return None
        try:
            return RoomTwin(name or "", digest or "")
        except SignalingError as exc:
            return self._refuse("refused_bad_twin", 400, f"announced twin: {exc}")

    async def _leave(self, room: Room, member: Member) -> None:
        if not room.remove(member):
            return  # replaced by a newer connection, which already told the others
        log.info("room %s: %s left", room.name, member.participant)
        if not self._stopping:  # shutting down, nobody left: the peers' links stay up through a restart
            self._broadcast(room, {"type": "peer-left", "participant": member.participant})
        await self._relay_peer_left(room, member.participant)
        if not room.members and self.rooms.get(room.name) is room:
            del self.rooms[room.name]
            self.twins.pop(room.name, None)
            if self.index_file is not None and not self._stopping:
                self.index_file.drop(room.name)
            await self._close_relay(room)
            log.info("room %s closed", room.name)

    # ------------------------------------------------------------------ relay

    def _open_relay(self, room: Room) -> None:
        # Imported on first use: aiortc is heavy and mesh rooms never need it.
        from net.relay import RelayPeer  # noqa: PLC0415

        async def send_signal(message: dict[str, Any]) -> None:
            self._relay_send(room, message)

        def role_of(participant: str) -> str:
            member = room.members.get(participant)
            return member.role if member is not None else ""

        # The relay checks each op against its sender's role (docs/roles.md): the token roles come from here.
        room.relay = RelayPeer(room.name, send_signal, role_of=role_of, **self.config.relay_options)
        log.info("room %s: relay peer started", room.name)

    async def _close_relay(self, room: Room) -> None:
        relay, room.relay = room.relay, None
        if relay is None:
            return
        try:
            await relay.close()
        except Exception:  # the relay's failure must not keep the room (or the server) from closing
            self.counters["relay_errors"] += 1
            log.exception("room %s: relay close failed", room.name)

    async def _relay_peer_left(self, room: Room, participant: str) -> None:
        handler = getattr(room.relay, "peer_left", None)
        if handler is None:
            return
        try:
            await handler(participant)
        except Exception:
            self.counters["relay_errors"] += 1
            log.exception("room %s: relay failed to drop %s", room.name, participant)

    def _relay_send(self, room: Room, message: dict[str, Any]) -> None:
        """Forward a ``{"type": "signal", "to": P, "data": {...}}`` from the relay, stamped ``from: relay``."""
        to = message.get("to") if isinstance(message, dict) else None
        target = room.members.get(to) if isinstance(to, str) else None
        if target is None or message.get("type") != "signal" or not isinstance(message.get("data"), dict):
            self.counters["relay_errors"] += 1
            log.warning("room %s: relay sent an undeliverable message to %r", room.name, to)
            return
        self._enqueue(target.connection, {"type": "signal", "from": RELAY_ID, "data": message["data"]})

    # ------------------------------------------------------------------ messages

    async def _read_loop(self, conn: _Connection, room: Room, member: Member) -> None:
        async for msg in conn.ws:
            if msg.type == WSMsgType.TEXT:
                await self._on_text(conn, room, member, msg.data)
            elif msg.type == WSMsgType.BINARY:
                self._violation(conn, "binary", "binary frames are not part of the signaling protocol")
            elif msg.type == WSMsgType.ERROR:
                # aiohttp reports a frame above max_frame_bytes here and closes the socket.
                exc = conn.ws.exception()
                if "too big" in str(exc).lower() or getattr(exc, "code", None) == WSCloseCode.MESSAGE_TOO_BIG:
                    self.counters["oversized"] += 1
                log.info("room %s: %s: websocket error: %s", room.name, member.participant, exc)
                break

    async def _on_text(self, conn: _Connection, room: Room, member: Member, text: str) -> None:
        self.counters["messages"] += 1
        if not self.limits.message((conn.claims.room, conn.claims.participant), conn.address):
            self._over_limit(conn)
            return
        try:
            message = parse_client_message(text, self.config.max_message_bytes, self.config.max_report_bytes)
        except SignalingMessageError as exc:
            self._violation(conn, exc.counter, exc.reason)
            return
        if message["type"] == "signal":
            await self._on_signal(conn, room, member, message["to"], message["data"])
        else:
            member.report = message["report"]
            member.report_at = time.time()

    async def _on_signal(self, conn: _Connection, room: Room, member: Member, to: str, data: dict[str, Any]) -> None:
        if to == member.participant:
            self._violation(conn, "unknown_target", "signal: cannot signal yourself")
            return
        forwarded = {"type": "signal", "from": member.participant, "data": data}
        if to == RELAY_ID and room.relay is not None:
            try:
                await room.relay.handle_signal(forwarded)
            except Exception as exc:  # a message the relay cannot use is the sender's problem, not the server's
                self.counters["relay_errors"] += 1
                log.warning("room %s: relay rejected a signal from %s: %s", room.name, member.participant, exc)
                self._enqueue(conn, _error(f"relay rejected the signal: {exc}"))
            return
        target = room.members.get(to)
        if target is None:
            self._violation(conn, "unknown_target", f"signal: no participant {to[:64]!r} in room {room.name!r}")
            return
        self._enqueue(target.connection, forwarded)

    def _over_limit(self, conn: _Connection) -> None:
        """A message over its identity's or address's limit: counted, dropped, told at most once a second;
        a connection that keeps on is closed and its identity and address back off (net.limits)."""
        self.counters["rate_limited"] += 1
        conn.over_limit += 1
        if conn.over_limit == self.config.limits.flood_close_after:
            self.counters["flood_closed"] += 1
            backoff = self.limits.strike((conn.claims.room, conn.claims.participant))
            self.quiet.info("flood", f"room {conn.claims.room}: closed {conn.claims.participant}'s connection from "
                           f"{conn.address} for flooding; joins barred for {backoff:g} s")
            self._spawn(conn.ws.close(code=CLOSE_FLOODING, message=b"rate limit: back off before rejoining"))
            return
        now = time.monotonic()
        if now - conn.limit_told_at >= 1.0:
            conn.limit_told_at = now
            self._enqueue(conn, _error(f"rate limit exceeded ({self.config.rate_per_s:g} messages/s per participant)"))

    def _violation(self, conn: _Connection, counter: str, reason: str) -> None:
        self.counters[counter] += 1
        log.debug("%s/%s: %s", conn.claims.room, conn.claims.participant, reason)
        self._enqueue(conn, _error(reason))

    # ------------------------------------------------------------------ sending

    def _enqueue(self, conn: _Connection, message: dict[str, Any]) -> None:
        """Queue a message for one connection; a full queue (a peer that stopped reading) drops it."""
        try:
            conn.queue.put_nowait(json.dumps(message, separators=(",", ":")))
        except asyncio.QueueFull:
            self.counters["dropped"] += 1

    def _broadcast(self, room: Room, message: dict[str, Any], *, exclude: str | None = None) -> None:
        for member in room.others(exclude) if exclude else sorted(room.members.values(), key=lambda m: m.index):
            self._enqueue(member.connection, message)

    async def _stop_writer(self, conn: _Connection) -> None:
        """Let the writer flush what is queued (a final error, say), then end it."""
        assert conn.writer is not None
        try:
            conn.queue.put_nowait(None)
        except asyncio.QueueFull:
            conn.writer.cancel()
        _, pending = await asyncio.wait({conn.writer}, timeout=2.0)
        for task in pending:
            task.cancel()

    async def _write_loop(self, conn: _Connection) -> None:
        # One writer per connection: a slow reader delays only its own messages, never the sender's loop.
        while (text := await conn.queue.get()) is not None:
            try:
                await conn.ws.send_str(text)
            except (ConnectionError, RuntimeError) as exc:
                log.debug("%s/%s: send failed: %s", conn.claims.room, conn.claims.participant, exc)
                return


def _twin_message(twin: RoomTwin | None) -> dict[str, str] | None:
    return None if twin is None else twin.message()


def _error(reason: str) -> dict[str, Any]:
    return {"type": "error", "reason": reason}


def _links_from_report(member: Member) -> list[dict[str, Any]]:
    """Per-link latency figures from a participant's report (``report["links"]``: peer -> figures)."""
    links = (member.report or {}).get("links")
    if not isinstance(links, dict):
        return []
    out = []
    for peer, figures in links.items():
        if isinstance(figures, dict):
            numbers = {k: v for k, v in figures.items() if isinstance(v, int | float) and not isinstance(v, bool)}
            out.append({"from": str(peer), "to": member.participant, **numbers})
    return out
