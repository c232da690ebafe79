"""Brings a database to the newest schema version, once, at startup.

All pending migrations run in one transaction together with their `schema_migrations` rows
(both backends have transactional DDL), so a crash leaves the database at its old version.
On PostgreSQL an advisory lock makes nodes that start together take turns instead of racing
on CREATE TABLE.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import insert, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.schema import CreateTable

from server.storage.schema import MIGRATIONS, schema_migrations

_PG_MIGRATION_LOCK = 0x436972636C65  # "Circle"


class SchemaTooNew(RuntimeError):
    """The database was migrated by a newer Circle; running an older one could corrupt it."""


async def _applied(conn: AsyncConnection) -> set[int]:
    await conn.execute(CreateTable(schema_migrations, if_not_exists=True))
    rows = await conn.execute(select(schema_migrations.c.version))
    return {int(v) for v in rows.scalars()}


async def migrate(engine: AsyncEngine) -> int:
    """Apply every pending migration; returns the schema version now in place."""
    known = {m.version for m in MIGRATIONS}
    newest = max(known)
    async with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            await conn.execute(text(f"SELECT pg_advisory_xact_lock({_PG_MIGRATION_LOCK})"))
        applied = await _applied(conn)
        unknown = applied - known
        if unknown:
            raise SchemaTooNew(
                f"database has schema versions {sorted(unknown)} this Circle does not know "
                f"(it knows up to {newest}); upgrade Circle"
            )
        for migration in MIGRATIONS:
            if migration.version in applied:
                continue
            for statement in migration.statements:
                await conn.execute(statement)
            await conn.execute(
                insert(schema_migrations).values(
                    version=migration.version,
                    description=migration.description,
                    applied_at=datetime.now(UTC),
                )
            )
    return newest
