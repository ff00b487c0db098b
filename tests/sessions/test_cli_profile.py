"""`medverse profile`, as an instructor and a trainee would use it, on a real SQLite profile."""

from __future__ import annotations

import json
import sqlite3
import uuid
from pathlib import Path

import pytest

from sessions.cli import main
from sessions.profiles import open_store
from sessions.profiles.access import issue_profile_token
from sessions.profiles.metrics import METRICS_EXTENSION
from sessions.profiles.xapi import result, statement, validate

SECRET = "cli-profile-test-secret-5f3a9c1e7b"
T0 = 1_790_000_000.0


def attempt(trainee: str, score: float, t0: float) -> list[dict[str, object]]:
    """One attempt at a two-step module, as the training runner records it."""
    reg = str(uuid.uuid4())
    common = {"trainee": trainee, "module_id": "central-gyri", "module_name": "Central gyri", "registration": reg}
    steps = [statement(verb="launched", timestamp=t0, **common)]
    for k, step in enumerate(("precentral", "postcentral")):
        steps.append(statement(verb="experienced", step_id=step, step_name=step.title(), timestamp=t0 + 1 + k, **common))
        steps.append(statement(verb="passed", step_id=step, step_name=step.title(), timestamp=t0 + 5 + k,
                               result=result(scaled=score, success=True, duration_s=4.0), **common))
    metrics = {"errors": 1.0, "accuracy_mm": 2.5, "economy": 1.4}
    steps.append(statement(verb="completed", timestamp=t0 + 9, **common,
                           result=result(scaled=score, success=score >= 0.6, completion=True, duration_s=9.0,
                                         extensions={METRICS_EXTENSION: metrics})))
    return steps


@pytest.fixture
def profile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MEDVERSE_SECRET", SECRET)
    monkeypatch.delenv("MEDVERSE_PROFILE_TOKEN", raising=False)
    path = tmp_path / "profiles.sqlite"
    with open_store(path) as store:
        for n, score in enumerate((0.55, 0.7, 0.9)):
            store.append("alice", attempt("alice", score, T0 + 100 * n))
        store.append("bob", attempt("bob", 0.8, T0))
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_show_lists_attempts_with_scores(profile: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "profile", "show", "alice", "--profile", str(profile))
    assert code == 0
    assert "3 attempts" in out and "chain intact" in out
    for score in ("55%", "70%", "90%"):
        assert score in out
    assert out.count("passed") == 2 and out.count("failed") == 1


def test_trainee_token_reads_own_profile_only_and_both_are_audited(profile: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    bob = issue_profile_token(SECRET.encode(), "bob", "trainee")
    code, out, _ = run(capsys, "profile", "show", "bob", "--profile", str(profile), "--token", bob)
    assert code == 0 and "1 attempts" in out
    code, _, err = run(capsys, "profile", "export", "alice", "--xapi", str(profile.parent / "x.json"),
                       "--profile", str(profile), "--token", bob)
    assert code == 2
    assert err.strip() == "medverse: error: trainee bob may not export the profile of alice"
    assert not (profile.parent / "x.json").exists()
    code, _, err = run(capsys, "profile", "list", "--profile", str(profile), "--token", bob)
    assert code == 2 and "instructors only" in err
    with open_store(profile) as store:
        log = [(e["who"], e["action"], e["trainee"], e["detail"].split(":")[0]) for e in store.audit_log()]
    assert ("bob", "show", "bob", "role=trainee") in log
    assert ("bob", "export", "alice", "denied") in log
    assert ("bob", "read", "*", "denied") in log


def test_forged_token_is_refused(profile: Path, capsys: pytest.CaptureFixture[str]) -> None:
    forged = issue_profile_token(b"another-secret-0123456789abcdef", "ines", "instructor")
    code, _, err = run(capsys, "profile", "show", "alice", "--profile", str(profile), "--token", forged)
    assert code == 2 and "signature" in err and len(err.strip().splitlines()) == 1


def test_export_is_valid_xapi(profile: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_file = tmp_path / "alice.json"
    code, out, _ = run(capsys, "profile", "export", "alice", "--xapi", str(out_file), "--profile", str(profile))
    assert code == 0 and "18 xAPI 1.0.3 statements" in out
    statements = json.loads(out_file.read_text())
    assert len(statements) == 18 and len({s["id"] for s in statements}) == 18
    assert all(validate(s) == [] for s in statements)


def test_verify_names_the_edited_record_and_checkpoint_catches_a_rewrite(profile: Path, tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    cp = tmp_path / "alice.cp.json"
    assert run(capsys, "profile", "checkpoint", "alice", "--out", str(cp), "--profile", str(profile))[0] == 0
    code, out, _ = run(capsys, "profile", "verify", "alice", "--checkpoint", str(cp), "--profile", str(profile))
    assert code == 0 and "ok: 18 records intact" in out
    # someone improves record 9 (the second attempt's first step score) directly in the database
    with sqlite3.connect(profile) as db:
        body = db.execute("SELECT body FROM statements WHERE trainee='alice' AND seq=9").fetchone()[0]
        assert '"scaled":0.7' in body
        db.execute("UPDATE statements SET body=? WHERE trainee='alice' AND seq=9", (body.replace("0.7", "0.95"),))
    code, out, _ = run(capsys, "profile", "verify", "alice", "--checkpoint", str(cp), "--profile", str(profile))
    assert code == 1
    assert "TAMPERED" in out and "first bad record: 9" in out and "checkpoint" in out and "FAILED" in out


def test_report_is_written(profile: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_file = tmp_path / "r" / "alice.html"
    code, out, _ = run(capsys, "profile", "report", "alice", "--out", str(out_file), "--profile", str(profile))
    assert code == 0 and str(out_file.resolve()) in out
    html = out_file.read_text()
    assert "alice" in html and "<svg" in html and "Central gyri" in html


def test_corrupt_profile_is_reported_not_recreated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("MEDVERSE_SECRET", SECRET)
    bad = tmp_path / "profiles.sqlite"
    bad.write_bytes(b"not a database at all" * 100)
    code, _, err = run(capsys, "profile", "show", "alice", "--profile", str(bad))
    assert code == 2 and len(err.strip().splitlines()) == 1 and str(bad) in err
    assert bad.read_bytes() == b"not a database at all" * 100
