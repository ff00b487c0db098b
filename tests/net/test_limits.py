"""net.limits without a server: buckets by identity and address, back-off, and the connection cap's default."""

from __future__ import annotations

import subprocess
import sys

import pytest

from net.limits import LimitBook, Limits


def book(**limits: float) -> tuple[LimitBook, list[float]]:
    now = [0.0]
    return LimitBook(Limits(**limits), rate_per_s=20.0, burst=60.0, clock=lambda: now[0]), now  # type: ignore[arg-type]


def test_an_identity_s_bucket_is_shared_by_its_connections_and_the_address_caps_them_all() -> None:
    """Messages of one identity draw on one bucket whatever connection they come on; identities behind one
    address together draw on the address's bucket."""
    limits, now = book(address_burst=100.0, address_rate_per_s=10.0)
    assert sum(limits.message(("ward", "mal"), "10.0.0.1") for _ in range(200)) == 60
    now[0] += 1.0
    assert sum(limits.message(("ward", "mal"), "10.0.0.1") for _ in range(200)) == 20
    # other identities at the same address: 100 - 80 + 10 refilled = 30 left for them all
    assert sum(limits.message(("ward", f"p{i}"), "10.0.0.1") for i in range(5) for _ in range(20)) == 30
    assert limits.message(("ward", "ann"), "10.0.0.2")


def test_joins_back_off_doubling_per_strike_and_forgive_after_a_quiet_spell() -> None:
    """A client that keeps rejoining past its identity's join rate is refused with a wait, and every refusal
    once the wait is over is a strike that doubles the next wait (1, 2, 4, 8 s, capped); a join while
    barred is told what is left and adds no strike; a quiet spell of max_backoff_s forgives; another
    identity at the same address is never barred."""
    limits, now = book(identity_join_burst=2.0, identity_join_rate_per_s=1.0, backoff_s=1.0, max_backoff_s=8.0)
    who = ("ward", "mal")
    waits: list[float] = []
    while len(waits) < 5:
        wait = limits.join(who, "a")
        if wait is None:
            continue  # admitted: rejoin at once, as a loop that ignores 429 would
        assert limits.join(who, "a") == pytest.approx(wait)  # barred: told the same, no new strike
        waits.append(wait)
        now[0] += wait
    assert waits == [1.0, 2.0, 4.0, 8.0, 8.0]
    assert limits.join(("ward", "ann"), "a") is None
    # the address's budget: 60 joins at once from 60 identities, then none; no identity is barred for it
    assert sum(limits.join(("ward", f"n{i}"), "10.0.0.9") is None for i in range(100)) == 60
    assert limits._barred(("ward", "n99"), now[0]) == 0.0
    now[0] += 100.0
    assert limits.join(who, "a") is None and limits.join(who, "a") is None
    assert limits.join(who, "a") == 1.0  # strikes forgotten: the first wait again


def test_the_default_connection_cap_follows_the_file_limit() -> None:
    """With a file limit of 256 the server keeps at most 192 connections (three quarters), leaving files
    for /health, the listening socket and the rest."""
    code = ("import resource; resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256)); "
            "from net.limits import Limits; print(Limits().max_connections)")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "192"


def test_limits_out_of_range_are_refused() -> None:
    """Non-positive rates, a back-off above its cap, or a per-address cap above the total are refused."""
    for bad in ({"join_rate_per_s": 0.0}, {"backoff_s": 10.0, "max_backoff_s": 5.0},
                {"max_connections_per_address": 100, "max_connections": 50}):  # fmt: skip
        with pytest.raises(ValueError, match="limits"):
            Limits(**bad)  # type: ignore[arg-type]
