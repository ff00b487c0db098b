"""The profile store on SQLite and PostgreSQL: appends, reads, duplicate ids, the hash chain and its
tamper evidence, signed checkpoints, the audit log, and corrupt databases refused."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import sqlite3
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sessions.profiles import Checkpoint, CorruptProfileError, ProfileError, ProfileStore, VerifyResult, open_store
from sessions.profiles.chain import GENESIS, canonical_json
from sessions.profiles.store import SCHEMA_VERSION

KEY = b"instructor-secret-0123456789abcdef"


def statement(n: int, trainee: str = "alice", **extra: Any) -> dict[str, Any]:
    """A small xAPI-shaped statement with a fresh id (what the training runner appends)."""
    return {
        "id": str(uuid.uuid4()),
        "actor": {"objectType": "Agent", "account": {"homePage": "https://medverse.example/trainees", "name": trainee}},
        "verb": {"id": "http://adlnet.gov/expapi/verbs/interacted", "display": {"en-US": "interacted"}},
        "object": {"id": f"https://medverse.example/xapi/modules/m/steps/s{n}", "objectType": "Activity"},
        "result": {"score": {"scaled": 0.5}, "extensions": {"n": n, "naïve": "é"}},
        "timestamp": "2026-12-01T10:00:00Z",
        **extra,
    }


def fill(store: ProfileStore, n: int, trainee: str = "alice") -> list[dict[str, Any]]:
    made = [statement(i, trainee) for i in range(1, n + 1)]
    store.append(trainee, made)
    return made


# -- appends and reads ----------------------------------------------------------------------------


def test_append_returns_receipts_chained_from_genesis(store: ProfileStore) -> None:
    """Receipts number a trainee's records 1, 2, ... and each hash is SHA-256(prev digest + canonical JSON)."""
    made = [statement(i) for i in range(3)]
    receipts = store.append("alice", made)
    assert [r.seq for r in receipts] == [1, 2, 3]
    assert [r.statement_id for r in receipts] == [s["id"] for s in made]
    prev = GENESIS
    for receipt, s in zip(receipts, made, strict=True):
        text = json.dumps(s, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        assert receipt.hash == hashlib.sha256(bytes.fromhex(prev) + text.encode("utf-8")).hexdigest()
        prev = receipt.hash


def test_statements_read_back_in_order_and_since(store: ProfileStore) -> None:
    """What was appended reads back equal, in order, with prev links; since_seq skips the first ones."""
    made = fill(store, 2500)  # more than one page of the reader
    stored = list(store.statements("alice"))
    assert [s.statement for s in stored] == made
    assert [s.seq for s in stored] == list(range(1, 2501))
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(stored))
    assert [s.seq for s in store.statements("alice", since_seq=2497)] == [2498, 2499, 2500]
    assert list(store.statements("nobody")) == []


def test_trainees_and_counts_are_separate_chains(store: ProfileStore) -> None:
    """Each trainee has a chain of their own starting at 1; count and trainees report them."""
    fill(store, 3, "bob")
    fill(store, 5, "alice")
    assert store.append("bob", [statement(9, "bob")])[0].seq == 4
    assert store.trainees() == ["alice", "bob"]
    assert (store.count("alice"), store.count("bob"), store.count("carol")) == (5, 4, 0)
    assert store.verify("alice").ok and store.verify("bob").ok


def test_append_many_spans_trainees_in_one_call(store: ProfileStore) -> None:
    """append_many keeps each trainee's order and numbering when trainees are interleaved."""
    items = [("bob" if i % 2 else "alice", statement(i)) for i in range(10)]
    receipts = store.append_many(items)
    assert [r.seq for r in receipts] == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert [s.statement for s in store.statements("bob")] == [s for t, s in items if t == "bob"]


def test_duplicate_ids_are_stored_once(store: ProfileStore) -> None:
    """Appending a stored statement again (a retry) returns its first receipt and stores nothing."""
    made = fill(store, 3)
    first = store.append("alice", [made[1]])[0]
    again = store.append("alice", [made[1], made[1], statement(4)])
    assert first.seq == 2 and again[0] == first and again[1] == first
    assert again[2].seq == 4
    assert store.count("alice") == 4
    # another trainee may hold the same id: ids are unique per trainee
    assert store.append("bob", [made[0]])[0].seq == 1


