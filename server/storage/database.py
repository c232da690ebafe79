"""Opens the database named by a URL (SQLite or PostgreSQL) and brings its schema up to date.

Both backends go through the same SQLAlchemy Core code; the only backend-specific code is
here: SQLite is put in WAL mode with synchronous=FULL (a returned append survives power
loss), a busy timeout (readers and the writer of other processes wait instead of failing),
and explicit BEGINs (the sqlite3 module would otherwise run DDL and reads outside the
transaction, breaking atomic migrations).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from server.storage.api_key_store import SqlApiKeyStore
from server.storage.ledger_store import SqlLedgerStore
from server.storage.migrate import migrate
from server.storage.rows_cache_store import SqlRowCacheStore
from server.storage.session_index import SessionIndex

SQLITE_BUSY_TIMEOUT_MS = 10_000
_SUPPORTED = ("sqlite+aiosqlite", "postgresql+asyncpg")


class Database:
    """An open database: its engine and the stores built on it."""

    def __init__(self, engine: AsyncEngine, schema_version: int) -> None:
        self.engine = engine
        self.schema_version = schema_version
        self.ledger = SqlLedgerStore(engine)
        self.api_keys = SqlApiKeyStore(engine)
        self.sessions = SessionIndex(engine)
        self.attendance_rows = SqlRowCacheStore(engine)

    async def close(self) -> None:
        """Close every pooled connection."""
        await self.engine.dispose()

    async def __aenter__(self) -> Database:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


def _configure_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves, below
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN")


async def open_database(url: str, *, connect_args: Mapping[str, Any] | None = None) -> Database:
    """Connect to `url` and apply pending migrations.

    `url` is `sqlite+aiosqlite:///path/to/file.db` (the directory is created) or
    `postgresql+asyncpg://user@host/db`. `connect_args` go to the driver, e.g.
    `{"server_settings": {"search_path": "tenant_a"}}` for asyncpg.
    """
    parsed = make_url(url)
    if parsed.drivername not in _SUPPORTED:
        raise ValueError(
            f"unsupported database URL scheme {parsed.drivername!r}; use one of "
            f"{', '.join(_SUPPORTED)}"
        )
    if parsed.drivername.startswith("sqlite"):
        if not parsed.database or parsed.database == ":memory:":
            raise ValueError("SQLite needs a file path: the ledger must survive a restart")
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    sqlite = parsed.drivername.startswith("sqlite")
    # A ping before every checkout guards against PostgreSQL connections dropped by the
    # server or a proxy; a SQLite file connection cannot go stale, and the ping costs a
    # round trip through aiosqlite's thread on every ledger append.
    engine = create_async_engine(
        parsed, connect_args=dict(connect_args or {}), pool_pre_ping=not sqlite
    )
    if sqlite:
        _configure_sqlite(engine)
    try:
        version = await migrate(engine)
    except BaseException:
        await engine.dispose()
        raise
    return Database(engine, version)
