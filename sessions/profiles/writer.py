"""Appending statements off the frame loop: a queue, a writer thread, and a future per statement.

The frame loop calls :meth:`ProfileWriter.submit`, which appends the statement to a queue and returns a
future at once; it never touches the database, takes no lock and makes no system call. A thread with
its own store connection takes what has queued (up to ``batch_max`` statements), appends it in one
transaction, and resolves each future with its :class:`~sessions.profiles.store.Receipt` after the
commit, when the statement is on disk. A statement that cannot be stored fails its own future only:
the batch is retried one statement at a time, and each failure is counted in
:attr:`ProfileWriter.errors` and logged once, on one line.

Why it polls: waking the writer from ``submit`` (a condition, a blocking queue) costs the frame loop a
system call and, on a busy machine, a context switch at the moment it submits. Instead the thread
looks at the queue every ``poll_s`` seconds (backing off to :data:`IDLE_POLL_S` after a second of
nothing), so most of its work lands while the loop sleeps between frames; an acknowledgement comes
at most one poll later. ``flush`` and ``close`` wake it at once. Futures are made ahead of time by the
thread (making one costs tens of microseconds with cold caches), so ``submit`` only takes one.
"""

from __future__ import annotations

import collections
import concurrent.futures
import logging
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sessions.profiles.errors import ProfileError
from sessions.profiles.store import ProfileStore, Receipt, open_store

log = logging.getLogger(__name__)

#: How often the writer looks at the queue once nothing has come for a second, seconds.
IDLE_POLL_S = 0.05
#: Empty polls before the writer slows down to IDLE_POLL_S.
_IDLE_AFTER_S = 1.0

#: A queued statement: (trainee, statement, future). A tuple, not a dataclass: submit stays short.
_Append = tuple[str, Mapping[str, Any], "concurrent.futures.Future[Receipt]"]


@dataclass(frozen=True)
class _Control:
    """A flush marker (resolved once everything queued before it is written) or the stop signal."""

    done: concurrent.futures.Future[None]
    stop: bool = False


