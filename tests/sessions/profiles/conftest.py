"""Fixtures for the profile tests: a real PostgreSQL server, and stores on both backends.

``postgres_server`` starts one throwaway server per test process (per xdist worker), on its own port
and data folder (``sessions.profiles.pgtemp``); each test that asks for ``pg_url`` or the
``postgresql`` side of ``store_target`` gets a database of its own. PostgreSQL not installed is a
failure with a clear message, not a skip.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sessions.profiles.pgtemp import TempPostgres
from sessions.profiles.store import PG_SCHEMA, ProfileStore, is_postgres_url, open_store

#: Run SQL straight against a store's database, bypassing the store (``?`` placeholders); returns rows.
RawSQL = Callable[..., list[tuple[Any, ...]]]


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[TempPostgres]:
    """A PostgreSQL server for this test process (initdb + pg_ctl as the postgres user)."""
    with TempPostgres() as server:
        yield server


@pytest.fixture
def pg_url(postgres_server: TempPostgres) -> str:
    """URL of a fresh, empty database on the test PostgreSQL server."""
    return postgres_server.create_database()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_target(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """What ``open_store`` takes: a new SQLite file path, or a new PostgreSQL database URL."""
    if request.param == "sqlite":
        return str(tmp_path / "profiles.sqlite")
    server: TempPostgres = request.getfixturevalue("postgres_server")
    return server.create_database()


@pytest.fixture
def store(store_target: str) -> Iterator[ProfileStore]:
    """An open, empty profile store on each backend."""
    with open_store(store_target) as opened:
        yield opened


@pytest.fixture
def raw_sql(store_target: str) -> Iterator[RawSQL]:
    """Change or read the database directly, as someone tampering with it would."""
    if is_postgres_url(store_target):
        import psycopg

        conn = psycopg.connect(store_target, autocommit=True)
        conn.execute(f"SET search_path TO {PG_SCHEMA}")

        def run_pg(sql: str, *params: Any) -> list[tuple[Any, ...]]:
            cur = conn.execute(sql.replace("?", "%s"), params)
            return cur.fetchall() if cur.description else []

        yield run_pg
        conn.close()
    else:
        lite = sqlite3.connect(store_target, isolation_level=None)

        def run_lite(sql: str, *params: Any) -> list[tuple[Any, ...]]:
            return lite.execute(sql, params).fetchall()

        yield run_lite
        lite.close()
