"""Circle's tables and the ordered, versioned migrations that create them.

The tables below are the current schema, used to build queries. The database gets there only
through `MIGRATIONS`: each entry is applied once, in order, and recorded in
`schema_migrations`. To change the schema, append a migration with explicit DDL (ALTER ...);
never edit an applied one. DDL elements are compiled per dialect, so one list serves SQLite
and PostgreSQL.
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
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    TypeDecorator,
)
from sqlalchemy.schema import CreateIndex, CreateTable, ExecutableDDLElement


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
        assert isinstance(value, datetime)
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

api_keys = Table(
    "api_keys",
    metadata,
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
    statements: tuple[ExecutableDDLElement, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "ledger records and heads, session index, api keys",
        (
            CreateTable(ledger_records),
            CreateTable(ledger_heads),
            CreateTable(session_index),
            CreateIndex(session_index_by_date),
            CreateTable(api_keys),
        ),
    ),
    Migration(2, "ledger fences", (CreateTable(ledger_fences),)),
)
