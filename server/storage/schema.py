"""Circle's tables and the ordered, versioned migrations that create them.

The tables below are the current schema, used to build queries. The database gets there only
through `MIGRATIONS`: each entry is applied once, in order, and recorded in
`schema_migrations`. To change the schema, append a migration with explicit DDL (ALTER ...);
never edit an applied one. DDL elements are compiled per dialect, so one list serves SQLite
and PostgreSQL. A migration that creates a table later altered creates a frozen copy of the
table as it was then (`API_KEYS_V1`), so a new database passes through the same versions
as an old one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Date,
    DateTime,
    Dialect,
    Executable,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    TypeDecorator,
    text,
)
from sqlalchemy.schema import CreateIndex, CreateTable


class UtcDateTime(TypeDecorator[datetime]):
    """An aware UTC datetime on both backends (SQLite would otherwise hand back naive ones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: Circle stores only timezone-aware times")
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime from the driver, got {type(value).__name__}")
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


metadata = MetaData()

schema_migrations = Table(
    "schema_migrations",
    metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("description", Text, nullable=False),
    Column("applied_at", UtcDateTime, nullable=False),
)

ledger_records = Table(
    "ledger_records",
    metadata,
    Column("stream", String(128), nullable=False),
    Column("seq", BigInteger, nullable=False, autoincrement=False),
    Column("key_id", String(32), nullable=False),
    Column("nonce", LargeBinary, nullable=False),
    Column("ciphertext", LargeBinary, nullable=False),
    Column("mac", LargeBinary, nullable=False),
    PrimaryKeyConstraint("stream", "seq", name="ledger_records_pk"),
)

ledger_heads = Table(
    "ledger_heads",
    metadata,
    Column("stream", String(128), primary_key=True),
    Column("seq", BigInteger, nullable=False),
    Column("mac", LargeBinary, nullable=False),
    Column("signature", LargeBinary, nullable=False),
)

# The newest fence claimed per stream; a fenced append commits only while it carries this one.
# Its own table, not a column of ledger_heads: a session is claimed before its first record,
# and a claim locks only this row, never the head an unfenced writer may be moving.
ledger_fences = Table(
    "ledger_fences",
    metadata,
    Column("stream", String(128), primary_key=True),
    Column("fence", BigInteger, nullable=False),
)

session_index = Table(
    "session_index",
    metadata,
    Column("session_id", String(128), primary_key=True),
    Column("service_date", Date, nullable=False),
    Column("starts_at", UtcDateTime, nullable=False),
)
session_index_by_date = Index("session_index_by_date", session_index.c.service_date)

# Derived and disposable (a cache, not a record): the attendance rows of an ended session,
# sealed like a ledger record (server/attendance/cache.py) and valid only while the session's
# stream head is still `head_seq`. Emptying this table costs one slower export, nothing else.
attendance_rows = Table(
    "attendance_rows",
    metadata,
    Column("session_id", String(128), primary_key=True),
    Column("head_seq", BigInteger, nullable=False),
    Column("key_id", String(32), nullable=False),
    Column("nonce", LargeBinary, nullable=False),
    Column("ciphertext", LargeBinary, nullable=False),
)

# `scopes` (migration 3) decides what a key may do: its scope names, space-separated. `role`
# is only a readable label since then (staff, admin or custom), written from the scopes when
# the key is created; it stays because SQLite before 3.35 cannot drop a column.
api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("name", Text, nullable=False),
    Column("role", String(16), nullable=False),
    Column("secret_hash", LargeBinary, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("revoked_at", UtcDateTime, nullable=True),
    Column("scopes", Text, nullable=False, server_default=""),
)

# api_keys as migration 1 created it, before `scopes`.
API_KEYS_V1 = Table(
    "api_keys",
    MetaData(),
    Column("id", String(32), primary_key=True),
    Column("name", Text, nullable=False),
    Column("role", String(16), nullable=False),
    Column("secret_hash", LargeBinary, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("revoked_at", UtcDateTime, nullable=True),
)


@dataclass(frozen=True)
class Migration:
    """One schema step: applied once, in version order, inside one transaction."""

    version: int
    description: str
    statements: tuple[Executable, ...]
    """DDL, and the plain SQL that moves existing rows into a new shape."""


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "ledger records and heads, session index, api keys",
        (
            CreateTable(ledger_records),
            CreateTable(ledger_heads),
            CreateTable(session_index),
            CreateIndex(session_index_by_date),
            CreateTable(API_KEYS_V1),
        ),
    ),
    Migration(2, "ledger fences", (CreateTable(ledger_fences),)),
    Migration(
        3,
        "api key scopes",
        (
            # A row without scopes may do nothing: a key is never granted more than it was.
            text("ALTER TABLE api_keys ADD COLUMN scopes TEXT NOT NULL DEFAULT ''"),
            # The scopes each role stood for (server.apikeys.ROLE_SCOPES), frozen here: a
            # later change to what a role means must not rewrite this step.
            text(
                "UPDATE api_keys SET scopes = CASE role"
                " WHEN 'staff' THEN 'attendance schedule therapist-invites'"
                " WHEN 'admin' THEN 'admin' ELSE '' END"
            ),
        ),
    ),
    Migration(4, "sealed attendance rows of ended sessions (a cache)",
              (CreateTable(attendance_rows),)),
)
