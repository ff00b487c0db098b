"""A durable outbox of xAPI statements and its delivery to a Learning Record Store.

Statements wait in their own SQLite file (WAL, ``synchronous=FULL``) keyed by statement id, so a
statement enqueued once is queued once, survives a crash, and leaves the outbox only when the LRS has
answered for it. ``push`` posts them in batches to the xAPI Statements API
(``POST {lrs}/xAPI/statements``, basic auth, ``X-Experience-API-Version: 1.0.3``):

- 200: the LRS stored them (it lists the ids it stored; the others of the batch it already had);
  204: it had them all. Both mark the batch sent, after the answer, never before.
- The LRS cannot be reached, times out, or answers 429/502/503/504: it is down; the same batch is
  retried with exponential back-off and jitter (``Backoff``) until it answers or ``max_attempts``
  consecutive failures, after which ``push`` returns with the rest still queued for the next push.
- 400/409/413/422 or 500 for a batch: one statement may be at fault (Ralph answers 422 for a
  malformed statement, and some LRSs 500), so the batch is bisected until the statement is alone.
  Alone, a 4xx parks it as ``rejected`` with the LRS's reason; a 409 (the LRS holds a different
  statement with that id) counts as delivered, since xAPI statements are immutable and a re-send can
  never replace it; a 500 parks it only once the LRS has stored other statements in the same push and
  the statement failed twice, so a broken LRS is treated as down, not as a reason to drop everything.
- 401/403: wrong credentials or scope: ``LRSError``, nothing changes in the outbox.

The LRS removes duplicates by statement id (xAPI 1.0.3 requires it to ignore a statement id it already
has, and Ralph does: 204 for an identical statement, 409 for a different one), so a batch retried after
a lost answer is never stored twice.

One outbox file serves one LRS: the first push records its URL, and pushing the same file to another
LRS is refused (its "sent" marks would be wrong there); use another file for another LRS.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import random
import sqlite3
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from sessions.profiles.xapi import XAPI_VERSION

log = logging.getLogger(__name__)

DEFAULT_BATCH = 100
#: Where the command line finds an LRS and its credentials when not told (the password never goes on it).
LRS_URL_ENV = "MEDVERSE_LRS_URL"
LRS_USER_ENV = "MEDVERSE_LRS_USER"
LRS_PASSWORD_ENV = "MEDVERSE_LRS_PASSWORD"
_REFUSED_STATUSES = {400, 409, 413, 422}


class LRSError(Exception):
    """A push that cannot go on: bad URL, refused credentials, an outbox used for another LRS."""


class OutboxError(Exception):
    """The outbox file is not an outbox (or is damaged); it is reported, never recreated."""


@dataclass(frozen=True)
class Backoff:
    """Delay before retry ``n`` (1-based): ``min(cap_s, base_s * factor**(n-1))``, the upper half jittered.

    Jitter spreads the retries of many clients that lost the same LRS at the same moment.
    """

    base_s: float = 0.5
    factor: float = 2.0
    cap_s: float = 30.0

    def __post_init__(self) -> None:
        if not (self.base_s > 0 and self.factor >= 1 and self.cap_s >= self.base_s and math.isfinite(self.cap_s)):
            raise ValueError(f"backoff: need base_s > 0, factor >= 1, base_s <= cap_s < inf, got {self}")

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before retry ``attempt`` (>= 1)."""
        ceiling = min(self.cap_s, self.base_s * self.factor ** (max(attempt, 1) - 1))
        return ceiling / 2 + (rng or random).uniform(0, ceiling / 2)


@dataclass
class PushResult:
    """What one push did. ``delivered`` = sent + already; ``pending`` is what the next push will try."""

    sent: int = 0            # statements the LRS stored now
    already: int = 0         # statements the LRS already had (204, ids missing from a 200, 409)
    conflicts: int = 0       # of ``already``: the LRS holds a different statement with that id (409)
    rejected: int = 0        # statements parked as rejected by this push
    pending: int = 0         # statements still queued when the push returned
    requests: int = 0        # HTTP requests made
    retries: int = 0         # failed requests that were waited on and retried
    rejected_ids: list[str] = field(default_factory=list)

    @property
    def delivered(self) -> int:
        return self.sent + self.already

    @property
    def complete(self) -> bool:
        """Nothing is left to send (rejected statements are parked, not pending)."""
        return self.pending == 0


