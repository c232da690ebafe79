"""Persistence of API key rows (only hashes of secrets ever reach the database)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from server.storage.schema import api_keys


@dataclass(frozen=True)
class StoredApiKey:
    """One api_keys row; `scopes` decide what the key may do, `role` is only a label."""

    id: str
    name: str
    role: str
    secret_hash: bytes
    created_at: datetime
    revoked_at: datetime | None
    scopes: frozenset[str]


def _row(r: Row[Any]) -> StoredApiKey:
    return StoredApiKey(r.id, r.name, r.role, bytes(r.secret_hash), r.created_at, r.revoked_at,
                        frozenset(r.scopes.split()))


class SqlApiKeyStore:
    """API key rows on SQLAlchemy Core."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def insert(self, key: StoredApiKey) -> None:
        """Store a new key row."""
        async with self._engine.begin() as conn:
            await conn.execute(
                insert(api_keys).values(
                    id=key.id,
                    name=key.name,
                    role=key.role,
                    secret_hash=key.secret_hash,
                    created_at=key.created_at,
                    revoked_at=key.revoked_at,
                    scopes=" ".join(sorted(key.scopes)),
                )
            )

    async def get(self, key_id: str) -> StoredApiKey | None:
        """The row for `key_id`, revoked or not."""
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(api_keys).where(api_keys.c.id == key_id))).first()
        return None if row is None else _row(row)

    async def revoke(self, key_id: str, at: datetime) -> bool:
        """Mark a live key revoked at `at`; False if it is unknown or already revoked."""
        async with self._engine.begin() as conn:
            done = await conn.execute(
                update(api_keys)
                .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=at)
            )
        return done.rowcount == 1

    async def all(self) -> list[StoredApiKey]:
        """Every key row, oldest first."""
        async with self._engine.connect() as conn:
            rows = await conn.execute(select(api_keys).order_by(api_keys.c.created_at))
            return [_row(r) for r in rows]