def test_same_id_other_content_is_refused_and_nothing_stored(store: ProfileStore) -> None:
    """A different statement under a stored id is refused with one line; the call stores nothing."""
    made = fill(store, 2)
    forged = {**made[0], "result": {"score": {"scaled": 1.0}}}
    with pytest.raises(ProfileError, match="already stored") as info:
        store.append("alice", [statement(3), forged])
    assert "\n" not in str(info.value)
    assert store.count("alice") == 2


def test_bad_input_is_refused_with_one_line(store: ProfileStore) -> None:
    """Bad trainee ids, non-objects, bad ids and non-JSON values: one-line errors, nothing stored."""
    cases: list[tuple[str, Any]] = [
        ("al ice", statement(1)),
        ("", statement(1)),
        ("alice", ["not", "an", "object"]),
        ("alice", {**statement(1), "id": 'a"b'}),
        ("alice", {**statement(1), "result": {"score": {"raw": float("nan")}}}),
        ("alice", {**statement(1), "x": {1, 2}}),
        ("alice", {**statement(1), "x": "\ud800"}),
    ]
    for trainee, bad in cases:
        with pytest.raises(ProfileError) as info:
            store.append(trainee, [statement(0), bad])
        assert "\n" not in str(info.value), str(info.value)
    assert store.count("alice") == 0


def test_a_statement_without_id_gets_one(store: ProfileStore) -> None:
    """Like an LRS, the store gives an id to a statement that has none, and stores it in the statement."""
    bare = statement(1)
    del bare["id"]
    receipt = store.append("alice", [bare])[0]
    uuid.UUID(receipt.statement_id)
    assert next(store.statements("alice")).statement["id"] == receipt.statement_id


def test_reopened_store_keeps_everything(store_target: str) -> None:
    """Appends are committed: a new connection sees them, and keeps chaining from the same head."""
    with open_store(store_target) as first:
        fill(first, 4)
        cp = first.checkpoint("alice", KEY)
        first.audit("ines", "show", "alice")
    with open_store(store_target) as second:
        assert second.count("alice") == 4
        assert second.append("alice", [statement(5)])[0].seq == 5
        assert second.verify("alice").ok
        assert second.checkpoints("alice") == [cp]
        assert [e["who"] for e in second.audit_log()] == ["ines"]


def test_concurrent_appenders_take_turns_on_one_chain(store_target: str) -> None:
    """Four connections appending to one trainee at once leave one unbroken chain with every statement."""
    open_store(store_target).close()
    errors: list[BaseException] = []

    def work(k: int) -> None:
        try:
            with open_store(store_target) as mine:
                for i in range(25):
                    mine.append("alice", [statement(100 * k + i), statement(100 * k + 50 + i)])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with open_store(store_target) as check:
        result = check.verify("alice")
        assert result.ok and result.count == 200, result


# -- tamper evidence --------------------------------------------------------------------------------


def test_intact_chain_verifies(store: ProfileStore) -> None:
    """A chain nobody touched verifies, and counts its records."""
    fill(store, 20)
    result = store.verify("alice")
    assert (result.ok, result.count, result.first_bad_seq) == (True, 20, None)
    assert store.verify("nobody").ok


def _renumber(raw_sql: Any, trainee: str, from_seq: int, delta: int) -> None:
    """Shift seq of records >= from_seq by delta (through negatives: the primary key holds at every row)."""
    raw_sql("UPDATE statements SET seq = -(seq + ?) WHERE trainee = ? AND seq >= ?", delta, trainee, from_seq)
    raw_sql("UPDATE statements SET seq = -seq WHERE trainee = ? AND seq < 0", trainee)