@dataclass(frozen=True)
class Rejected:
    """A statement the LRS refused, kept with its reason for a person to look at."""

    statement_id: str
    reason: str
    statement: dict[str, Any]


def statements_url(lrs_url: str) -> str:
    """``{base}/xAPI/statements`` from a base URL given with or without its ``/xAPI`` suffix.

    ``http://lrs:8100``, ``http://lrs:8100/xAPI`` and ``http://lrs:8100/xAPI/statements`` all name the
    same resource; so does an LRS mounted under a path (``https://host/lrs/xAPI``).
    """
    url = lrs_url.strip().rstrip("/")
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise LRSError(f"lrs: the LRS URL must start with http:// or https://, got {lrs_url!r}")
    lower = url.lower()
    if lower.endswith("/xapi/statements"):
        return url
    if lower.endswith("/xapi"):
        return url + "/statements"
    return url + "/xAPI/statements"


@dataclass(frozen=True)
class _Answer:
    status: int | None       # None: no HTTP answer (refused, reset, timed out)
    body: str


class _Transport:
    """POSTs one batch; every failure becomes an ``_Answer``, never an exception."""

    def __init__(self, url: str, username: str, password: str, timeout: float) -> None:
        self.url = url
        self.timeout = timeout
        token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
        self.headers = {"Authorization": f"Basic {token}", "X-Experience-API-Version": XAPI_VERSION,
                        "Content-Type": "application/json"}

    def post(self, body: bytes) -> _Answer:
        request = urllib.request.Request(self.url, data=body, headers=self.headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return _Answer(response.status, response.read().decode("utf-8", "replace"))
        except urllib.error.HTTPError as error:
            return _Answer(error.code, error.read().decode("utf-8", "replace"))
        except (OSError, urllib.error.URLError) as error:  # refused, reset, DNS, timeout
            return _Answer(None, str(getattr(error, "reason", error)))


def _reason(answer: _Answer) -> str:
    """The LRS's own words, on one line and short."""
    text = answer.body
    try:
        detail = json.loads(text).get("detail", text)
        text = detail if isinstance(detail, str) else json.dumps(detail)
    except (ValueError, AttributeError):
        pass
    text = " ".join(text.split())
    return f"HTTP {answer.status}: {text[:300]}"


class Outbox:
    """Statements waiting for an LRS, in their own SQLite file (default ``home()/lrs-outbox.sqlite``)."""

    def __init__(self, path: Path | str | None = None, *, backoff: Backoff | None = None,
                 batch_size: int = DEFAULT_BATCH, sleep: Callable[[float], None] = time.sleep) -> None:
        if path is None:
            from assets.library import home  # noqa: PLC0415 - only the default location needs the medverse home

            path = home() / "lrs-outbox.sqlite"
        if batch_size < 1:
            raise ValueError(f"outbox: batch_size must be >= 1, got {batch_size}")
        self.path = Path(path)
        self.backoff = backoff or Backoff()
        self.batch_size = batch_size
        self._sleep = sleep
        self._rng = random.Random()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = self._open()

    def _open(self) -> sqlite3.Connection:
        existed = self.path.exists() and self.path.stat().st_size > 0
        try:
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        except sqlite3.DatabaseError as error:
            raise OutboxError(f"{self.path}: not an LRS outbox ({error})") from error
        if existed and "outbox" not in tables:
            db.close()
            raise OutboxError(f"{self.path}: not an LRS outbox (no outbox table); move it aside or pass another path")
        db.executescript("""
            CREATE TABLE IF NOT EXISTS outbox (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                id TEXT NOT NULL UNIQUE,
                statement TEXT NOT NULL,
                state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sent', 'rejected')),
                reason TEXT,
                queued_at REAL NOT NULL,
                done_at REAL
            );
            CREATE INDEX IF NOT EXISTS outbox_state ON outbox (state, seq);
            CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        """)
        return db

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- queue ------------------------------------------------------------------------------------

    def enqueue(self, statements: Iterable[dict[str, Any]]) -> int:
        """Queue statements (each needs an ``id``); returns how many were new. Durable on return.

        An id already in the outbox (pending, sent or rejected) is skipped: enqueueing a whole profile
        again queues only what was added since.
        """
        rows = []
        for stmt in statements:
            sid = stmt.get("id") if isinstance(stmt, dict) else None
            if not isinstance(sid, str) or not sid:
                raise ValueError(f"outbox: every statement needs a string id, got {sid!r}")
            rows.append((sid, json.dumps(stmt, separators=(",", ":"), ensure_ascii=False), time.time()))
        with self._transaction() as db:
            before = db.total_changes
            db.executemany("INSERT OR IGNORE INTO outbox (id, statement, queued_at) VALUES (?, ?, ?)", rows)
            added = db.total_changes - before
        log.debug("outbox %s: %d queued, %d already there", self.path, added, len(rows) - added)
        return added

    def counts(self) -> dict[str, int]:
        """Statements per state: ``{'pending': n, 'sent': n, 'rejected': n}``."""
        out = {"pending": 0, "sent": 0, "rejected": 0}
        out.update(dict(self._db.execute("SELECT state, COUNT(*) FROM outbox GROUP BY state").fetchall()))
        return out

    def rejected(self) -> list[Rejected]:
        """The parked statements with the LRS's reasons, oldest first."""
        return [Rejected(sid, reason or "", json.loads(text)) for sid, reason, text in
                self._db.execute("SELECT id, reason, statement FROM outbox WHERE state = 'rejected' ORDER BY seq")]

    def requeue_rejected(self) -> int:
        """Put the rejected statements back in the queue (after the LRS or the statements were fixed)."""
        with self._transaction() as db:
            return db.execute("UPDATE outbox SET state = 'pending', reason = NULL WHERE state = 'rejected'").rowcount

    def _pending(self, limit: int) -> list[tuple[str, str]]:
        return self._db.execute("SELECT id, statement FROM outbox WHERE state = 'pending' ORDER BY seq LIMIT ?",
                                (limit,)).fetchall()

    def _mark(self, ids: Sequence[str], state: str, reason: str | None = None) -> None:
        with self._transaction() as db:
            db.executemany("UPDATE outbox SET state = ?, reason = ?, done_at = ? WHERE id = ? AND state = 'pending'",
                           [(state, reason, time.time(), sid) for sid in ids])

    def _bind_lrs(self, url: str) -> None:
        with self._transaction() as db:
            row = db.execute("SELECT value FROM meta WHERE key = 'lrs'").fetchone()
            if row is None:
                db.execute("INSERT INTO meta (key, value) VALUES ('lrs', ?)", (url,))
            elif row[0] != url:
                raise LRSError(f"outbox {self.path} delivers to {row[0]}, not {url}: use another outbox file for that LRS")

    # -- delivery ---------------------------------------------------------------------------------

    def push(self, lrs_url: str, *, username: str, password: str, timeout: float = 10.0,
             max_attempts: int | None = None) -> PushResult:
        """Send every pending statement; retry with back-off while the LRS is down.

        ``max_attempts``: consecutive failed requests after which to give up for now (``None``: keep
        trying until the LRS answers). Giving up is not an error: the result says what is pending.
        """
        if max_attempts is not None and max_attempts < 1:
            raise ValueError(f"outbox: max_attempts must be >= 1 or None, got {max_attempts}")
        url = statements_url(lrs_url)
        self._bind_lrs(url)
        return _Push(self, _Transport(url, username, password, timeout), max_attempts).run()


class _Push:
    """One push: the batch loop, bisection and back-off, with the outbox as the only state kept."""

    def __init__(self, outbox: Outbox, transport: _Transport, max_attempts: int | None) -> None:
        self.outbox = outbox
        self.transport = transport
        self.max_attempts = max_attempts
        self.result = PushResult()
        self.failures = 0          # consecutive requests without an answer about the statements
        self.stored_any = False    # the LRS stored (or acknowledged) something in this push
        self.server_errors: dict[str, int] = {}

    def run(self) -> PushResult:
        try:
            while rows := self.outbox._pending(self.outbox.batch_size):
                if not self._deliver(rows):
                    break
        finally:
            self.result.pending = self.outbox.counts()["pending"]
        r = self.result
        log.info("push to %s: %d sent, %d already there, %d rejected, %d pending (%d requests, %d retries)",
                 self.transport.url, r.sent, r.already, r.rejected, r.pending, r.requests, r.retries)
        return r

    def _deliver(self, rows: list[tuple[str, str]]) -> bool:
        """Deliver one batch, bisecting on refusals; False when giving up (LRS down)."""
        stack = [rows]
        while stack:
            batch = stack.pop()
            ids = [sid for sid, _ in batch]
            answer = self._post(batch)
            status = answer.status
            if status in (200, 204):
                self._accepted(ids, answer)
            elif status in (401, 403):
                raise LRSError(f"lrs {self.transport.url}: {_reason(answer)} (check the username, password and scope)")
            elif status in _REFUSED_STATUSES or status == 500:
                if len(batch) > 1:
                    half = len(batch) // 2
                    stack += [batch[half:], batch[:half]]
                elif not self._single_refused(batch, answer):
                    if not self._wait(answer):
                        return False
                    stack.append(batch)
            else:  # no answer, 429, 502-504 or anything unexpected: the LRS is not taking statements now
                if not self._wait(answer):
                    return False
                stack.append(batch)
        return True

    def _post(self, batch: list[tuple[str, str]]) -> _Answer:
        self.result.requests += 1
        body = ("[" + ",".join(text for _, text in batch) + "]").encode("utf-8")
        return self.transport.post(body)

    def _accepted(self, ids: list[str], answer: _Answer) -> None:
        stored: set[str] = set()
        if answer.status == 200:
            try:
                listed = json.loads(answer.body)
                stored = {x for x in listed if isinstance(x, str)} if isinstance(listed, list) else set(ids)
            except ValueError:
                stored = set(ids)  # a 200 without the id list still means "stored"
        self.outbox._mark(ids, "sent")
        new = len(stored & set(ids))
        self.result.sent += new
        self.result.already += len(ids) - new
        self.failures = 0
        self.stored_any = True

    def _single_refused(self, batch: list[tuple[str, str]], answer: _Answer) -> bool:
        """Settle a statement refused on its own; False when it should be retried as if the LRS were down."""
        sid = batch[0][0]
        if answer.status == 409:
            log.warning("lrs already holds a different statement with id %s: counted as delivered (%s)", sid, _reason(answer))
            self.outbox._mark([sid], "sent")
            self.result.already += 1
            self.result.conflicts += 1
            self.failures = 0
            return True
        if answer.status == 500:
            self.server_errors[sid] = self.server_errors.get(sid, 0) + 1
            if not (self.stored_any and self.server_errors[sid] >= 2):
                return False
        reason = _reason(answer)
        log.warning("lrs rejected statement %s, parked: %s", sid, reason)
        self.outbox._mark([sid], "rejected", reason)
        self.result.rejected += 1
        self.result.rejected_ids.append(sid)
        self.failures = 0
        return True

    def _wait(self, answer: _Answer) -> bool:
        """Back off after a failed request; False once ``max_attempts`` consecutive failures are reached."""
        self.failures += 1
        what = _reason(answer) if answer.status is not None else f"unreachable ({answer.body})"
        if self.max_attempts is not None and self.failures >= self.max_attempts:
            log.warning("lrs %s: %s; giving up after %d attempts, statements stay queued",
                        self.transport.url, what, self.failures)
            return False
        delay = self.outbox.backoff.delay(self.failures, self.outbox._rng)
        if self.failures == 1:
            log.warning("lrs %s: %s; retrying with back-off", self.transport.url, what)
        else:
            log.debug("lrs %s: %s; retry %d in %.2f s", self.transport.url, what, self.failures, delay)
        self.result.retries += 1
        self.outbox._sleep(delay)
        return True


class StatementSource(Protocol):
    """What ``push_profile`` needs of a profile store: the trainee's statements in order."""

    def statements(self, trainee: str, *, since_seq: int = 0) -> Iterator[Any]: ...


def push_profile(store: StatementSource, trainee: str, lrs_url: str, *, username: str, password: str,
                 outbox: Outbox | None = None, timeout: float = 10.0, max_attempts: int | None = None) -> PushResult:
    """Queue every statement of ``trainee``'s profile (new ones only) and push the outbox to the LRS."""
    own = outbox is None
    box = Outbox() if outbox is None else outbox
    try:
        box.enqueue(stored.statement for stored in store.statements(trainee))
        return box.push(lrs_url, username=username, password=password, timeout=timeout, max_attempts=max_attempts)
    finally:
        if own:
            box.close()
