"""Trainee profiles: each trainee's xAPI statements, hash-chained, in SQLite or PostgreSQL.

:func:`open_store` picks the backend from its target: nothing for the default SQLite file
(``$MEDVERSE_PROFILES``, else ``profiles.sqlite`` in the medverse home), a path for another SQLite
file, a ``postgresql://`` URL for PostgreSQL. Both hold the same tables and behave the same:

``meta``         format name and schema version: what makes a database a profile database
``statements``   one row per statement: trainee, seq (1, 2, ... per trainee), statement id (unique per
                 trainee), the canonical JSON text, prev_hash and hash (:mod:`sessions.profiles.chain`)
``heads``        per trainee, the seq and hash of the last record: appends lock this row, so each
                 chain grows one record at a time, and verify sees records deleted from the end
``checkpoints``  signed chain heads (:class:`~sessions.profiles.chain.Checkpoint`)
``audit``        who read, exported, verified or checkpointed which profile, and when

Durability: :meth:`ProfileStore.append` returns once its transaction is committed, which on SQLite
(WAL, ``synchronous=FULL``) and on PostgreSQL (``synchronous_commit`` on, its default) means on disk.
A file that exists but is not a profile database, or fails ``PRAGMA quick_check``, is refused with
:class:`CorruptProfileError` and left as it is: profiles are never silently recreated.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import sqlite3
import subprocess
import sys
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from sessions.profiles.chain import (
    GENESIS,
    Checkpoint,
    Row,
    VerifyResult,
    canonical_json,
    record_hash,
    sign_checkpoint,
    verify_prefix,
    walk,
)
from sessions.profiles.errors import CorruptProfileError, ProfileError

__all__ = [
    "CorruptProfileError",
    "ProfileError",
    "ProfileStore",
    "Receipt",
    "StoredStatement",
    "open_store",
]

log = logging.getLogger(__name__)

FORMAT = "medverse.profiles"
SCHEMA_VERSION = 1
PROFILES_ENV = "MEDVERSE_PROFILES"
DEFAULT_FILE_NAME = "profiles.sqlite"
#: Trainee ids: the participant ids of tokens (``net.tokens.ID_PATTERN``, which a test keeps equal),
#: so that a trainee's token names their profile. Not imported: ``net`` pulls in aiortc.
TRAINEE_ID = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
_TRAINEE_RE = re.compile(TRAINEE_ID)
#: Statement ids: UUIDs in xAPI; any short id without quotes or escapes is accepted.
_STATEMENT_ID_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
#: Rows per page when reading a chain back: big pages keep a million-record verify in Python's fast path.
_PAGE = 50_000
#: Largest number of ids in one ``IN (...)`` query (SQLite's default limit is 32,766 parameters).
_IDS_PER_QUERY = 900

_SCHEMA = [
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE statements (
        trainee TEXT NOT NULL, seq BIGINT NOT NULL, statement_id TEXT NOT NULL, body TEXT NOT NULL,
        prev_hash TEXT NOT NULL, hash TEXT NOT NULL,
        PRIMARY KEY (trainee, seq), UNIQUE (trainee, statement_id))""",
    "CREATE TABLE heads (trainee TEXT PRIMARY KEY, seq BIGINT NOT NULL, hash TEXT NOT NULL)",
    """CREATE TABLE checkpoints (
        trainee TEXT NOT NULL, seq BIGINT NOT NULL, hash TEXT NOT NULL, time DOUBLE PRECISION NOT NULL,
        mac TEXT NOT NULL)""",
    "CREATE INDEX checkpoints_trainee ON checkpoints (trainee, seq)",
    """CREATE TABLE audit (
        time DOUBLE PRECISION NOT NULL, who TEXT NOT NULL, action TEXT NOT NULL, trainee TEXT NOT NULL,
        detail TEXT NOT NULL)""",
    "CREATE INDEX audit_time ON audit (time)",
]


@dataclass(frozen=True)
class Receipt:
    """Proof that a statement is stored durably: its place in the trainee's chain and its hash (hex)."""

    seq: int
    statement_id: str
    hash: str


@dataclass(frozen=True)
class StoredStatement:
    """One record of a trainee's chain, read back."""

    seq: int
    trainee: str
    statement: dict[str, Any]
    prev_hash: str
    hash: str