def test_edit_is_named(store: ProfileStore, raw_sql: Any) -> None:
    """Changing one stored statement's text is found at that record."""
    fill(store, 10)
    fill(store, 3, "bob")
    (body,) = raw_sql("SELECT body FROM statements WHERE trainee = 'alice' AND seq = 6")[0]
    raw_sql("UPDATE statements SET body = ? WHERE trainee = 'alice' AND seq = 6", body.replace('"scaled":0.5', '"scaled":1.0'))
    result = store.verify("alice")
    assert (result.ok, result.first_bad_seq, result.count) == (False, 6, 5)
    assert "edited" in result.reason
    assert store.verify("bob").ok


def test_edit_with_rehash_of_that_record_is_named(store: ProfileStore, raw_sql: Any) -> None:
    """Editing a record and fixing its own hash breaks the link of the next record."""
    fill(store, 10)
    prev, body = raw_sql("SELECT prev_hash, body FROM statements WHERE trainee = 'alice' AND seq = 4")[0]
    body = body.replace('"scaled":0.5', '"scaled":0.9')
    new_hash = hashlib.sha256(bytes.fromhex(prev) + body.encode()).hexdigest()
    raw_sql("UPDATE statements SET body = ?, hash = ? WHERE trainee = 'alice' AND seq = 4", body, new_hash)
    result = store.verify("alice")
    assert (result.ok, result.first_bad_seq) == (False, 5)
    assert "does not follow record 4" in result.reason


def test_deletion_is_named(store: ProfileStore, raw_sql: Any) -> None:
    """Deleting a record leaves a gap found at its seq; closing the gap breaks the next link instead."""
    fill(store, 10)
    raw_sql("DELETE FROM statements WHERE trainee = 'alice' AND seq = 7")
    result = store.verify("alice")
    assert (result.ok, result.first_bad_seq) == (False, 7)
    assert "missing" in result.reason
    _renumber(raw_sql, "alice", 8, -1)
    result = store.verify("alice")
    assert (result.ok, result.first_bad_seq) == (False, 7)
    assert "does not follow" in result.reason


def test_deletion_from_the_end_is_named(store: ProfileStore, raw_sql: Any) -> None:
    """Deleting the last records is found against the trainee's head row."""
    fill(store, 10)
    raw_sql("DELETE FROM statements WHERE trainee = 'alice' AND seq >= 9")
    result = store.verify("alice")
    assert (result.ok, result.first_bad_seq, result.count) == (False, 9, 8)


def test_insertion_is_named(store: ProfileStore, raw_sql: Any) -> None:
    """A record inserted at 4 (later ones renumbered) is found at 4, or at 5 if its own links were forged."""
    fill(store, 10)
    cols = "trainee, seq, statement_id, body, prev_hash, hash"
    _renumber(raw_sql, "alice", 4, 1)
    forged = canonical_json(statement(99))
    raw_sql(f"INSERT INTO statements ({cols}) VALUES ('alice', 4, ?, ?, ?, ?)", str(uuid.uuid4()), forged, GENESIS, GENESIS)
    result = store.verify("alice")
    assert (result.ok, result.first_bad_seq) == (False, 4)
    prev = raw_sql("SELECT hash FROM statements WHERE trainee = 'alice' AND seq = 3")[0][0]
    sid = json.loads(forged)["id"]
    raw_sql(
        "UPDATE statements SET statement_id = ?, prev_hash = ?, hash = ? WHERE trainee = 'alice' AND seq = 4",
        sid, prev, hashlib.sha256(bytes.fromhex(prev) + forged.encode()).hexdigest(),
    )  # fmt: skip
    result = store.verify("alice")
    assert (result.ok, result.first_bad_seq) == (False, 5)