class ProfileWriter:
    """Durable appends for a loop that must not wait: submit now, the receipt comes after the commit.

    Parameters
    ----------
    store_target : str, path or None
        What :func:`~sessions.profiles.store.open_store` opens, in the writer's own thread.
    batch_max : int
        Most statements written in one transaction (one disk flush).
    poll_s : float
        How often the writer looks for new statements while busy, seconds: the longest an
        acknowledgement waits before its transaction starts.

    Raises
    ------
    ProfileError
        The store cannot be opened (a corrupt database is reported here, before any submit).

    Attributes
    ----------
    errors : int
        Statements that could not be stored (each logged once).
    written : int
        Statements stored (including resubmitted ids the store already held).
    batches : int
        Transactions committed.
    """

    def __init__(self, store_target: str | os.PathLike[str] | None, *, batch_max: int = 256, poll_s: float = 0.005) -> None:
        if batch_max < 1:
            raise ProfileError(f"batch_max must be at least 1 (got {batch_max})")
        if not 0 < poll_s <= 1:
            raise ProfileError(f"poll_s must be in (0, 1] seconds (got {poll_s})")
        self.batch_max = batch_max
        self.poll_s = poll_s
        self.errors = 0
        self.written = 0
        self.batches = 0
        # deque.append and popleft are atomic: the frame loop and the writer share it without a lock.
        self._pending: collections.deque[_Append | _Control] = collections.deque()
        self._spare: collections.deque[concurrent.futures.Future[Receipt]] = collections.deque()
        self._wake = threading.Event()
        self._closed = False
        self._opened: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(target=self._run, args=(store_target,), name="profile-writer", daemon=True)
        self._thread.start()
        try:
            self._opened.result()
        except BaseException:
            self._closed = True
            self._thread.join()
            raise

    def submit(self, trainee: str, statement: Mapping[str, Any]) -> concurrent.futures.Future[Receipt]:
        """Queue a statement for the trainee's profile; returns at once (no lock, no I/O, no wake-up).

        The writer owns ``statement`` from now on: do not change it. The future's result is the
        receipt once the statement is durable; its exception is a :class:`ProfileError` if it was
        refused. A future cancelled before its batch starts is not stored.
        """
        if self._closed:
            raise ProfileError("the profile writer is closed")
        try:
            future = self._spare.pop()
        except IndexError:
            future = concurrent.futures.Future()
        self._pending.append((trainee, statement, future))
        return future

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every statement submitted before this call is stored or has failed.

        Raises
        ------
        TimeoutError
            Not done within ``timeout`` seconds.
        """
        if not self._thread.is_alive():
            return
        done: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._pending.append(_Control(done))
        self._wake.set()
        try:
            done.result(timeout)
        except concurrent.futures.TimeoutError:
            raise TimeoutError(f"profile writer: statements still queued after {timeout} s") from None

    def close(self) -> None:
        """Write what is queued, stop the thread and close its connection (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._pending.append(_Control(concurrent.futures.Future(), stop=True))
        self._wake.set()
        self._thread.join()

    def __enter__(self) -> ProfileWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the writer thread ------------------------------------------------------------------------

    def _run(self, store_target: str | os.PathLike[str] | None) -> None:
        try:
            store = open_store(store_target)
        except BaseException as exc:
            self._opened.set_exception(exc)
            return
        spare_target = 2 * self.batch_max
        self._spare.extend(concurrent.futures.Future() for _ in range(spare_target))
        self._opened.set_result(None)
        idle_polls, idle_after = 0, max(1, round(_IDLE_AFTER_S / self.poll_s))
        try:
            while True:
                batch: list[_Append] = []
                control: _Control | None = None
                # Take what has queued, up to batch_max, stopping at a control item so that a flush
                # resolves right after the statements submitted before it.
                while len(batch) < self.batch_max:
                    try:
                        item = self._pending.popleft()
                    except IndexError:
                        break
                    if isinstance(item, _Control):
                        control = item
                        break
                    if item[2].set_running_or_notify_cancel():
                        batch.append(item)
                if batch:
                    self._write(store, batch)
                if control is not None:
                    control.done.set_result(None)
                    if control.stop:
                        return
                while len(self._spare) < spare_target:
                    self._spare.append(concurrent.futures.Future())
                if batch or control is not None or self._pending:
                    idle_polls = 0
                    if self._pending:
                        continue
                else:
                    idle_polls += 1
                self._wake.wait(self.poll_s if idle_polls < idle_after else IDLE_POLL_S)
                self._wake.clear()
        finally:
            store.close()

    def _write(self, store: ProfileStore, batch: list[_Append]) -> None:
        try:
            receipts = store.append_many([(trainee, statement) for trainee, statement, _ in batch])
        except Exception as exc:
            if len(batch) == 1:
                self._fail(batch[0], exc)
                return
            # One bad statement must not cost the others: write them one by one.
            for one in batch:
                try:
                    receipt = store.append_many([(one[0], one[1])])[0]
                except Exception as exc_one:
                    self._fail(one, exc_one)
                else:
                    self.batches += 1
                    self.written += 1
                    one[2].set_result(receipt)
            return
        self.batches += 1
        self.written += len(batch)
        for (_, _, future), receipt in zip(batch, receipts, strict=True):
            future.set_result(receipt)

    def _fail(self, item: _Append, exc: Exception) -> None:
        self.errors += 1
        trainee, statement, future = item
        error = exc if isinstance(exc, ProfileError) else ProfileError(f"{type(exc).__name__}: {exc}")
        statement_id = statement.get("id") if isinstance(statement, Mapping) else None
        log.error("profile writer: statement %s for %s not stored: %s", statement_id, trainee, error)
        future.set_exception(error)
