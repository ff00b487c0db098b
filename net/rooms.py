"""Rooms and presence for the signaling server, free of any transport.

A :class:`Room` knows who is in it (participant id, small integer index, display name, role, when they
connected), which topology it uses, and the latest stats report of each participant. The server
(:mod:`net.signaling`) owns the connections; this module only keeps the bookkeeping, so that its rules
(stable indices, the switch to relay mode, limits) are plain functions of their inputs.

Indices outlive the server process in two ways (docs/signaling.md, "Restarts and outages"): a room's
index table can be kept in a small file (:class:`IndexFile`) that a restarted server reloads, and a
participant that rejoins claims the index it had (``claim``), which the room adopts when nobody else
holds it. So a newcomer after a restart never gets an index that a participant still in the
consultation holds: its ops and poses would be taken for that participant's.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from net.errors import NetError
from net.tokens import RELAY_ID

log = logging.getLogger(__name__)

#: Index of the server's relay peer in binary pose records; participants get 1, 2, ...
RELAY_INDEX = 0
#: Highest participant index: pose records carry the index in an unsigned 16-bit field at most, and
#: a room never remembers more than this many participants.
MAX_INDEX = 65_535


class RoomError(NetError):
    """A participant cannot join: the room is full or the server has no room left."""


@dataclass
class Member:
    """One connected participant.

    Attributes
    ----------
    participant : str
        Participant id (from the join token).
    index : int
        Small integer id, unique in the room and stable across reconnects (>= 1).
    name, role : str
        Display name and role (from the join token).
    connected_at : float
        Unix time of this connection, seconds.
    connection : Any
        The server's handle for the connection (opaque here).
    report : dict or None
        Latest stats report sent by the participant.
    report_at : float or None
        Unix time that report arrived, seconds.
    resumed : bool
        This connection continues the participant's presence: it claimed the index the room gives it
        and nobody was told it left (a rejoin after a server restart, or one that replaced a connection
        the server still held). Its peers keep their links to it (docs/signaling.md).
    """

    participant: str
    index: int
    name: str
    role: str
    connected_at: float
    connection: Any = None
    report: dict[str, Any] | None = None
    report_at: float | None = None
    resumed: bool = False

    def describe(self) -> dict[str, Any]:
        """The peer description sent in ``welcome`` and ``peer-joined`` messages."""
        return {"participant": self.participant, "index": self.index, "name": self.name, "role": self.role}


@dataclass
class Room:
    """Presence and topology of one room.

    Parameters
    ----------
    name : str
        Room id.
    mesh_limit : int
        Largest number of participants connected peer to peer; one more switches the room to relay
        mode, where it stays until it is empty (switching back would tear down every connection
        again).
    max_participants : int
        Largest number of participants connected at once.
    """

    name: str
    mesh_limit: int
    max_participants: int
    members: dict[str, Member] = field(default_factory=dict)
    topology: str = "mesh"
    created_at: float = field(default_factory=time.time)
    relay: Any = None
    # participant -> index, kept after a participant leaves so a reconnect gets its old index back.
    _indices: dict[str, int] = field(default_factory=dict)
    #: Called after a new participant -> index entry is made (the server saves its index file then).
    on_assign: Callable[[], None] | None = None
    # Participants whose leaving was announced (peer-left) and who have not joined again since.
    _departed: set[str] = field(default_factory=set)

    @property
    def relay_id(self) -> str | None:
        """``"relay"`` in relay mode, else None."""
        return RELAY_ID if self.topology == "relay" else None

    def index_for(self, participant: str, claim: int | None = None) -> int:
        """The participant's index, allocating one for a participant the room does not know.

        A participant the room knows keeps its index whatever it claims. One it does not know gets its
        ``claim`` (the index it held before a server restart) when no other participant holds it, else
        the smallest free index.
        """
        index = self._indices.get(participant)
        if index is not None:
            return index
        taken = set(self._indices.values())
        if len(taken) >= MAX_INDEX:
            # Forget the absent participants; those connected keep theirs.
            self._indices = {p: i for p, i in self._indices.items() if p in self.members}
            taken = set(self._indices.values())
        if claim is not None and RELAY_INDEX < claim <= MAX_INDEX and claim not in taken:
            index = claim
        else:
            index = next(i for i in range(RELAY_INDEX + 1, MAX_INDEX + 1) if i not in taken)
        self._indices[participant] = index
        if self.on_assign is not None:
            self.on_assign()
        return index

    def index_table(self) -> dict[str, int]:
        """Every participant -> index the room has handed out (a copy)."""
        return dict(self._indices)

    def restore(self, table: dict[str, int], topology: str = "mesh") -> None:
        """Take over the index table and topology of the room as a previous server process left them
        (:class:`IndexFile`): a relay room comes back as one, rather than as a mesh until enough rejoin."""
        self._indices = {**table, **self._indices}
        if topology == "relay":
            self.topology = "relay"

    def admit(
        self, participant: str, name: str, role: str, connection: Any, *, now: float | None = None,
        claim: int | None = None,
    ) -> tuple[Member, Member | None, bool]:
        """Add a participant, replacing an existing connection of the same participant.

        ``claim`` is the index a rejoining participant says it holds (see :meth:`index_for`).

        Returns
        -------
        member : Member
            The new member.
        replaced : Member or None
            The previous connection of this participant, which the caller must close.
        switched : bool
            True when this admission moved the room from mesh to relay mode.

        Raises
        ------
        RoomError
            The room is full (a reconnect never counts against the limit).
        """
        replaced = self.members.get(participant)
        if replaced is None and len(self.members) >= self.max_participants:
            raise RoomError(f"room {self.name!r} is full ({self.max_participants} participants)")
        index = self.index_for(participant, claim)
        member = Member(
            participant=participant,
            index=index,
            name=name,
            role=role,
            connected_at=time.time() if now is None else now,
            connection=connection,
            resumed=claim == index and participant not in self._departed,
        )
        self._departed.discard(participant)
        self.members[participant] = member
        switched = self.topology == "mesh" and len(self.members) > self.mesh_limit
        if switched:
            self.topology = "relay"
            log.info("room %s: mesh -> relay (%d participants > mesh limit %d)", self.name, len(self.members), self.mesh_limit)
        return member, replaced, switched

    def remove(self, member: Member) -> bool:
        """Remove this connection of a member; False when it was already replaced or gone."""
        if self.members.get(member.participant) is not member:
            return False
        del self.members[member.participant]
        self._departed.add(member.participant)
        return True

    def others(self, participant: str) -> list[Member]:
        """Everyone in the room but ``participant``, in index order."""
        return sorted((m for p, m in self.members.items() if p != participant), key=lambda m: m.index)

    def welcome(self, member: Member) -> dict[str, Any]:
        """The ``welcome`` message for a member who just joined."""
        return {
            "type": "welcome",
            "room": self.name,
            "participant": member.participant,
            "index": member.index,
            "role": member.role,
            "name": member.name,
            "peers": [m.describe() for m in self.others(member.participant)],
            "topology": self.topology,
            "relay": self.relay_id,
            **({"resumed": True} if member.resumed else {}),
        }


class IndexFile:
    """The server's state file: the rooms' index tables, so that a restarted server hands no index out
    twice, and its seat book (``net.seats``), so that it spends no token twice.

    ``{"v": 1, "rooms": {"<room>": {"updated": <unix s>, "topology": "mesh"|"relay", "indices": {"<participant>": <index>}}},
    "seats": <SeatBook.state()>}``, rewritten whole (a temporary file, fsynced, renamed over it) each
    time an index is handed out (:meth:`put`), a room closes (:meth:`drop`) or a seat's session opens or
    resumes (:meth:`put_seats`; a join's new index is written with its seat, once): joins are rare, so
    this costs little. The server reads it once, at
    start (:meth:`load`), and a room opened again takes its old table back (:meth:`take`). A table of a
    room nobody came back to within ``ttl_s`` of its last change is forgotten. The seat book's content
    is ``net.seats``'s to check (:attr:`seats` is what the file held, unread here).

    Parameters
    ----------
    path : str or Path
        The file; its folder is created if missing.
    ttl_s : float
        Seconds a room's table is kept after its last change while the room is not open.
    """

    VERSION = 1

    def __init__(self, path: str | Path, ttl_s: float = 12 * 3600.0) -> None:
        self.path = Path(path)
        self.ttl_s = ttl_s
        self._rooms: dict[str, tuple[float, dict[str, int], str]] = {}  # room -> (updated, table, topology)
        #: the seat book's section as last read or put (None: the file had none)
        self.seats: object = None

    def load(self, *, now: float | None = None) -> int:
        """Read the file; returns how many rooms' tables it held that are still fresh.

        A missing file is an empty one; a damaged file or entry is reported in one line and skipped:
        a server that cannot read it still starts (rejoining participants then claim their indices).
        """
        now = time.time() if now is None else now
        self._rooms, self.seats = {}, None
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return 0
        except (OSError, ValueError) as exc:
            log.warning("index file %s unreadable, starting without it: %s", self.path, exc)
            return 0
        rooms = data.get("rooms") if isinstance(data, dict) and data.get("v") == self.VERSION else None
        if not isinstance(rooms, dict):
            log.warning("index file %s is not a version-%d index file; starting without it", self.path, self.VERSION)
            return 0
        self.seats = data.get("seats")
        for name, entry in rooms.items():
            try:
                updated = float(entry["updated"])
                table = {str(p): int(i) for p, i in entry["indices"].items()}
                topology = str(entry.get("topology", "mesh"))
                if topology not in ("mesh", "relay"):
                    raise ValueError(topology)
            except (KeyError, TypeError, ValueError, AttributeError):
                log.warning("index file %s: skipping the malformed entry of room %r", self.path, str(name)[:64])
                continue
            if not all(RELAY_INDEX < i <= MAX_INDEX for i in table.values()) or len(set(table.values())) != len(table):
                log.warning("index file %s: skipping room %r (indices out of range or repeated)", self.path, str(name)[:64])
                continue
            if now - updated <= self.ttl_s:
                self._rooms[str(name)] = (updated, table, topology)
        return len(self._rooms)

    def take(self, room: str, *, now: float | None = None) -> tuple[dict[str, int], str]:
        """The table and topology the file holds for ``room`` (empty and mesh if none, or too old)."""
        now = time.time() if now is None else now
        updated, table, topology = self._rooms.get(room, (now, {}, "mesh"))
        return (dict(table), topology) if now - updated <= self.ttl_s else ({}, "mesh")

    def put(self, room: str, table: dict[str, int], topology: str = "mesh", *, now: float | None = None,
            write: bool = True) -> None:
        """Record ``room``'s table and topology and write the file (``write`` False: the next write takes it)."""
        self._rooms[room] = (time.time() if now is None else now, dict(table), topology)
        if write:
            self._write()

    def drop(self, room: str) -> None:
        """Forget ``room`` (it closed: nobody holds its state any more) and write the file."""
        if self._rooms.pop(room, None) is not None:
            self._write()

    def put_seats(self, seats: object) -> None:
        """Record the seat book's section (JSON-ready) and write the file."""
        self.seats = seats
        self._write()

    def _write(self) -> None:
        """Rewrite the file whole; an unwritable file is logged, never raised (the server keeps serving)."""
        body: dict[str, object] = {
            "v": self.VERSION,
            "rooms": {name: {"updated": updated, "topology": topology, "indices": table}
                      for name, (updated, table, topology) in sorted(self._rooms.items())},
        }  # fmt: skip
        if self.seats is not None:
            body["seats"] = self.seats
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w", encoding="utf-8") as out:
                json.dump(body, out, separators=(",", ":"))
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.path)
        except OSError as exc:
            log.warning("cannot write index file %s: %s", self.path, exc)


class TokenBucket:
    """Token-bucket rate limiter: ``burst`` messages at once, ``rate`` per second sustained.

    Parameters
    ----------
    rate : float
        Refill rate, tokens per second.
    burst : float
        Bucket capacity, tokens.
    clock : callable
        Monotonic time source in seconds (injectable for tests).
    """

    def __init__(self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = burst
        self._last = clock()

    def take(self, cost: float = 1.0) -> bool:
        """Spend ``cost`` tokens if there are enough; False (and nothing spent) otherwise."""
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        if self._tokens >= cost:
            self._tokens -= cost
            return True
        return False
