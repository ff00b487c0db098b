"""Bytes that one process writes and another reads in shared memory, without a lock: a sequence lock.

A slot is a ctypes structure with the fields ``seq`` (c_uint64), ``length`` (c_uint32) and ``data``
(c_char * capacity), declared at a module's top level (a spawned process finds its type by name). The writer makes the sequence
odd, writes, then makes it even again; a reader takes the bytes only when the sequence was even and the
same before and after its copy. A write under way, or one torn by the writer's death (the sequence stays
odd), is seen as such and never read as data, and there is no lock a killed writer could leave held. One
writer at a time per slot. Used by the network process for the session's resume ticket
(``netproc.TicketBox``) and for each remote's newest pose (``poseboard.PoseBoard``).
"""

from __future__ import annotations

import ctypes
from typing import Any


def capacity(slot: Any) -> int:
    """How many bytes ``slot`` holds."""
    return int(type(slot).data.size)


def write(slot: Any, data: bytes) -> None:
    """(The writer) ``data`` is now the slot's content; ValueError when it does not fit."""
    if len(data) > capacity(slot):
        raise ValueError(f"{len(data)} bytes for a slot of {capacity(slot)}")
    slot.seq |= 1  # odd: a write under way (already odd when a writer died half way: stays so until done)
    ctypes.memmove(ctypes.addressof(slot) + type(slot).data.offset, data, len(data))
    slot.length = len(data)
    slot.seq += 1


def read(slot: Any) -> tuple[int, bytes] | None:
    """(The reader) (sequence, bytes) as last written whole; None while a write is under way or torn."""
    seq = slot.seq
    if seq % 2:
        return None
    data = ctypes.string_at(ctypes.addressof(slot) + type(slot).data.offset, min(slot.length, capacity(slot)))
    return (seq, data) if slot.seq == seq else None