def check_trainee(trainee: object) -> str:
    """``trainee`` if it is a valid trainee id, else a one-line :class:`ProfileError`."""
    if not isinstance(trainee, str) or not _TRAINEE_RE.match(trainee):
        raise ProfileError(f"trainee id must be 1-64 letters, digits, '_', '.', '-' (got {trainee!r})")
    return trainee


@dataclass(frozen=True)
class _Prepared:
    trainee: str
    statement_id: str
    body: str
    data: bytes


def _prepare(trainee: str, statement: object) -> _Prepared:
    check_trainee(trainee)
    if not isinstance(statement, Mapping):
        raise ProfileError(f"trainee {trainee}: a statement must be a JSON object (got {type(statement).__name__})")
    statement_id = statement.get("id")
    if statement_id is None:
        # xAPI lets the store assign the id of a statement that comes without one.
        statement_id = str(uuid.uuid4())
        statement = {**statement, "id": statement_id}
    if not isinstance(statement_id, str) or not _STATEMENT_ID_RE.match(statement_id):
        raise ProfileError(f"trainee {trainee}: statement id must be 1-128 letters, digits, '_.:-' (got {statement_id!r})")
    body = canonical_json(statement)
    return _Prepared(trainee, statement_id, body, body.encode("utf-8"))


