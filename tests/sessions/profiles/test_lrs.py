"""The LRS outbox: durable, idempotent, retries while the LRS is down, parks what it refuses, never duplicates.

The fast tests drive a small stand-in LRS on loopback whose failures are scripted (503s, a lost answer,
a statement that makes it answer 500); the slow ones push to a real Ralph LRS (``ralph_server.py``)
and read the statements back over ``GET /xAPI/statements``.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from ralph_server import Ralph, free_port, ralph  # noqa: F401 - `ralph` is a fixture the slow tests take by name

from sessions.profiles import open_store, xapi
from sessions.profiles.lrs import Backoff, LRSError, Outbox, OutboxError, push_profile, statements_url

FAST = Backoff(base_s=0.02, factor=2.0, cap_s=0.2)


def make_statements(n: int, trainee: str = "alice") -> list[dict[str, Any]]:
    """``n`` valid statements of one attempt: launched, then steps shown, answered, passed or failed."""
    registration = str(uuid.uuid4())
    verbs = ["experienced", "interacted", "answered", "passed", "failed", "requested-hint", "committed-error"]
    out = [xapi.statement(trainee=trainee, verb="launched", module_id="brain-central-gyri", module_name="Central gyri",
                          registration=registration, timestamp=1_714_564_800.0)]
    for i in range(1, n):
        verb = verbs[i % len(verbs)]
        res = xapi.result(scaled=0.75, success=verb != "failed", duration_s=i * 0.5) if verb in ("passed", "failed") else None
        out.append(xapi.statement(trainee=trainee, verb=verb, module_id="brain-central-gyri", module_name="Central gyri",
                                  step_id=f"step-{i % 5}", registration=registration,
                                  timestamp=1_714_564_800.0 + i, result=res))
    return out


# -- a scripted stand-in LRS ------------------------------------------------------------------------

class StubLRS:
    """An LRS on loopback that dedups by id like a real one, with scripted failures."""

    def __init__(self) -> None:
        self.stored: dict[str, dict[str, Any]] = {}
        self.posts: list[int] = []          # batch sizes received
        self.unavailable = 0                # answer 503 to this many next requests
        self.lose_answers = 0               # store, then drop the connection without answering
        self.poison: set[str] = set()       # a batch holding one of these ids gets 500
        self.auth_ok = True
        self.lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                assert self.path == "/xAPI/statements" and self.headers["X-Experience-API-Version"] == "1.0.3"
                with stub.lock:
                    stub.posts.append(len(body))
                    if not stub.auth_ok:
                        return self._answer(401, {"detail": "Invalid authentication credentials"})
                    if stub.unavailable:
                        stub.unavailable -= 1
                        return self._answer(503, {"detail": "busy"})
                    if any(s["id"] in stub.poison for s in body):
                        return self._answer(500, {"detail": "Statements bulk indexation failed"})
                    new = [s["id"] for s in body if s["id"] not in stub.stored]
                    stub.stored.update((s["id"], s) for s in body if s["id"] in new)
                    if stub.lose_answers:
                        stub.lose_answers -= 1
                        self.close_connection = True
                        return None
                return self._answer(200, new) if new else self._answer(204, None)

            def _answer(self, status: int, payload: Any) -> None:
                data = b"" if payload is None else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stub() -> Iterator[StubLRS]:
    lrs = StubLRS()
    yield lrs
    lrs.close()


def outbox_at(path: Path, **kwargs: Any) -> Outbox:
    kwargs.setdefault("backoff", FAST)
    return Outbox(path, **kwargs)


# -- fast tests --------------------------------------------------------------------------------------

@pytest.mark.parametrize("given", ["http://lrs:8100", "http://lrs:8100/", "http://lrs:8100/xAPI", "http://lrs:8100/xAPI/",
                                   "http://lrs:8100/xapi/statements"])
def test_statements_url_accepts_the_base_with_or_without_xapi(given: str) -> None:
    """The base URL, the /xAPI endpoint and the statements resource all name the same resource."""
    assert statements_url(given).lower() == "http://lrs:8100/xapi/statements"
    assert statements_url("https://host/lrs/xAPI") == "https://host/lrs/xAPI/statements"


@pytest.mark.parametrize("bad", ["lrs:8100", "ftp://lrs/xAPI", "http://", "http://lrs/xAPI?x=1"])
def test_statements_url_refuses_what_is_not_an_http_url(bad: str) -> None:
    with pytest.raises(LRSError, match="http"):
        statements_url(bad)


def test_enqueue_is_idempotent_durable_and_full_sync(tmp_path: Path) -> None:
    """Ids already queued are skipped; the queue survives a reopen; WAL and synchronous=FULL are on."""
    statements = make_statements(15)
    box = outbox_at(tmp_path / "out.sqlite")
    assert box.enqueue(statements[:10]) == 10
    assert box.enqueue(statements) == 5
    assert box._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert box._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    box.close()
    with Outbox(tmp_path / "out.sqlite") as again:
        assert again.counts() == {"pending": 15, "sent": 0, "rejected": 0}
        assert again.enqueue(statements) == 0
        with pytest.raises(ValueError, match="id"):
            again.enqueue([{"actor": {}}])


def test_a_file_that_is_not_an_outbox_is_refused_not_recreated(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"this is not a database" * 100)
    with pytest.raises(OutboxError, match="not an LRS outbox"):
        Outbox(garbage)
    assert garbage.read_bytes().startswith(b"this is not a database")
    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE profiles (x)")
    with pytest.raises(OutboxError, match="no outbox table"):
        Outbox(other)


def test_push_sends_in_batches_and_repush_sends_nothing(tmp_path: Path, stub: StubLRS) -> None:
    """250 statements in batches of 100, each marked sent after the LRS's 200; a second push makes no request."""
    box = outbox_at(tmp_path / "out.sqlite", batch_size=100)
    statements = make_statements(250)
    box.enqueue(statements)
    result = box.push(stub.url, username="u", password="p")
    assert (result.sent, result.already, result.pending, result.requests) == (250, 0, 0, 3)
    assert stub.posts == [100, 100, 50]
    assert set(stub.stored) == {s["id"] for s in statements}
    again = box.push(stub.url + "/xAPI", username="u", password="p")
    assert (again.sent, again.requests) == (0, 0)