def test_reordering_is_named(store: ProfileStore, raw_sql: Any) -> None:
    """Swapping records 3 and 4 (whole rows, or only their contents) is found at 3."""
    fill(store, 10)
    raw_sql("UPDATE statements SET seq = -1 WHERE trainee = 'alice' AND seq = 3")
    raw_sql("UPDATE statements SET seq = 3 WHERE trainee = 'alice' AND seq = 4")
    raw_sql("UPDATE statements SET seq = 4 WHERE trainee = 'alice' AND seq = -1")
    result = store.verify("alice")
    assert (result.ok, result.first_bad_seq) == (False, 3)
    # put the rows back, then swap only the statement texts and ids
    raw_sql("UPDATE statements SET seq = -1 WHERE trainee = 'alice' AND seq = 3")
    raw_sql("UPDATE statements SET seq = 3 WHERE trainee = 'alice' AND seq = 4")
    raw_sql("UPDATE statements SET seq = 4 WHERE trainee = 'alice' AND seq = -1")
    assert store.verify("alice").ok
    rows = {seq: (sid, body) for seq, sid, body in raw_sql("SELECT seq, statement_id, body FROM statements WHERE seq IN (3, 4)")}
    raw_sql("UPDATE statements SET statement_id = ?, body = ? WHERE trainee = 'alice' AND seq = 3", f"x{rows[4][0]}", rows[4][1])
    raw_sql("UPDATE statements SET statement_id = ?, body = ? WHERE trainee = 'alice' AND seq = 4", *rows[3])
    raw_sql("UPDATE statements SET statement_id = ? WHERE trainee = 'alice' AND seq = 3", rows[4][0])
    result = store.verify("alice")
    assert (result.ok, result.first_bad_seq) == (False, 3)


def test_statement_id_column_edit_is_named(store: ProfileStore, raw_sql: Any) -> None:
    """The id column, which dedup relies on, must be the statement's own id."""
    fill(store, 5)
    raw_sql("UPDATE statements SET statement_id = 'swapped' WHERE trainee = 'alice' AND seq = 2")
    result = store.verify("alice")
    assert (result.ok, result.first_bad_seq) == (False, 2)


# -- checkpoints ------------------------------------------------------------------------------------


def test_checkpoint_verifies_and_survives_later_appends(store: ProfileStore) -> None:
    """A checkpoint vouches for the records it covered, also after the trainee practised more."""
    fill(store, 8)
    cp = store.checkpoint("alice", KEY)
    assert (cp.seq, cp.trainee) == (8, "alice")
    fill(store, 5)
    result = store.verify_checkpoint("alice", cp, KEY)
    assert (result.ok, result.count) == (True, 8), result
    kept = Checkpoint.from_dict(json.loads(json.dumps(cp.to_dict())))
    assert kept == cp and store.verify_checkpoint("alice", kept, KEY).ok
    empty = store.checkpoint("bob", KEY)
    assert (empty.seq, empty.hash) == (0, GENESIS) and store.verify_checkpoint("bob", empty, KEY).ok


def test_checkpoint_catches_a_consistent_rewrite(store: ProfileStore, raw_sql: Any) -> None:
    """Rewriting record 3 and re-hashing every later record passes verify, but not the checkpoint."""
    fill(store, 6)
    cp = store.checkpoint("alice", KEY)
    rows = raw_sql("SELECT seq, body FROM statements WHERE trainee = 'alice' ORDER BY seq")
    prev = GENESIS
    for seq, body in rows:
        text = body.replace('"scaled":0.5', '"scaled":1.0') if seq == 3 else body
        digest = hashlib.sha256(bytes.fromhex(prev) + text.encode()).hexdigest()
        sql = "UPDATE statements SET body = ?, prev_hash = ?, hash = ? WHERE trainee = 'alice' AND seq = ?"
        raw_sql(sql, text, prev, digest, seq)
        prev = digest
    raw_sql("UPDATE heads SET hash = ? WHERE trainee = 'alice'", prev)
    assert store.verify("alice").ok
    result = store.verify_checkpoint("alice", cp, KEY)
    assert (result.ok, result.first_bad_seq) == (False, 6)
    assert "rewritten" in result.reason


def test_checkpoint_catches_records_deleted_with_the_head(store: ProfileStore, raw_sql: Any) -> None:
    """Deleting the last records and moving the head back passes verify, but not the checkpoint."""
    fill(store, 6)
    cp = store.checkpoint("alice", KEY)
    raw_sql("DELETE FROM statements WHERE trainee = 'alice' AND seq > 4")
    (head,) = raw_sql("SELECT hash FROM statements WHERE trainee = 'alice' AND seq = 4")[0]
    raw_sql("UPDATE heads SET seq = 4, hash = ? WHERE trainee = 'alice'", head)
    assert store.verify("alice").ok
    result = store.verify_checkpoint("alice", cp, KEY)
    assert (result.ok, result.first_bad_seq) == (False, 5)


