"""The LRS from the command line: `medverse train --lrs` pushes after the run (and leaves what a
down LRS could not take in the outbox), `medverse profile push` sends the rest; a real Ralph each time."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from ralph_server import Ralph, free_port

from sessions.profiles import open_store

MODULE = Path(__file__).parents[1] / "training" / "data" / "brain-basics.json"


def medverse(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    code = "import sys; from sessions.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=240,
                          check=False, env={**os.environ, **env})  # fmt: skip


@pytest.mark.slow
def test_train_pushes_to_the_lrs_and_a_later_push_sends_what_was_down(tmp_path: Path) -> None:
    port = free_port()
    lrs = Ralph(tmp_path / "ralph", port=port)
    lrs.root.mkdir()
    db, outbox = tmp_path / "profiles.sqlite", tmp_path / "outbox.sqlite"
    env = {"MEDVERSE_LRS_USER": lrs.username, "MEDVERSE_LRS_PASSWORD": lrs.password,
           "MEDVERSE_HOME": str(tmp_path / "home"), "MEDVERSE_SECRET": "cli-push-test-secret-8d2b4f6a1c"}  # fmt: skip
    # the LRS is down: the run still succeeds and keeps every statement queued
    down = medverse(env, "train", "--module", str(MODULE), "--trainee", "alice", "--profile", str(db),
                    "--lrs", lrs.url)  # fmt: skip
    assert down.returncode == 0, down.stderr
    assert "LRS: 0 statements sent" in down.stdout and "19 left in the outbox" in down.stdout
    lrs.start()
    try:
        # the next run pushes its own statements and the ones the last run left behind
        up = medverse(env, "train", "--module", str(MODULE), "--trainee", "alice", "--profile", str(db), "--lrs", lrs.url)
        assert up.returncode == 0, up.stderr
        assert "LRS: 38 statements sent" in up.stdout and "0 left in the outbox" in up.stdout
        # a push from the profile command has nothing new to send, and duplicates nothing
        again = medverse(env, "profile", "push", "alice", "--profile", str(db), "--lrs", lrs.url)
        assert again.returncode == 0, again.stderr
        assert "alice: 0 sent" in again.stdout
        held = Counter(s["id"] for s in lrs.statements())
    finally:
        lrs.stop()
    with open_store(db) as store:
        ids = [s.statement["id"] for s in store.statements("alice")]
    assert len(ids) == 38 and set(held) == set(ids) and max(held.values()) == 1
    assert not outbox.exists()  # the default outbox lives in MEDVERSE_HOME, not beside the profile