def test_lrs_unavailable_is_retried_with_growing_jittered_delays(tmp_path: Path, stub: StubLRS) -> None:
    """Five 503s: five waits, each within [d/2, d] of the exponential schedule, then everything delivered."""
    delays: list[float] = []
    backoff = Backoff(base_s=1.0, factor=2.0, cap_s=8.0)
    box = Outbox(tmp_path / "out.sqlite", backoff=backoff, sleep=delays.append)
    box.enqueue(make_statements(20))
    stub.unavailable = 5
    result = box.push(stub.url, username="u", password="p")
    assert (result.sent, result.retries, result.requests) == (20, 5, 6)
    for attempt, delay in enumerate(delays, start=1):
        ceiling = min(8.0, 2.0 ** (attempt - 1))
        assert ceiling / 2 <= delay <= ceiling
    assert delays[-1] > delays[0]


def test_giving_up_keeps_statements_queued(tmp_path: Path) -> None:
    """Nothing listening: max_attempts requests, then the push returns with everything still pending."""
    box = outbox_at(tmp_path / "out.sqlite")
    box.enqueue(make_statements(7))
    result = box.push(f"http://127.0.0.1:{free_port()}", username="u", password="p", max_attempts=3)
    assert (result.sent, result.pending, result.requests, result.retries) == (0, 7, 3, 2)
    assert box.counts()["pending"] == 7


def test_a_lost_answer_is_retried_and_the_lrs_keeps_one_copy(tmp_path: Path, stub: StubLRS) -> None:
    """The LRS stores a batch but the answer is lost: the retry finds the ids known (204), nothing doubles."""
    box = outbox_at(tmp_path / "out.sqlite")
    statements = make_statements(12)
    box.enqueue(statements)
    stub.lose_answers = 1
    result = box.push(stub.url, username="u", password="p")
    assert (result.sent, result.already, result.retries, result.pending) == (0, 12, 1, 0)
    assert len(stub.stored) == 12


def test_statement_that_makes_the_lrs_fail_is_bisected_out_and_parked(tmp_path: Path, stub: StubLRS) -> None:
    """One statement in 40 makes every batch holding it fail with 500: it is found, parked, counted; 39 arrive."""
    box = outbox_at(tmp_path / "out.sqlite", batch_size=40)
    statements = make_statements(40)
    poison = statements[23]["id"]
    stub.poison = {poison}
    box.enqueue(statements)
    result = box.push(stub.url, username="u", password="p")
    assert (result.sent, result.rejected, result.pending, result.rejected_ids) == (39, 1, 0, [poison])
    assert set(stub.stored) == {s["id"] for s in statements} - {poison}
    [parked] = box.rejected()
    assert parked.statement_id == poison and "500" in parked.reason and parked.statement == statements[23]
    assert result.requests < 20  # bisection, not one request per statement
    assert box.push(stub.url, username="u", password="p").requests == 0


