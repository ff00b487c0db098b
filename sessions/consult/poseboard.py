"""Each remote's newest pose record in memory the network process shares with the frame side: :class:`PoseBoard`.

With the network in a process of its own (``sessions.consult.netproc``), the frame side learns of what
arrived through one round trip a frame (``NetProcess.ops``). A pose that arrives while that reply is on
its way, or while the frame does the rest of its step, waits a whole frame more; on a loaded machine the
round trip alone takes milliseconds. So the child also writes every pose record, as it arrives, into a
slot of this board, and the frame side reads the board just before it builds the avatars: a remote's
hand is drawn as it was when the frame latched it, not as it was at the frame's fetch.

The board only freshens: who is in the room, and every other thing, still comes with the fetch. The
frame side takes a slot's record when it arrived later than the fetched one for the same remote (both
times are on the participant's clock), so a slot left from before a rejoin or a restart is never newer
than what the fetch says.

One writer (the child's loop thread; a restarted child clears the board first) and one reader, without
a lock a killed child could leave held: each slot is a sequence lock (``seq`` odd while its write is
under way), so a read that overlaps a write, or finds one torn by the writer's death, keeps the fetched
record instead. A record too large for a slot (names are at most 64 characters: it does not happen) is
left to the fetch.
"""

from __future__ import annotations

import ctypes
import logging
import pickle
from typing import TYPE_CHECKING, Any

from sessions.consult import seqlock

if TYPE_CHECKING:
    from sessions.consult.network import RemotePose

logger = logging.getLogger(__name__)

#: How many remotes the board holds (rooms beyond it leave the rest to the fetch).
SLOTS = 32
#: Bytes a slot holds: a pickled RemotePose, every pose tracked and a name of 64 four-byte characters, is 711.
SLOT_BYTES = 1024


class _PoseSlot(ctypes.Structure):  # a sequence-locked slot (sessions.consult.seqlock)
    _fields_ = [("seq", ctypes.c_uint64), ("length", ctypes.c_uint32), ("data", ctypes.c_char * SLOT_BYTES)]


class PoseBoard:
    """Slots of pickled :class:`~sessions.consult.network.RemotePose` in shared memory (module docstring).

    ``context``: the ``multiprocessing`` context the child is started with (the board goes to it as an
    argument of its process)."""

    def __init__(self, context: Any) -> None:
        self._slots = context.RawArray(_PoseSlot, SLOTS)
        # the writer's: which slot each remote writes to; the reader's: each slot's last read, by seq
        self._slot_of: dict[int, int] = {}
        self._read: dict[int, tuple[int, RemotePose | None]] = {}
        self._full_told = False

    def __getstate__(self) -> dict[str, Any]:  # to the child: the shared slots, no one's bookkeeping
        return {"_slots": self._slots}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._slots = state["_slots"]
        self._slot_of, self._read, self._full_told = {}, {}, False

    # --- the writer: the network process's loop thread ------------------------------------------------

    def clear(self) -> None:
        """Empty every slot (a child does it before it writes: a board may hold a previous child's slots)."""
        for slot in self._slots:
            seqlock.write(slot, b"")
        self._slot_of.clear()

    def put(self, remote: RemotePose) -> bool:
        """Write ``remote`` into its remote's slot; False (and the fetch carries it) when it does not fit."""
        index = remote.record.participant
        number = self._slot_of.get(index)
        if number is None:
            if len(self._slot_of) >= SLOTS:
                if not self._full_told:
                    self._full_told = True
                    logger.info("pose board full (%d remotes): the others' poses come with the frame's fetch", SLOTS)
                return False
            number = self._slot_of[index] = len(self._slot_of)
        data = pickle.dumps(remote, protocol=pickle.HIGHEST_PROTOCOL)
        if len(data) > SLOT_BYTES:
            return False
        seqlock.write(self._slots[number], data)
        return True

    # --- the reader: the frame side -------------------------------------------------------------------

    def fresher(self, fetched: dict[int, RemotePose]) -> dict[int, RemotePose]:
        """``fetched`` (the poses of the frame's fetch), each replaced by its remote's record on the board
        when that one arrived later; remotes not in ``fetched`` are not added."""
        out = dict(fetched)
        for number in range(SLOTS):
            remote = self._slot(number)
            if remote is None:
                continue
            index = remote.record.participant
            held = out.get(index)
            if held is not None and _later(remote, held):
                out[index] = remote
        return out

    def _slot(self, number: int) -> RemotePose | None:
        """Slot ``number``'s record (unpickled once per write); while it is being written or was torn, the
        last one read from it; None when empty or unreadable."""
        slot = self._slots[number]
        known = self._read.get(number)
        if known is not None and known[0] == slot.seq:
            return known[1]
        got = seqlock.read(slot)
        if got is None:
            return known[1] if known is not None else None
        seq, data = got
        remote: RemotePose | None = None
        if data:
            try:
                remote = pickle.loads(data)
            except Exception:  # a write torn in a way the sequence did not show: the fetch's record stands
                remote = None
        self._read[number] = (seq, remote)
        return remote


def _later(a: RemotePose, b: RemotePose) -> bool:
    """Whether ``a`` arrived after ``b`` (an arrival time unknown counts as never later)."""
    return a.arrived_at is not None and (b.arrived_at is None or a.arrived_at > b.arrived_at)