class ProfileStore(ABC):
    """Trainees' hash-chained statements, checkpoints and the audit log, in one database.

    One store is one connection: use it from one thread at a time (:class:`ProfileWriter` opens its
    own). Several stores, threads or processes may append to one database at once: each append locks
    the trainee's chain head until it commits.
    """

    #: What the store was opened on, for messages (a PostgreSQL URL without its password).
    target: str
    #: What reopens it (the full URL): for verify workers.
    _source: str

    # -- what each backend provides ---------------------------------------------------------------

    @abstractmethod
    def _transaction(self) -> AbstractContextManager[None]:
        """A write transaction: committed (durably) on exit, rolled back on an exception."""

    @abstractmethod
    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one statement (``?`` placeholders) and return its rows."""

    @abstractmethod
    def _insert_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run one statement (``?`` placeholders) for each row."""

    @abstractmethod
    def _lock_head(self, trainee: str) -> tuple[int, str]:
        """Inside a transaction: the trainee's (seq, hash) head, locked until the transaction ends."""

    @abstractmethod
    def _chain_page_sql(self) -> str:
        """SQL for a page of :data:`~sessions.profiles.chain.Row` with the body as bytes."""

    @abstractmethod
    def _wrap(self, exc: Exception, doing: str) -> ProfileError:
        """A one-line :class:`ProfileError` for a database error raised while ``doing``."""

    @abstractmethod
    def close(self) -> None:
        """Close the connection (idempotent)."""

    # -- shared behaviour -------------------------------------------------------------------------

    def __enter__(self) -> ProfileStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def append(self, trainee: str, statements: Sequence[Mapping[str, Any]]) -> list[Receipt]:
        """Append statements to one trainee's chain; durable when this returns.

        A statement whose id the trainee's profile already holds is not stored again: its receipt is
        the stored record's (idempotent retries). The same id with other content is refused.
        Statements without an ``id`` get a UUID, as an LRS would give them.

        Raises
        ------
        ProfileError
            A statement is not JSON, has a bad id or conflicts with a stored one, or the database
            failed; nothing of the call is stored then.
        """
        return self.append_many([(trainee, s) for s in statements])

    def append_many(self, items: Sequence[tuple[str, Mapping[str, Any]]]) -> list[Receipt]:
        """Append (trainee, statement) pairs, of any trainees, in one transaction (see :meth:`append`)."""
        prepared = [_prepare(trainee, statement) for trainee, statement in items]
        if not prepared:
            return []
        trainees = sorted({p.trainee for p in prepared})  # a fixed lock order: no deadlock between appenders
        try:
            with self._transaction():
                heads = {t: self._lock_head(t) for t in trainees}
                known = self._known_ids(prepared)
                rows: list[tuple[str, int, str, str, str, str]] = []
                receipts: list[Receipt] = []
                for p in prepared:
                    seen = known.get((p.trainee, p.statement_id))
                    if seen is not None:
                        receipt, body = seen
                        if body != p.body:
                            raise ProfileError(
                                f"trainee {p.trainee}: statement {p.statement_id} is already stored (record {receipt.seq}) "
                                "with other content"
                            )
                        receipts.append(receipt)
                        continue
                    seq, prev = heads[p.trainee]
                    digest = record_hash(prev, p.data)
                    rows.append((p.trainee, seq + 1, p.statement_id, p.body, prev, digest))
                    receipt = Receipt(seq + 1, p.statement_id, digest)
                    heads[p.trainee] = (seq + 1, digest)
                    known[(p.trainee, p.statement_id)] = (receipt, p.body)
                    receipts.append(receipt)
                if rows:
                    self._insert_many(
                        "INSERT INTO statements (trainee, seq, statement_id, body, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?)",
                        rows,
                    )
                    self._insert_many(
                        "UPDATE heads SET seq = ?, hash = ? WHERE trainee = ?",
                        [(seq, digest, t) for t, (seq, digest) in heads.items()],
                    )
        except ProfileError:
            raise
        except Exception as exc:  # the backend's own errors (disk full, connection lost, ...)
            raise self._wrap(exc, "cannot append") from None
        return receipts

    def _known_ids(self, prepared: Sequence[_Prepared]) -> dict[tuple[str, str], tuple[Receipt, str]]:
        """Stored records with the ids of ``prepared``: (trainee, id) -> (receipt, body)."""
        wanted: dict[str, list[str]] = {}
        for p in prepared:
            wanted.setdefault(p.trainee, []).append(p.statement_id)
        known: dict[tuple[str, str], tuple[Receipt, str]] = {}
        for trainee, ids in wanted.items():
            unique = sorted(set(ids))
            for start in range(0, len(unique), _IDS_PER_QUERY):
                chunk = unique[start : start + _IDS_PER_QUERY]
                marks = ", ".join("?" * len(chunk))
                sql = f"SELECT statement_id, seq, hash, body FROM statements WHERE trainee = ? AND statement_id IN ({marks})"
                for statement_id, seq, digest, body in self._query(sql, [trainee, *chunk]):
                    known[(trainee, statement_id)] = (Receipt(int(seq), statement_id, digest), body)
        return known

    def statements(self, trainee: str, *, since_seq: int = 0) -> Iterator[StoredStatement]:
        """The trainee's records after ``since_seq``, in chain order, read a page at a time."""
        check_trainee(trainee)
        last = since_seq
        while True:
            try:
                rows = self._query(
                    "SELECT seq, body, prev_hash, hash FROM statements WHERE trainee = ? AND seq > ? ORDER BY seq LIMIT ?",
                    (trainee, last, 1000),
                )
            except Exception as exc:
                raise self._wrap(exc, "cannot read statements") from None
            for seq, body, prev, digest in rows:
                try:
                    statement = json.loads(body)
                except ValueError:
                    raise ProfileError(f"trainee {trainee}: record {seq} is not JSON (run verify)") from None
                yield StoredStatement(int(seq), trainee, statement, prev, digest)
            if len(rows) < 1000:
                return
            last = int(rows[-1][0])

    def trainees(self) -> list[str]:
        """Every trainee with a profile, sorted."""
        try:
            return [row[0] for row in self._query("SELECT trainee FROM heads ORDER BY trainee")]
        except Exception as exc:
            raise self._wrap(exc, "cannot list trainees") from None

    def count(self, trainee: str) -> int:
        """Number of records stored for the trainee (0 for an unknown trainee)."""
        check_trainee(trainee)
        try:
            return int(self._query("SELECT COUNT(*) FROM statements WHERE trainee = ?", (trainee,))[0][0])
        except Exception as exc:
            raise self._wrap(exc, "cannot count statements") from None

    def _pages(self, trainee: str, first: int = 1, upto: int | None = None) -> Iterator[list[Row]]:
        sql = self._chain_page_sql()
        last, end = first - 1, (2**62 if upto is None else upto)
        while True:
            try:
                # Both backends give (int, bytes, bytes, str, str) already: no per-row conversion.
                rows: list[Row] = self._query(sql, (trainee, last, end, _PAGE))
            except Exception as exc:
                raise self._wrap(exc, "cannot read statements") from None
            if rows:
                yield rows
            if len(rows) < _PAGE:
                return
            last = rows[-1][0]

    def _walk_range(self, trainee: str, first: int, upto: int | None) -> VerifyResult:
        """Walk records ``first``..``upto`` (to the end when None), linked to the stored record before."""
        prev: str | None = GENESIS
        if first > 1:
            try:
                before = self._query("SELECT hash FROM statements WHERE trainee = ? AND seq = ?", (trainee, first - 1))
            except Exception as exc:
                raise self._wrap(exc, "cannot read statements") from None
            prev = str(before[0][0]) if before else None
        return walk(self._pages(trainee, first, upto), first_seq=first, prev_hash=prev, upto=upto)

    def _walk(self, trainee: str, upto: int | None, workers: int | None) -> VerifyResult:
        """Walk the chain (to ``upto``), split into ranges walked by worker processes when it is long.

        The checks of one record need only its own row and the stored hash of the row before, so
        ranges verify independently; the first failing range, in seq order, names the first bad
        record. This process walks the first range itself while the workers walk the others.
        """
        try:
            last = upto if upto is not None else int(self._query(
                "SELECT COALESCE(MAX(seq), 0) FROM statements WHERE trainee = ?", (trainee,))[0][0])  # fmt: skip
        except Exception as exc:
            raise self._wrap(exc, "cannot read statements") from None
        count = workers if workers is not None else _auto_workers(last)
        if count <= 1 or last < 2 * count:
            return self._walk_range(trainee, 1, upto)
        bounds = [1 + last * i // count for i in range(count)] + [last + 1]
        ranges: list[tuple[int, int | None]] = [(bounds[i], bounds[i + 1] - 1) for i in range(count)]
        ranges[-1] = (ranges[-1][0], upto)  # the last range runs to the end: records added meanwhile count
        children = [_start_worker(self._source, trainee, first, end) for first, end in ranges[1:]]
        verified = 0
        try:
            for i in range(len(ranges)):
                part = self._walk_range(trainee, *ranges[0]) if i == 0 else _collect_worker(children[i - 1])
                if not part.ok:
                    return VerifyResult(False, verified + part.count, part.first_bad_seq, part.reason, part.head_hash)
                verified += part.count
                head = part.head_hash
        finally:
            for child in children:
                if child.poll() is None:
                    child.kill()
                child.communicate()
        return VerifyResult(True, verified, None, f"{verified} records intact" if verified else "empty profile", head)

    def verify(self, trainee: str, *, workers: int | None = None) -> VerifyResult:
        """Walk the trainee's chain and name the first record that was edited, deleted, inserted or moved.

        Also compares the chain's end with the trainee's head row, which catches records deleted
        from the end (an attacker who edits the head as well needs a :class:`Checkpoint` to be caught).
        ``workers``: processes to walk a long chain with (default: one per CPU, up to 4, from
        :data:`PARALLEL_VERIFY_MIN` records on; 1 walks it here).
        """
        check_trainee(trainee)
        result = self._walk(trainee, None, workers)
        if not result.ok:
            return result
        try:
            head = self._query("SELECT seq, hash FROM heads WHERE trainee = ?", (trainee,))
        except Exception as exc:
            raise self._wrap(exc, "cannot read the chain head") from None
        head_seq, head_hash = (int(head[0][0]), head[0][1]) if head else (0, GENESIS)
        if head_seq > result.count:
            why = f"record {result.count + 1} is missing (the chain ends at {result.count}, its head says {head_seq}): deleted"
            return VerifyResult(False, result.count, result.count + 1, why, result.head_hash)
        if head_seq < result.count or head_hash != result.head_hash:
            bad = head_seq + 1 if head_seq < result.count else head_seq
            why = f"record {bad} disagrees with the chain head: inserted or edited"
            return VerifyResult(False, min(head_seq, result.count), min(head_seq + 1, result.count), why, result.head_hash)
        return result

    def checkpoint(self, trainee: str, key: bytes) -> Checkpoint:
        """Sign the trainee's current chain head with ``key``, keep it in the store and return it.

        The chain is verified first: a checkpoint never vouches for a broken chain.
        """
        result = self.verify(trainee)
        if not result.ok:
            raise ProfileError(f"trainee {trainee}: chain is broken, not signing it: {result.reason}")
        cp = sign_checkpoint(key, trainee, result.count, result.head_hash, time.time())
        try:
            with self._transaction():
                self._insert_many(
                    "INSERT INTO checkpoints (trainee, seq, hash, time, mac) VALUES (?, ?, ?, ?, ?)",
                    [(cp.trainee, cp.seq, cp.hash, cp.time, cp.mac)],
                )
        except Exception as exc:
            raise self._wrap(exc, "cannot store the checkpoint") from None
        return cp

    def checkpoints(self, trainee: str) -> list[Checkpoint]:
        """Checkpoints kept for the trainee, oldest first (their MACs are not checked here)."""
        check_trainee(trainee)
        try:
            sql = "SELECT trainee, seq, hash, time, mac FROM checkpoints WHERE trainee = ? ORDER BY seq, time"
            rows = self._query(sql, (trainee,))
        except Exception as exc:
            raise self._wrap(exc, "cannot read checkpoints") from None
        return [Checkpoint(t, int(seq), h, float(when), mac) for t, seq, h, when, mac in rows]

    def verify_checkpoint(self, trainee: str, cp: Checkpoint, key: bytes, *, workers: int | None = None) -> VerifyResult:
        """Prove that the trainee's first ``cp.seq`` records are those ``cp`` signed (see :mod:`chain`)."""
        check_trainee(trainee)
        if cp.trainee != trainee:
            return VerifyResult(False, 0, None, f"checkpoint is for trainee {cp.trainee}, not {trainee}")
        return verify_prefix(cp, key, lambda upto: self._walk(trainee, upto, workers))

    def audit(self, who: str, action: str, trainee: str, detail: str = "") -> None:
        """Record that ``who`` did ``action`` on ``trainee``'s profile (committed on return)."""
        try:
            with self._transaction():
                self._insert_many(
                    "INSERT INTO audit (time, who, action, trainee, detail) VALUES (?, ?, ?, ?, ?)",
                    [(time.time(), str(who), str(action), str(trainee), str(detail))],
                )
        except Exception as exc:
            raise self._wrap(exc, "cannot write the audit log") from None

    def audit_log(self, trainee: str | None = None) -> list[dict[str, Any]]:
        """Audit entries, oldest first: dicts with time (Unix s), who, action, trainee, detail."""
        sql = "SELECT time, who, action, trainee, detail FROM audit"
        params: tuple[str, ...] = ()
        if trainee is not None:
            sql, params = sql + " WHERE trainee = ?", (trainee,)
        try:
            rows = self._query(sql + " ORDER BY time", params)
        except Exception as exc:
            raise self._wrap(exc, "cannot read the audit log") from None
        return [dict(zip(("time", "who", "action", "trainee", "detail"), row, strict=True)) for row in rows]


# -- SQLite ---------------------------------------------------------------------------------------


class SQLiteProfileStore(ProfileStore):
    """A profile database in one SQLite file: WAL journal, ``synchronous=FULL``, so a commit is on disk."""

    def __init__(self, path: Path, *, quick_check: bool = True) -> None:
        self.path = path
        self.target = self._source = str(path)
        if not path.exists():
            _create_sqlite(path)
        try:
            conn = sqlite3.connect(path, isolation_level=None, timeout=30.0, check_same_thread=False)
        except sqlite3.Error as exc:
            raise ProfileError(f"{path}: cannot open: {exc}") from None
        try:
            _check_sqlite(conn, path, quick_check)
            conn.execute("PRAGMA synchronous=FULL")
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise ProfileError(f"{path}: cannot use the WAL journal (journal_mode is {mode})")
        except BaseException:
            conn.close()
            raise
        self._conn: sqlite3.Connection | None = conn

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise ProfileError(f"{self.path}: the profile store is closed")
        return self._conn

    def _transaction(self) -> AbstractContextManager[None]:
        return _SQLiteTransaction(self.conn)

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self.conn.execute(sql, params).fetchall()

    def _insert_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self.conn.executemany(sql, rows)

    def _lock_head(self, trainee: str) -> tuple[int, str]:
        # BEGIN IMMEDIATE already holds the database's write lock: nobody else appends meanwhile.
        row = self.conn.execute("SELECT seq, hash FROM heads WHERE trainee = ?", (trainee,)).fetchone()
        if row is None:
            self.conn.execute("INSERT INTO heads (trainee, seq, hash) VALUES (?, 0, ?)", (trainee, GENESIS))
            return 0, GENESIS
        return int(row[0]), str(row[1])

    def _chain_page_sql(self) -> str:
        # CAST AS BLOB hands the stored UTF-8 bytes over as they are: no decode and re-encode per row.
        return (
            "SELECT seq, CAST('\"id\":\"' || statement_id || '\"' AS BLOB), CAST(body AS BLOB), prev_hash, hash "
            "FROM statements WHERE trainee = ? AND seq > ? AND seq <= ? ORDER BY seq LIMIT ?"
        )

    def _wrap(self, exc: Exception, doing: str) -> ProfileError:
        if isinstance(exc, ProfileError):
            return exc
        if isinstance(exc, sqlite3.DatabaseError) and "malformed" in str(exc):
            return CorruptProfileError(f"{self.path}: {doing}: the database is damaged ({exc})")
        return ProfileError(f"{self.path}: {doing}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")

    def integrity_check(self) -> str:
        """``PRAGMA integrity_check``'s first line: ``"ok"`` for a sound file."""
        return str(self.conn.execute("PRAGMA integrity_check").fetchone()[0])

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class _SQLiteTransaction(AbstractContextManager[None]):
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.conn.execute("COMMIT")
        else:
            self.conn.execute("ROLLBACK")


def _create_sqlite(path: Path) -> None:
    """Create an empty profile database at ``path`` all at once.

    The schema is written to a temporary file that is linked into place when complete, so a crash
    while creating leaves no half-made file that would then be refused as corrupt.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        conn = sqlite3.connect(tmp, isolation_level=None)
        try:
            os.chmod(tmp, 0o600)  # a profile is personal data
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("BEGIN")
            for sql in _SCHEMA:
                conn.execute(sql)
            conn.executemany(
                "INSERT INTO meta (key, value) VALUES (?, ?)",
                [("format", FORMAT), ("schema_version", str(SCHEMA_VERSION)), ("created", str(time.time()))],
            )
            conn.execute("COMMIT")
        finally:
            conn.close()
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)  # fails if it exists: when two processes create at once, the first wins
            log.info("created profile database %s", path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except (OSError, sqlite3.Error) as exc:
        raise ProfileError(f"{path}: cannot create the profile database: {exc}") from None


def _check_sqlite(conn: sqlite3.Connection, path: Path, quick_check: bool) -> None:
    """Refuse a file that is not a sound medverse profile database, before writing anything to it."""
    try:
        pragma = "PRAGMA quick_check" if quick_check else "PRAGMA schema_version"  # the latter reads the header only
        problems = [str(row[0]) for row in conn.execute(pragma).fetchall()]
        if not quick_check:
            problems = ["ok"]
        if problems != ["ok"]:
            # a row may hold several lines ("*** in database main ***", then one per problem): one line out
            lines = [line.strip() for row in problems for line in row.splitlines()]
            found = [line for line in lines if line and not line.startswith("***")] or ["unknown damage"]
            raise CorruptProfileError(f"{path}: the profile database is damaged (quick_check found {len(found)} "
                                      f"problem{'s' if len(found) != 1 else ''}; first: {found[0]})")
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "meta" not in tables:
            raise CorruptProfileError(f"{path}: not a medverse profile database (no meta table)")
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    except sqlite3.DatabaseError as exc:
        raise CorruptProfileError(f"{path}: not a medverse profile database ({exc})") from None
    _check_meta(meta, path, tables)


def _check_meta(meta: Mapping[str, Any], where: object, tables: set[str]) -> None:
    if meta.get("format") != FORMAT:
        raise CorruptProfileError(f"{where}: not a medverse profile database (format {meta.get('format')!r})")
    try:
        version = int(meta.get("schema_version", ""))
    except ValueError:
        raise CorruptProfileError(f"{where}: bad schema version {meta.get('schema_version')!r}") from None
    if version > SCHEMA_VERSION:
        raise ProfileError(f"{where}: profile schema {version} is newer than this medverse's ({SCHEMA_VERSION}): upgrade")
    missing = {"statements", "heads", "checkpoints", "audit"} - tables
    if missing:
        raise CorruptProfileError(f"{where}: profile database lacks table(s) {', '.join(sorted(missing))}")


# -- PostgreSQL -----------------------------------------------------------------------------------

PG_SCHEMA = "medverse_profiles"


def redact_url(url: str) -> str:
    """``url`` without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = netloc[0].split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[1]}"))