def test_forged_checkpoints_are_refused(store: ProfileStore) -> None:
    """A checkpoint with a changed field, signed with another key, or for another trainee fails."""
    fill(store, 6)
    cp = store.checkpoint("alice", KEY)
    fill(store, 2)
    later = store.verify("alice")
    forgeries = [
        Checkpoint(cp.trainee, 8, later.head_hash, cp.time, cp.mac),  # moved forward without the key
        Checkpoint(cp.trainee, cp.seq, cp.hash, cp.time + 1, cp.mac),
        store.checkpoint("alice", b"someone-else's-key-0123456789"),
    ]
    for forged in forgeries:
        result = store.verify_checkpoint("alice", forged, KEY)
        assert not result.ok and "signature" in result.reason
    fill(store, 1, "bob")
    assert not store.verify_checkpoint("bob", cp, KEY).ok


def test_malformed_checkpoint_files_give_one_line(store: ProfileStore) -> None:
    """Checkpoint.from_dict refuses missing fields and wrong types with a one-line ProfileError."""
    cp = store.checkpoint("alice", KEY).to_dict()
    for bad in [{}, {**cp, "seq": "8"}, {**cp, "seq": -1}, {**cp, "mac": "zz"}, {**cp, "time": True}, []]:
        with pytest.raises(ProfileError) as info:
            Checkpoint.from_dict(bad)  # type: ignore[arg-type]
        assert "\n" not in str(info.value)


def test_checkpoint_refuses_a_broken_chain(store: ProfileStore, raw_sql: Any) -> None:
    """No checkpoint is signed over a chain that does not verify."""
    fill(store, 3)
    raw_sql("UPDATE statements SET body = body || ' ' WHERE trainee = 'alice' AND seq = 2")
    with pytest.raises(ProfileError, match="record 2"):
        store.checkpoint("alice", KEY)
    assert store.checkpoints("alice") == []


def test_audit_log_records_who_did_what(store: ProfileStore) -> None:
    """audit() entries come back from audit_log(), oldest first, filterable by trainee."""
    store.audit("ines", "show", "alice")
    store.audit("alice", "export", "alice", "xapi out.json")
    store.audit("ines", "verify", "bob")
    log = store.audit_log()
    assert [(e["who"], e["action"], e["trainee"]) for e in log] == [
        ("ines", "show", "alice"),
        ("alice", "export", "alice"),
        ("ines", "verify", "bob"),
    ]
    assert log[1]["detail"] == "xapi out.json" and log[0]["time"] <= log[2]["time"]
    assert [e["action"] for e in store.audit_log("bob")] == ["verify"]


# -- corrupt databases --------------------------------------------------------------------------------


def _refused(path: Path) -> str:
    before = path.read_bytes()
    with pytest.raises(CorruptProfileError) as info:
        open_store(path)
    assert path.read_bytes() == before, "a refused file must be left exactly as it was"
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    return message


def test_random_bytes_are_refused(tmp_path: Path) -> None:
    """A file of random bytes is not a profile database; it is reported and left alone."""
    path = tmp_path / "profiles.sqlite"
    path.write_bytes(os.urandom(20_000))
    assert "not a medverse profile database" in _refused(path)