def test_a_broken_lrs_is_treated_as_down_not_a_reason_to_park(tmp_path: Path, stub: StubLRS) -> None:
    """500 for every statement and nothing ever stored: no statement is parked, all stay pending."""
    box = outbox_at(tmp_path / "out.sqlite", batch_size=8)
    statements = make_statements(8)
    stub.poison = {s["id"] for s in statements}
    box.enqueue(statements)
    result = box.push(stub.url, username="u", password="p", max_attempts=4)
    assert (result.rejected, result.pending) == (0, 8)


def test_refused_credentials_stop_the_push_with_one_line(tmp_path: Path, stub: StubLRS) -> None:
    box = outbox_at(tmp_path / "out.sqlite")
    box.enqueue(make_statements(3))
    stub.auth_ok = False
    with pytest.raises(LRSError, match="401") as info:
        box.push(stub.url, username="u", password="wrong")
    assert "\n" not in str(info.value)
    assert box.counts()["pending"] == 3


def test_an_outbox_serves_one_lrs(tmp_path: Path, stub: StubLRS) -> None:
    """Statements marked sent to one LRS must not count as sent to another: that push is refused."""
    box = outbox_at(tmp_path / "out.sqlite")
    box.enqueue(make_statements(2))
    box.push(stub.url, username="u", password="p")
    with pytest.raises(LRSError, match="another outbox"):
        box.push("http://127.0.0.1:1/xAPI", username="u", password="p")


def test_push_profile_queues_only_new_statements(tmp_path: Path, stub: StubLRS) -> None:
    """A profile pushed twice, with statements added between: the second push sends only the new ones."""
    statements = make_statements(30)
    store = open_store(tmp_path / "profiles.sqlite")
    store.append("alice", statements[:20])
    store.append("bob", make_statements(5, "bob"))
    box = outbox_at(tmp_path / "out.sqlite")
    first = push_profile(store, "alice", stub.url, username="u", password="p", outbox=box)
    assert (first.sent, first.pending) == (20, 0)
    store.append("alice", statements[20:])
    second = push_profile(store, "alice", stub.url, username="u", password="p", outbox=box)
    assert (second.sent, second.requests) == (10, 1)
    assert set(stub.stored) == {s["id"] for s in statements}


# -- against a real Ralph LRS -------------------------------------------------------------------------

def assert_exactly_once(server: Ralph, statements: list[dict[str, Any]]) -> None:
    held = Counter(s["id"] for s in server.statements())
    assert set(held) == {s["id"] for s in statements}
    assert max(held.values()) == 1, [sid for sid, n in held.items() if n > 1]


@pytest.mark.slow
def test_profile_pushed_to_ralph_reads_back_once_each(tmp_path: Path, ralph: Ralph) -> None:  # noqa: F811
    """250 statements reach Ralph and read back whole; re-pushing, even from a lost outbox, stores nothing twice."""
    statements = make_statements(250)
    store = open_store(tmp_path / "profiles.sqlite")
    store.append("alice", statements)
    store.append("bob", make_statements(10, "bob"))
    box = outbox_at(tmp_path / "out.sqlite")
    result = push_profile(store, "alice", ralph.url, username=ralph.username, password=ralph.password, outbox=box)
    assert (result.sent, result.already, result.rejected, result.pending) == (250, 0, 0, 0)
    assert_exactly_once(ralph, statements)
    back = {s["id"]: s for s in ralph.statements()}
    for stmt in statements[:5]:
        got = back[stmt["id"]]
        assert (got["actor"], got["verb"], got["object"]["id"], got["context"]["registration"]) == (
            stmt["actor"], stmt["verb"], stmt["object"]["id"], stmt["context"]["registration"])

    again = push_profile(store, "alice", ralph.url + "/xAPI", username=ralph.username, password=ralph.password, outbox=box)
    assert (again.sent, again.requests) == (0, 0)

    # The outbox file lost: everything goes again, Ralph answers 204 (known, identical), nothing doubles.
    fresh = outbox_at(tmp_path / "fresh.sqlite")
    lost = push_profile(store, "alice", ralph.url, username=ralph.username, password=ralph.password, outbox=fresh)
    assert (lost.sent, lost.already, lost.pending) == (0, 250, 0)
    # An id Ralph holds with other content: 409, counted as delivered (statements are immutable), not parked.
    changed = dict(statements[0], verb={"id": xapi.VERBS["completed"], "display": {"en-US": "completed"}})
    other = outbox_at(tmp_path / "other.sqlite")
    other.enqueue([changed, *make_statements(3)])
    conflict = other.push(ralph.url, username=ralph.username, password=ralph.password)
    assert (conflict.sent, conflict.already, conflict.conflicts, conflict.rejected) == (3, 1, 1, 0)
    assert {s["id"]: s for s in ralph.statements()}[changed["id"]]["verb"] == statements[0]["verb"]
    assert len(ralph.statements()) == 253