class PostgresProfileStore(ProfileStore):
    """A profile database in PostgreSQL (schema ``medverse_profiles``), through psycopg 3.

    Appends lock the trainee's ``heads`` row (``SELECT ... FOR UPDATE``), so concurrent appenders to
    one chain take turns while different trainees' chains grow in parallel.
    """

    def __init__(self, url: str) -> None:
        import psycopg  # noqa: PLC0415 - optional dependency (medverse[postgres]), needed only for PostgreSQL

        self.target = redact_url(url)
        self._source = url
        self._psycopg = psycopg
        try:
            conn = psycopg.connect(url, autocommit=True, connect_timeout=10)
        except psycopg.Error as exc:
            raise ProfileError(f"{self.target}: cannot connect: {_first_line(exc)}") from None
        try:
            self._conn: Any = conn
            self._setup()
        except BaseException:
            conn.close()
            self._conn = None
            raise

    def _setup(self) -> None:
        try:
            with self._conn.transaction():
                # One creator at a time: two first opens of an empty database would race on CREATE.
                self._conn.execute("SELECT pg_advisory_xact_lock(7046146226553430000)")
                exists = self._conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (PG_SCHEMA,)).fetchone()
                if exists is None:
                    self._conn.execute(f"CREATE SCHEMA {PG_SCHEMA}")
                    self._conn.execute(f"SET LOCAL search_path TO {PG_SCHEMA}")
                    for sql in _SCHEMA:
                        self._conn.execute(sql)
                    self._conn.cursor().executemany(
                        "INSERT INTO meta (key, value) VALUES (%s, %s)",
                        [("format", FORMAT), ("schema_version", str(SCHEMA_VERSION)), ("created", str(time.time()))],
                    )
                    log.info("created profile schema %s in %s", PG_SCHEMA, self.target)
            self._conn.execute(f"SET search_path TO {PG_SCHEMA}")
            tables = {
                row[0]
                for row in self._conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s", (PG_SCHEMA,)).fetchall()
            }
            if "meta" not in tables:
                raise CorruptProfileError(f"{self.target}: schema {PG_SCHEMA} is not a medverse profile database (no meta table)")
            meta = dict(self._conn.execute("SELECT key, value FROM meta").fetchall())
        except self._psycopg.Error as exc:
            raise ProfileError(f"{self.target}: cannot open the profile database: {_first_line(exc)}") from None
        _check_meta(meta, self.target, tables)

    @property
    def conn(self) -> Any:
        if self._conn is None:
            raise ProfileError(f"{self.target}: the profile store is closed")
        return self._conn

    def _transaction(self) -> AbstractContextManager[None]:
        return self.conn.transaction()  # type: ignore[no-any-return]

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self.conn.execute(sql.replace("?", "%s"), params).fetchall()  # type: ignore[no-any-return]

    def _insert_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        with self.conn.cursor() as cur:
            cur.executemany(sql.replace("?", "%s"), rows)

    def _lock_head(self, trainee: str) -> tuple[int, str]:
        self.conn.execute("INSERT INTO heads (trainee, seq, hash) VALUES (%s, 0, %s) ON CONFLICT DO NOTHING", (trainee, GENESIS))
        row = self.conn.execute("SELECT seq, hash FROM heads WHERE trainee = %s FOR UPDATE", (trainee,)).fetchone()
        return int(row[0]), str(row[1])

    def _chain_page_sql(self) -> str:
        return (
            "SELECT seq, convert_to('\"id\":\"' || statement_id || '\"', 'UTF8'), convert_to(body, 'UTF8'), prev_hash, hash "
            "FROM statements "
            "WHERE trainee = ? AND seq > ? AND seq <= ? ORDER BY seq LIMIT ?"
        )

    def _wrap(self, exc: Exception, doing: str) -> ProfileError:
        if isinstance(exc, ProfileError):
            return exc
        return ProfileError(f"{self.target}: {doing}: {_first_line(exc)}")

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# -- verifying a long chain in several processes ----------------------------------------------------