def test_truncated_database_is_refused(tmp_path: Path) -> None:
    """A profile database cut short (a bad copy, a full disk) fails quick_check and is refused."""
    path = tmp_path / "profiles.sqlite"
    with open_store(path) as made:
        fill(made, 3000)
    assert not Path(f"{path}-wal").exists()  # closing checkpointed everything into the main file
    size = path.stat().st_size
    with path.open("r+b") as handle:
        handle.truncate(size // 2)
    _refused(path)


def test_damaged_pages_are_refused(tmp_path: Path) -> None:
    """Overwriting pages in the middle of a profile database is reported, not papered over."""
    path = tmp_path / "profiles.sqlite"
    with open_store(path) as made:
        fill(made, 3000)
    with path.open("r+b") as handle:
        handle.seek(path.stat().st_size // 2)
        handle.write(os.urandom(3 * 4096))
    assert "damaged" in _refused(path)


def test_other_sqlite_databases_are_refused(tmp_path: Path) -> None:
    """A SQLite file of something else, an empty file, or a profile file without its tables is refused."""
    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE notes (text TEXT)")
    assert "no meta table" in _refused(other)
    empty = tmp_path / "empty.sqlite"
    empty.write_bytes(b"")
    _refused(empty)
    foreign = tmp_path / "foreign.sqlite"
    with sqlite3.connect(foreign) as conn:
        conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
        conn.execute("INSERT INTO meta VALUES ('format', 'something.else')")
    assert "something.else" in _refused(foreign)


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    """A profile database from a newer medverse is not touched by an older one."""
    path = tmp_path / "profiles.sqlite"
    open_store(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),))
    conn.close()
    with pytest.raises(ProfileError, match="newer"):
        open_store(path)


def test_default_store_is_in_medverse_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """open_store() with no target uses $MEDVERSE_PROFILES, else profiles.sqlite in the medverse home."""
    monkeypatch.setenv("MEDVERSE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MEDVERSE_PROFILES", raising=False)
    with open_store() as default:
        fill(default, 1)
    assert (tmp_path / "home" / "profiles.sqlite").is_file()
    monkeypatch.setenv("MEDVERSE_PROFILES", str(tmp_path / "elsewhere.sqlite"))
    open_store().close()
    assert (tmp_path / "elsewhere.sqlite").is_file()


def test_postgres_schema_without_meta_is_refused(pg_url: str) -> None:
    """On PostgreSQL too, a medverse_profiles schema that is not a profile database is refused."""
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA medverse_profiles")
        conn.execute("CREATE TABLE medverse_profiles.statements (x int)")
    with pytest.raises(CorruptProfileError, match="no meta table"):
        open_store(pg_url)


def test_unreachable_postgres_is_one_line(postgres_server: Any) -> None:
    """A database URL nobody answers gives a one-line error without the password."""
    url = f"postgresql://postgres:hunter2@127.0.0.1:{postgres_server.port}/no_such_db"
    with pytest.raises(ProfileError) as info:
        open_store(url)
    assert "\n" not in str(info.value) and "hunter2" not in str(info.value)


def test_verify_split_over_worker_processes_names_the_same_record(store: ProfileStore, raw_sql: Any) -> None:
    """A long chain is walked in ranges by worker processes; the verdict is the one walk of it all gives."""

    def verdicts(check: Callable[[int], VerifyResult]) -> tuple[Any, ...]:
        split, whole = check(3), check(1)
        fields = ("ok", "count", "first_bad_seq", "head_hash")
        assert [getattr(split, f) for f in fields] == [getattr(whole, f) for f in fields]
        return split.ok, split.count, split.first_bad_seq

    fill(store, 60)
    assert verdicts(lambda w: store.verify("alice", workers=w)) == (True, 60, None)
    cp = store.checkpoint("alice", KEY)
    assert verdicts(lambda w: store.verify_checkpoint("alice", cp, KEY, workers=w)) == (True, 60, None)
    # ranges are 1-20, 21-40, 41-60: break the chain in the last range, then at a range boundary
    raw_sql("UPDATE statements SET body = body || ' ' WHERE trainee = 'alice' AND seq = 47")
    assert verdicts(lambda w: store.verify("alice", workers=w)) == (False, 46, 47)
    raw_sql("DELETE FROM statements WHERE trainee = 'alice' AND seq = 40")
    assert verdicts(lambda w: store.verify("alice", workers=w)) == (False, 39, 40)
    assert verdicts(lambda w: store.verify_checkpoint("alice", cp, KEY, workers=w)) == (False, 39, 40)
    _renumber(raw_sql, "alice", 41, -1)
    assert verdicts(lambda w: store.verify("alice", workers=w)) == (False, 39, 40)
