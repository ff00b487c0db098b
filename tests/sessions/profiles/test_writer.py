"""The profile writer: submit returns at once, receipts come after the commit, batches, failures."""

from __future__ import annotations

import logging
import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from sessions.profiles import CorruptProfileError, ProfileError, ProfileWriter, Receipt, open_store


def statement(n: int) -> dict[str, Any]:
    return {"id": str(uuid.uuid4()), "verb": {"id": "http://adlnet.gov/expapi/verbs/interacted"}, "result": {"n": n}}


def test_receipts_match_what_is_stored(store_target: str) -> None:
    """Each future resolves to the receipt of the record the store holds, in submit order per trainee."""
    made = [("alice" if i % 3 else "bob", statement(i)) for i in range(300)]
    with ProfileWriter(store_target, batch_max=32) as writer:
        futures = [writer.submit(trainee, s) for trainee, s in made]
        receipts = [f.result(timeout=30) for f in futures]
    assert writer.errors == 0 and writer.written == 300
    with open_store(store_target) as store:
        for trainee in ("alice", "bob"):
            stored = list(store.statements(trainee))
            mine = [(s, r) for (t, s), r in zip(made, receipts, strict=True) if t == trainee]
            assert [s.statement for s in stored] == [s for s, _ in mine]
            assert [Receipt(s.seq, s.statement["id"], s.hash) for s in stored] == [r for _, r in mine]
            assert store.verify(trainee).ok


def test_acknowledged_means_committed(store_target: str) -> None:
    """When a future is done, another connection already sees the statement."""
    with ProfileWriter(store_target) as writer, open_store(store_target) as reader:
        for i in range(20):
            receipt = writer.submit("alice", statement(i)).result(timeout=30)
            assert reader.count("alice") >= receipt.seq


def test_batches_hold_at_most_batch_max(tmp_path: Path) -> None:
    """Statements queued while a transaction waits go together, up to batch_max per transaction."""
    path = tmp_path / "p.sqlite"
    open_store(path).close()
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # hold the write lock so everything queues up
    with ProfileWriter(path, batch_max=16) as writer:
        futures = [writer.submit("alice", statement(i)) for i in range(200)]
        time.sleep(0.2)
        assert not any(f.done() for f in futures)
        blocker.execute("ROLLBACK")
        writer.flush(timeout=30)
        # the first batch may have started alone before the rest queued; the others are full
        assert 200 / 16 <= writer.batches <= 200 / 16 + 2
    blocker.close()
    assert all(f.result().seq == i + 1 for i, f in enumerate(futures))


def test_submit_never_waits_on_storage(tmp_path: Path) -> None:
    """While the database is locked by someone else, submit still returns within microseconds."""
    path = tmp_path / "p.sqlite"
    open_store(path).close()
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    with ProfileWriter(path) as writer:
        durations = []
        futures = []
        for i in range(2000):
            s = statement(i)
            t0 = time.perf_counter()
            futures.append(writer.submit("alice", s))
            durations.append(time.perf_counter() - t0)
        durations.sort()
        assert durations[len(durations) // 2] < 100e-6, durations[len(durations) // 2]
        assert durations[int(0.99 * len(durations))] < 2e-3
        with pytest.raises(TimeoutError):
            writer.flush(timeout=0.2)
        assert not any(f.done() for f in futures)
        blocker.execute("ROLLBACK")
        writer.flush(timeout=30)
    blocker.close()
    assert all(f.done() and f.exception() is None for f in futures)


def test_a_bad_statement_fails_alone_and_is_logged_once(store_target: str, caplog: pytest.LogCaptureFixture) -> None:
    """One bad statement in a batch fails its own future with one logged line; the others are stored."""
    bad = {"id": "no good", "result": {}}
    with caplog.at_level(logging.ERROR, logger="sessions.profiles.writer"), ProfileWriter(store_target) as writer:
        futures = [writer.submit("alice", statement(i)) for i in range(5)]
        futures.insert(2, writer.submit("alice", bad))
        futures.append(writer.submit("not a trainee!", statement(9)))
        writer.flush(timeout=30)
    assert writer.errors == 2
    assert isinstance(futures[2].exception(), ProfileError)
    assert isinstance(futures[-1].exception(), ProfileError)
    assert [f.result().seq for i, f in enumerate(futures) if i not in (2, len(futures) - 1)] == [1, 2, 3, 4, 5]
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 2 and all("\n" not in r.getMessage() for r in errors)


def test_close_writes_what_is_queued_and_then_refuses(tmp_path: Path) -> None:
    """close() flushes the queue; a submit after it is refused at once."""
    writer = ProfileWriter(tmp_path / "p.sqlite")
    futures = [writer.submit("alice", statement(i)) for i in range(500)]
    writer.close()
    assert all(f.done() for f in futures) and futures[-1].result().seq == 500
    with pytest.raises(ProfileError, match="closed"):
        writer.submit("alice", statement(0))
    writer.close()


def test_cancelled_before_its_batch_is_not_stored(tmp_path: Path) -> None:
    """A future cancelled while queued is skipped; the rest of the chain is unbroken."""
    path = tmp_path / "p.sqlite"
    open_store(path).close()
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    with ProfileWriter(path) as writer:
        first = writer.submit("alice", statement(0))
        time.sleep(0.1)  # the first batch (just `first`) is now waiting on the lock
        futures = [writer.submit("alice", statement(i)) for i in range(1, 4)]
        assert futures[1].cancel()
        blocker.execute("ROLLBACK")
        writer.flush(timeout=30)
    blocker.close()
    assert [f.result().seq for f in (first, futures[0], futures[2])] == [1, 2, 3]
    with open_store(path) as store:
        assert store.count("alice") == 3 and store.verify("alice").ok


def test_corrupt_target_fails_at_construction(tmp_path: Path) -> None:
    """A corrupt database is reported when the writer is made, not by every later submit."""
    path = tmp_path / "p.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(CorruptProfileError):
        ProfileWriter(path)
    with pytest.raises(ProfileError, match="batch_max"):
        ProfileWriter(tmp_path / "q.sqlite", batch_max=0)
