"""Shared fixtures: one Database fixture parametrised over SQLite and a real PostgreSQL.

Import the fixtures into a test module with `from .db_fixtures import *` (pytest finds
fixtures by name in the module; a star import keeps linters from flagging each parameter). Each
PostgreSQL test gets a fresh schema of its own, selected through asyncpg's search_path and
dropped afterwards, so tests never see each other's rows. PostgreSQL being unreachable
skips those tests on a workstation but fails them under CI=true: a green CI run must mean the
contract held on both backends.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from server.crypto.keyring import KeyRing
from server.storage.database import Database, open_database
from tests.ci import unavailable

__all__ = ["database", "db_target", "keyring", "sqlite_database"]

PG_URL = os.environ.get("CIRCLE_TEST_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")


@dataclass(frozen=True)
class DbTarget:
    """Where a test's database lives: enough to open it again (durability tests)."""

    backend: str
    url: str
    connect_args: dict[str, Any] = field(default_factory=dict)

    async def open(self) -> Database:
        """A new Database (new engine, new connections) on the same storage."""
        return await open_database(self.url, connect_args=self.connect_args)


def postgres_unavailable(reason: str) -> NoReturn:
    """Skip on a workstation, fail under CI: green CI means PostgreSQL was tested."""
    unavailable(f"PostgreSQL unavailable ({reason}); set CIRCLE_TEST_PG_URL")


@contextlib.asynccontextmanager
async def _pg_schema() -> AsyncIterator[DbTarget]:
    schema = f"circle_test_{secrets.token_hex(6)}"
    admin = create_async_engine(PG_URL, isolation_level="AUTOCOMMIT", connect_args={"timeout": 5})
    try:
        async with admin.connect() as conn:
            await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as exc:  # any failure to reach the server means "no PostgreSQL here"
        await admin.dispose()
        postgres_unavailable(f"{PG_URL}: {type(exc).__name__}: {exc}")
    try:
        yield DbTarget("postgres", PG_URL, {"server_settings": {"search_path": schema}})
    finally:
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        await admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def db_target(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[DbTarget]:
    """A fresh, empty database location on each backend."""
    if request.param == "sqlite":
        yield DbTarget("sqlite", f"sqlite+aiosqlite:///{tmp_path / 'data' / 'circle.db'}")
        return
    async with _pg_schema() as target:
        yield target


@pytest.fixture
async def database(db_target: DbTarget) -> AsyncIterator[Database]:
    """An open, migrated Database on `db_target`."""
    db = await db_target.open()
    try:
        yield db
    finally:
        await db.close()


@pytest.fixture
async def sqlite_database(tmp_path: Path) -> AsyncIterator[Database]:
    """An open, migrated SQLite Database (tamper tests edit its file directly)."""
    db = await open_database(f"sqlite+aiosqlite:///{tmp_path / 'data' / 'circle.db'}")
    try:
        yield db
    finally:
        await db.close()


@pytest.fixture
def keyring(tmp_path: Path) -> KeyRing:
    """A fresh key ring in the test's directory."""
    return KeyRing.load_or_create(tmp_path / "keys" / "keyring.json")