@pytest.mark.slow
def test_ralph_started_in_the_middle_of_a_push_gets_everything_once(tmp_path: Path) -> None:
    """The push begins while no LRS listens, retries with back-off, and delivers all when Ralph comes up."""
    server = Ralph(tmp_path / "ralph")
    server.root.mkdir()
    statements = make_statements(120)
    box = outbox_at(tmp_path / "out.sqlite", backoff=Backoff(base_s=0.05, factor=2.0, cap_s=0.5))
    box.enqueue(statements)
    results = []
    pusher = threading.Thread(target=lambda: results.append(
        box.push(server.url, username=server.username, password=server.password)))
    pusher.start()
    try:
        time.sleep(1.0)
        assert pusher.is_alive() and box.counts()["pending"] == 120
        server.start()
        pusher.join(timeout=60)
        assert not pusher.is_alive()
        [result] = results
        assert (result.sent, result.pending) == (120, 0)
        assert result.retries >= 3
        assert_exactly_once(server, statements)
    finally:
        server.stop()
        pusher.join(timeout=5)


@pytest.mark.slow
def test_ralph_stopped_and_restarted_loses_nothing_and_doubles_nothing(tmp_path: Path, ralph: Ralph) -> None:  # noqa: F811
    """Half delivered; Ralph goes down; the push gives up with the rest queued; after the restart all arrive once."""
    statements = make_statements(90)
    box = outbox_at(tmp_path / "out.sqlite", batch_size=20)
    box.enqueue(statements[:45])
    assert box.push(ralph.url, username=ralph.username, password=ralph.password).sent == 45
    ralph.stop()
    box.enqueue(statements)
    down = box.push(ralph.url, username=ralph.username, password=ralph.password, max_attempts=3)
    assert (down.sent, down.pending, down.requests) == (0, 45, 3)
    ralph.start()
    up = box.push(ralph.url, username=ralph.username, password=ralph.password)
    assert (up.sent, up.already, up.pending) == (45, 0, 0)
    assert_exactly_once(ralph, statements)


@pytest.mark.slow
def test_malformed_statement_is_parked_while_the_rest_reach_ralph(tmp_path: Path, ralph: Ralph) -> None:  # noqa: F811
    """A statement Ralph refuses (an actor without identifier) is bisected out, parked with Ralph's reason, counted."""
    statements = make_statements(60)
    bad = dict(statements[37], actor={"objectType": "Agent", "name": "alice"})
    statements[37] = bad
    box = outbox_at(tmp_path / "out.sqlite", batch_size=60)
    box.enqueue(statements)
    result = box.push(ralph.url, username=ralph.username, password=ralph.password)
    assert (result.sent, result.rejected, result.pending, result.rejected_ids) == (59, 1, 0, [bad["id"]])
    [parked] = box.rejected()
    assert parked.reason.startswith("HTTP 422") and "actor" in parked.reason
    assert xapi.validate(bad)  # our validator would have caught it before the LRS did
    good = [s for s in statements if s is not bad]
    assert_exactly_once(ralph, good)
    assert box.push(ralph.url, username=ralph.username, password=ralph.password).requests == 0


@pytest.mark.slow
def test_stock_ralph_runserver_stores_only_its_first_post(tmp_path: Path) -> None:
    """Why ralph_server.py serves Ralph's app itself: `ralph runserver -b fs` (5.1) answers 500 to any later POST
    that brings a new statement. When this fails, Ralph is fixed and the fixture can run `ralph runserver`."""
    server = Ralph(tmp_path / "ralph", stock=True)
    server.root.mkdir()
    server.start()
    try:
        first, second = make_statements(2)
        assert server.request("POST", "/xAPI/statements", [first])[0] == 200
        status, body = server.request("POST", "/xAPI/statements", [second])
        assert status == 500 and "indexation failed" in body["detail"]
        assert "already exists and overwrite is not allowed" in server.log_tail(20_000)
        assert [s["id"] for s in server.statements()] == [first["id"]]
    finally:
        server.stop()
