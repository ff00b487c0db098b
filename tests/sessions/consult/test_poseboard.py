"""The pose board (``sessions.consult.poseboard``): each remote's newest pose record in shared memory,
written by the network process as it arrives, read by the frame side just before the avatars. Real
shared memory and a real child process; the board only freshens what the frame's fetch said."""

from __future__ import annotations

import multiprocessing
from typing import Any

import pytest

from net.protocol import PoseRecord, WirePose
from sessions.consult import poseboard
from sessions.consult.network import RemotePose
from sessions.consult.poseboard import SLOTS, PoseBoard

SPAWN = multiprocessing.get_context("spawn")


def _remote(index: int, seq: int, arrived: float | None, name: str = "ann") -> RemotePose:
    head = WirePose((0.1 * seq, 0.2, 0.3), (0.0, 0.0, 0.0, 1.0))
    return RemotePose(PoseRecord(index, seq, 0.0, head=head), name, "expert", None, arrived, arrived)


def _write(board: PoseBoard, records: list[tuple[int, int, float]]) -> None:
    """(In a child process) what a network process does: clear the board, then write records as they arrive."""
    board.clear()
    for index, seq, arrived in records:
        board.put(_remote(index, seq, arrived))


def test_a_record_written_in_another_process_freshens_the_fetched_one() -> None:
    """A child writes each remote's records; the frame side's read gives, per remote it fetched, the
    board's record when that arrived later, and the fetched one otherwise; a remote the fetch does not
    name (it left) is not brought back."""
    board = PoseBoard(SPAWN)
    child = SPAWN.Process(target=_write, args=(board, [(1, 5, 10.0), (1, 6, 10.5), (2, 3, 9.0), (7, 1, 11.0)]))
    child.start()
    child.join(30)
    assert child.exitcode == 0
    fetched = {1: _remote(1, 4, 9.9), 2: _remote(2, 4, 9.5, "bob")}
    got = board.fresher(fetched)
    assert set(got) == {1, 2}
    assert got[1].record.seq == 6 and got[1].arrived_at == 10.5  # the board's: arrived after the fetched one
    assert got[2] is fetched[2]  # the fetch's: it arrived after the board's
    assert fetched[1].record.seq == 4  # the fetched dict itself is left as it was


def test_a_write_under_way_or_torn_keeps_what_was_read_before() -> None:
    """While a slot's sequence is odd (a write under way, or one torn by the writer's death) the reader
    keeps its last good read of it; garbage behind an even sequence is ignored; a cleared board freshens
    nothing."""
    board = PoseBoard(SPAWN)
    board.clear()
    board.put(_remote(1, 5, 10.0))
    fetched = {1: _remote(1, 4, 9.0)}
    assert board.fresher(fetched)[1].record.seq == 5
    board.put(_remote(1, 6, 11.0))
    slot = board._slots[0]
    slot.seq += 1  # a writer died half way through its next write
    assert board.fresher(fetched)[1].record.seq == 5  # the last good read, not garbage
    slot.seq += 1
    assert board.fresher(fetched)[1].record.seq == 6
    slot.data = b"\x80not a pickle"
    slot.length = 12
    slot.seq += 2
    assert board.fresher(fetched)[1].record.seq == 4  # unreadable: the fetch's record stands
    board.clear()
    assert board.fresher(fetched)[1].record.seq == 4


def test_a_full_board_or_an_oversized_record_leaves_it_to_the_fetch(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past SLOTS remotes, or a record too large for a slot, ``put`` says False and the fetch carries it."""
    board = PoseBoard(SPAWN)
    board.clear()
    assert all(board.put(_remote(i, 1, 1.0)) for i in range(SLOTS))
    assert not board.put(_remote(SLOTS + 5, 1, 1.0))
    assert board.put(_remote(3, 2, 2.0))  # a remote already on the board keeps its slot
    monkeypatch.setattr(poseboard, "SLOT_BYTES", 64)
    assert not board.put(_remote(4, 2, 2.0))


def test_the_board_crosses_to_the_child_without_the_parents_bookkeeping() -> None:
    """What a child gets is the shared slots only: its own writer's map starts empty."""
    board = PoseBoard(SPAWN)
    board.clear()
    board.put(_remote(9, 1, 1.0))
    state: dict[str, Any] = board.__getstate__()
    assert set(state) == {"_slots"}
    other = PoseBoard.__new__(PoseBoard)
    other.__setstate__(state)
    assert other._slot_of == {} and other.fresher({9: _remote(9, 0, 0.5)})[9].record.seq == 1
