"""Appending statements off the frame loop: a queue, a writer thread, and a future per statement.

The frame loop calls :meth:`ProfileWriter.submit`, which puts the statement on a queue and returns a
future at once; it never touches the database. A thread with its own store connection takes what has
queued (up to ``batch_max`` statements), appends it in one transaction, and resolves each future with
its :class:`~sessions.profiles.store.Receipt` after the commit, when the statement is on disk. A
statement that cannot be stored fails its own future only: the batch is retried one statement at a
time, and each failure is counted in :attr:`ProfileWriter.errors` and logged once, on one line.
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import queue
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sessions.profiles.errors import ProfileError
from sessions.profiles.store import ProfileStore, Receipt, open_store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Append:
    trainee: str
    statement: Mapping[str, Any]
    future: concurrent.futures.Future[Receipt]


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

    def __init__(self, store_target: str | os.PathLike[str] | None, *, batch_max: int = 256) -> None:
        if batch_max < 1:
            raise ProfileError(f"batch_max must be at least 1 (got {batch_max})")
        self.batch_max = batch_max
        self.errors = 0
        self.written = 0
        self.batches = 0
        self._queue: queue.SimpleQueue[_Append | _Control] = queue.SimpleQueue()
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
        """Queue a statement for the trainee's profile; returns at once (no lock, no I/O).

        The writer owns ``statement`` from now on: do not change it. The future's result is the
        receipt once the statement is durable; its exception is a :class:`ProfileError` if it was
        refused. A future cancelled before its batch starts is not stored.
        """
        if self._closed:
            raise ProfileError("the profile writer is closed")
        future: concurrent.futures.Future[Receipt] = concurrent.futures.Future()
        self._queue.put(_Append(trainee, statement, future))
        return future

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every statement submitted before this call is stored or has failed.

        Raises
        ------
        TimeoutError
            Not done within ``timeout`` seconds.
        """
        if self._closed and not self._thread.is_alive():
            return
        done: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._queue.put(_Control(done))
        try:
            done.result(timeout)
        except concurrent.futures.TimeoutError:
            raise TimeoutError(f"profile writer: statements still queued after {timeout} s") from None

    def close(self) -> None:
        """Write what is queued, stop the thread and close its connection (idempotent)."""
        if self._closed:
            return
        self._closed = True
        done: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._queue.put(_Control(done, stop=True))
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
        self._opened.set_result(None)
        try:
            while True:
                batch: list[_Append] = []
                item: _Append | _Control | None = self._queue.get()
                # Take what has queued, up to batch_max, stopping at a control item so that a flush
                # resolves right after the statements submitted before it.
                while isinstance(item, _Append):
                    if item.future.set_running_or_notify_cancel():
                        batch.append(item)
                    if len(batch) >= self.batch_max:
                        item = None
                        break
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        item = None
                        break
                if batch:
                    self._write(store, batch)
                if isinstance(item, _Control):
                    item.done.set_result(None)
                    if item.stop:
                        return
        finally:
            store.close()

    def _write(self, store: ProfileStore, batch: list[_Append]) -> None:
        try:
            receipts = store.append_many([(a.trainee, a.statement) for a in batch])
        except Exception as exc:
            if len(batch) == 1:
                self._fail(batch[0], exc)
                return
            # One bad statement must not cost the others: write them one by one.
            for one in batch:
                try:
                    receipt = store.append_many([(one.trainee, one.statement)])[0]
                except Exception as exc_one:
                    self._fail(one, exc_one)
                else:
                    self.batches += 1
                    self.written += 1
                    one.future.set_result(receipt)
            return
        self.batches += 1
        self.written += len(batch)
        for a, receipt in zip(batch, receipts, strict=True):
            a.future.set_result(receipt)

    def _fail(self, item: _Append, exc: Exception) -> None:
        self.errors += 1
        error = exc if isinstance(exc, ProfileError) else ProfileError(f"{type(exc).__name__}: {exc}")
        statement_id = item.statement.get("id") if isinstance(item.statement, Mapping) else None
        log.error("profile writer: statement %s for %s not stored: %s", statement_id, item.trainee, error)
        item.future.set_exception(error)
