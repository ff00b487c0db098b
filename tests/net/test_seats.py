"""net.seats without a server: resume tickets, the revocation list, and the seat book's rules."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import pytest

from net.seats import (
    RESUME_TTL_S,
    RevocationList,
    SeatBook,
    SeatError,
    append_revocation,
    issue_ticket,
    parse_revocation_line,
    verify_ticket,
)
from net.tokens import TokenError, issue_token, verify_token

SECRET = b"seats-tests-secret-0123456789abcdef"
NOW = 1_800_000_000.0


def claims(participant: str = "bob", room: str = "ward", **kwargs: float) -> object:
    return verify_token(SECRET, issue_token(SECRET, room, participant, "expert", now=NOW, **kwargs), now=NOW)


def test_a_ticket_verifies_to_its_session_and_nothing_else_does() -> None:
    """A ticket names the session it was issued for; another secret, an edited payload, a join token, or an
    expired ticket are refused; a ticket is not a join token either."""
    book = SeatBook()
    session = book.open(claims(), NOW)  # type: ignore[arg-type]
    ticket = issue_ticket(SECRET, session, now=NOW)
    assert verify_ticket(SECRET, ticket, now=NOW + 10) == session
    prefix, body, sig = ticket.split(".")
    for bad in (issue_ticket(b"another-secret-0123456789abcdefgh", session, now=NOW), f"{prefix}.{body}x.{sig}",
                issue_token(SECRET, "ward", "bob", "expert"), "", "r1..", ticket + "A"):  # fmt: skip
        with pytest.raises(SeatError):
            verify_ticket(SECRET, bad, now=NOW)
    with pytest.raises(SeatError, match="expired"):
        verify_ticket(SECRET, ticket, now=NOW + RESUME_TTL_S + 1)
    with pytest.raises(TokenError):
        verify_token(SECRET, ticket, now=NOW)


def test_the_book_spends_tokens_and_accepts_only_the_current_generation() -> None:
    """A token opens one session; it is spent afterwards; a fresh token is refused while the seat is taken;
    each resume advances the generation and leaves the previous ticket stale; an unknown seat (a
    restarted server) takes any genuine ticket."""
    book = SeatBook()
    first = claims()
    assert book.check_token(first, seat_taken=False) is None  # type: ignore[arg-type]
    session = book.open(first, NOW)  # type: ignore[arg-type]
    assert book.check_token(first, seat_taken=False)[0] == "refused_token_reused"  # type: ignore[arg-type,index]
    assert book.check_token(claims(), seat_taken=True)[0] == "refused_seat_taken"  # type: ignore[arg-type,index]
    assert book.check_ticket(session) is None
    resumed = book.resume(session, NOW + 1)
    assert resumed.generation == session.generation + 1
    assert book.check_ticket(session)[0] == "refused_stale_resume"  # type: ignore[index]
    assert SeatBook().check_ticket(session) is None


def test_the_book_survives_a_restart_through_its_state(caplog: pytest.LogCaptureFixture) -> None:
    """A book restored from its state refuses the spent token and the stale ticket and takes the current
    one; what has expired is not written; malformed entries are skipped in one warning."""
    book = SeatBook()
    spent = claims()
    first = book.open(spent, NOW)  # type: ignore[arg-type]
    current = book.resume(first, NOW + 5)
    gone = book.open(claims("old", ttl_s=1.0), NOW - RESUME_TTL_S)  # type: ignore[arg-type]
    state = json.loads(json.dumps(book.state(NOW + 10)))
    assert len(state["sessions"]) == 1 and gone.claims.token_id not in state["spent"]
    again = SeatBook()
    again.restore(state, NOW + 10)
    assert again.check_token(spent, seat_taken=False)[0] == "refused_token_reused"  # type: ignore[arg-type,index]
    assert again.check_ticket(first)[0] == "refused_stale_resume"  # type: ignore[index]
    assert again.check_ticket(current) is None
    assert again.check_ticket(gone) is None  # a seat the book no longer knows: the signature is the proof
    state["sessions"].append(["ward", "../x", "sid", 1, NOW, NOW])
    state["spent"]["jti"] = "soon"
    with caplog.at_level(logging.WARNING, logger="net.seats"):
        damaged = SeatBook()
        damaged.restore(state, NOW + 10)
    assert damaged.check_ticket(first)[0] == "refused_stale_resume"  # type: ignore[index]
    assert [r.getMessage() for r in caplog.records] == ["seat book in the state file: 2 malformed entries skipped"]
    SeatBook().restore(None, NOW)  # a state file written before seats were kept


def test_revocation_lines_and_the_list(tmp_path: Path) -> None:
    """Both line forms parse; others are refused when appended and skipped when read; the list is read
    again when the file changes; a seat entry revokes tokens issued and sessions opened until then."""
    assert parse_revocation_line("token AAAAAAAAAAAAAAAAAAAAAA") == ("token", ("AAAAAAAAAAAAAAAAAAAAAA",), 0.0)
    assert parse_revocation_line("seat ward bob 12.5") == ("seat", ("ward", "bob"), 12.5)
    for bad in ("token short", "seat ward bob", "seat ward b/b 1", "everything"):
        with pytest.raises(SeatError):
            parse_revocation_line(bad)
    path = tmp_path / "consult.revoked"
    revocations = RevocationList(path)
    assert not revocations.refresh() and revocations.reason(claims()) is None  # type: ignore[arg-type]
    bob = claims()
    append_revocation(path, f"token {bob.token_id}")  # type: ignore[attr-defined]
    with path.open("a") as handle:
        handle.write("# a comment\nnonsense line\n")
    assert revocations.refresh()
    assert revocations.reason(bob) == "join token revoked"  # type: ignore[arg-type]
    assert revocations.reason(claims()) is None  # type: ignore[arg-type]
    time.sleep(0.01)
    append_revocation(path, f"seat ward ann {NOW + 5}")
    os.utime(path)
    assert revocations.refresh()
    assert revocations.reason(claims("ann")) is not None  # type: ignore[arg-type]
    later = verify_token(SECRET, issue_token(SECRET, "ward", "ann", "expert", now=NOW + 10), now=NOW + 10)
    assert revocations.reason(later) is None
    assert revocations.reason(later, opened_at=NOW + 1) is not None  # a session opened before the revocation
    assert oct(path.stat().st_mode & 0o777) == "0o600"