#: Chains at least this long are verified by several processes (each start costs about 0.1 s).
PARALLEL_VERIFY_MIN = 200_000
_MAX_VERIFY_WORKERS = 4
#: The job of a verify worker, in its environment (a PostgreSQL URL may hold a password: not argv).
_JOB_ENV = "MEDVERSE_PROFILE_VERIFY_JOB"
_WORKER_SOURCE = "from sessions.profiles.store import verify_worker_main; verify_worker_main()"


def _auto_workers(records: int) -> int:
    if records < PARALLEL_VERIFY_MIN:
        return 1
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, _MAX_VERIFY_WORKERS))


def _start_worker(source: str, trainee: str, first: int, upto: int | None) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])  # the folder that holds the sessions package
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    env[_JOB_ENV] = json.dumps({"source": source, "trainee": trainee, "first": first, "upto": upto})
    return subprocess.Popen(
        [sys.executable, "-c", _WORKER_SOURCE], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )


def _collect_worker(child: subprocess.Popen[bytes]) -> VerifyResult:
    out, err = child.communicate()
    try:
        answer = json.loads(out)
    except ValueError:
        tail = err.decode(errors="replace").strip().splitlines()[-1:] or [f"exit status {child.returncode}"]
        raise ProfileError(f"a verify worker failed: {tail[0]}") from None
    if "error" in answer:
        raise ProfileError(str(answer["error"]))
    return VerifyResult(**answer)


