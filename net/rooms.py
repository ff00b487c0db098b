"""Rooms and presence for the signaling server, free of any transport.

A :class:`Room` knows who is in it (participant id, small integer index, display name, role, when they
connected), which topology it uses, and the latest stats report of each participant. The server
(:mod:`net.signaling`) owns the connections; this module only keeps the bookkeeping, so that its rules
(stable indices, the switch to relay mode, limits) are plain functions of their inputs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
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
    """

    participant: str
    index: int
    name: str
    role: str
    connected_at: float
    connection: Any = None
    report: dict[str, Any] | None = None
    report_at: float | None = None

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

    @property
    def relay_id(self) -> str | None:
        """``"relay"`` in relay mode, else None."""
        return RELAY_ID if self.topology == "relay" else None

    def index_for(self, participant: str) -> int:
        """The participant's index, allocating the smallest free one for a newcomer."""
        index = self._indices.get(participant)
        if index is not None:
            return index
        taken = set(self._indices.values())
        if len(taken) >= MAX_INDEX:
            # Forget the absent participants; those connected keep theirs.
            self._indices = {p: i for p, i in self._indices.items() if p in self.members}
            taken = set(self._indices.values())
        index = next(i for i in range(RELAY_INDEX + 1, MAX_INDEX + 1) if i not in taken)
        self._indices[participant] = index
        return index

    def admit(
        self, participant: str, name: str, role: str, connection: Any, *, now: float | None = None
    ) -> tuple[Member, Member | None, bool]:
        """Add a participant, replacing an existing connection of the same participant.

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
        member = Member(
            participant=participant,
            index=self.index_for(participant),
            name=name,
            role=role,
            connected_at=time.time() if now is None else now,
            connection=connection,
        )
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
        }


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
