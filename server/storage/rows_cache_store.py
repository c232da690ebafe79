"""Persistence of sealed attendance rows per session (opaque bytes; the cache is a derivation).

The store sees only ciphertext, as the ledger store does; what the bytes mean and when they
may be used is `server.attendance.cache`'s business. Writes never move an entry back: an
entry made at an older head than the stored one is dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from server.storage.ledger_store import BATCH_STREAMS
from server.storage.schema import attendance_rows


@dataclass(frozen=True)
class SealedRows:
    """One session's rows, sealed, with the stream position they were projected at."""

    session_id: str
    head_seq: int
    key_id: str
    nonce: bytes
    ciphertext: bytes


class SqlRowCacheStore:
    """The `attendance_rows` table on SQLAlchemy Core (SQLite and PostgreSQL)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def get_many(self, session_ids: Sequence[str]) -> dict[str, SealedRows]:
        """The stored entries of those of `session_ids` that have one."""
        unique = list(dict.fromkeys(session_ids))
        found: dict[str, SealedRows] = {}
        async with self._engine.connect() as conn:
            for i in range(0, len(unique), BATCH_STREAMS):
                part = unique[i : i + BATCH_STREAMS]
                query = select(attendance_rows).where(attendance_rows.c.session_id.in_(part))
                for r in await conn.execute(query):
                    found[r.session_id] = SealedRows(r.session_id, int(r.head_seq), r.key_id,
                                                     bytes(r.nonce), bytes(r.ciphertext))
        return found

    async def put_many(self, entries: Sequence[SealedRows]) -> None:
        """Insert or replace entries, in one transaction; an older head never replaces a
        newer one (two exports racing on a growing session)."""
        if not entries:
            return
        insert_ = (postgresql.insert if self._engine.dialect.name == "postgresql"
                   else sqlite.insert)
        stmt = insert_(attendance_rows)
        upsert = stmt.on_conflict_do_update(
            index_elements=[attendance_rows.c.session_id],
            set_={c: stmt.excluded[c] for c in ("head_seq", "key_id", "nonce", "ciphertext")},
            where=attendance_rows.c.head_seq <= stmt.excluded.head_seq,
        )
        async with self._engine.begin() as conn:
            await conn.execute(upsert, [
                {"session_id": e.session_id, "head_seq": e.head_seq, "key_id": e.key_id,
                 "nonce": e.nonce, "ciphertext": e.ciphertext}
                for e in entries
            ])

    async def clear(self) -> int:
        """Drop every entry (the next export recomputes them); returns how many."""
        async with self._engine.begin() as conn:
            return int((await conn.execute(delete(attendance_rows))).rowcount or 0)