def verify_worker_main() -> None:
    """Entry point of a verify worker process: walk one range, print the result as JSON."""
    job = json.loads(os.environ.pop(_JOB_ENV))
    try:
        with open_store(job["source"], quick_check=False) as store:
            result = store._walk_range(job["trainee"], int(job["first"]), job["upto"])
    except ProfileError as exc:
        sys.stdout.write(json.dumps({"error": str(exc)}))
        return
    sys.stdout.write(json.dumps(asdict(result)))


# -- choosing one ---------------------------------------------------------------------------------


def default_target() -> Path:
    """``$MEDVERSE_PROFILES``, else ``profiles.sqlite`` in the medverse home (``assets.library.home``)."""
    env = os.environ.get(PROFILES_ENV)
    if env:
        return Path(env).expanduser()
    from assets.library import home  # noqa: PLC0415 - assets.library pulls in scipy; only the default path needs it

    return home() / DEFAULT_FILE_NAME


def is_postgres_url(target: object) -> bool:
    """Whether ``target`` names a PostgreSQL database (``postgresql://`` or ``postgres://``)."""
    return isinstance(target, str) and target.startswith(("postgresql://", "postgres://"))


def open_store(target: str | os.PathLike[str] | None = None, *, quick_check: bool = True) -> ProfileStore:
    """Open (creating when missing) the profile store that ``target`` names.

    Parameters
    ----------
    target : str, path or None
        None for the default SQLite file (:func:`default_target`; ``$MEDVERSE_PROFILES`` may also be a
        PostgreSQL URL), a path for a SQLite file, a ``postgresql://`` URL for PostgreSQL.

    quick_check : bool
        Run SQLite's ``PRAGMA quick_check`` on an existing file first (about 1 s per GB); the header,
        format and schema version are checked either way.

    Raises
    ------
    CorruptProfileError
        The file or schema exists but is not a sound profile database (it is left untouched).
    ProfileError
        The database cannot be created, opened or reached.
    """
    if target is None:
        env = os.environ.get(PROFILES_ENV, "")
        target = env if is_postgres_url(env) else default_target()
    if is_postgres_url(target):
        return PostgresProfileStore(str(target))
    return SQLiteProfileStore(Path(target).expanduser(), quick_check=quick_check)
