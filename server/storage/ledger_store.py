"""Persistence of sealed ledger records and signed stream heads (no crypto here).

The store sees only opaque bytes. It guarantees what the mapper above cannot: records and
their new head commit together, a taken (stream, seq) is refused, and a head only moves from
the position the writer last saw (compare-and-set), so two writers can never fork a chain.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import Row, insert, select, union, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from server.storage.schema import ledger_heads, ledger_records
from signaling.ports import LedgerConflict


@dataclass(frozen=True)
class StoredRecord:
    """One sealed record as it sits in the database."""

    stream: str
    seq: int
    key_id: str
    nonce: bytes
    ciphertext: bytes
    mac: bytes


@dataclass(frozen=True)
class SignedHead:
    """The last (seq, chain mac) of a stream, signed by the ledger key."""

    stream: str
    seq: int
    mac: bytes
    signature: bytes


class LedgerStore(Protocol):
    """What the ledger mapper needs from a database."""

    async def append(
        self, records: Sequence[StoredRecord], head: SignedHead, previous: SignedHead | None
    ) -> None:
        """Store `records` and move the head from `previous` to `head` in one transaction.

        Raises `LedgerConflict` if a seq is taken or the head is no longer `previous`.
        """
        ...

    async def head(self, stream: str) -> SignedHead | None:
        """The stream's signed head, or None for a stream never written."""
        ...

    async def read_stream(self, stream: str) -> tuple[SignedHead | None, list[StoredRecord]]:
        """The head and the records up to it, in seq order."""
        ...

    async def streams(self) -> list[str]:
        """Every stream that has a head or a record, sorted."""
        ...


def _head(row: Row[Any]) -> SignedHead:
    return SignedHead(row.stream, int(row.seq), bytes(row.mac), bytes(row.signature))


class SqlLedgerStore:
    """`LedgerStore` on SQLAlchemy Core: one code path for SQLite and PostgreSQL."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def append(
        self, records: Sequence[StoredRecord], head: SignedHead, previous: SignedHead | None
    ) -> None:
        try:
            async with self._engine.begin() as conn:
                if previous is None:
                    await conn.execute(
                        insert(ledger_heads).values(
                            stream=head.stream, seq=head.seq, mac=head.mac, signature=head.signature
                        )
                    )
                else:
                    moved = await conn.execute(
                        update(ledger_heads)
                        .where(
                            ledger_heads.c.stream == previous.stream,
                            ledger_heads.c.seq == previous.seq,
                            ledger_heads.c.mac == previous.mac,
                        )
                        .values(seq=head.seq, mac=head.mac, signature=head.signature)
                    )
                    if moved.rowcount != 1:
                        raise LedgerConflict(
                            f"stream {head.stream!r}: head moved past seq {previous.seq}"
                        )
                await conn.execute(
                    insert(ledger_records),
                    [
                        {
                            "stream": r.stream,
                            "seq": r.seq,
                            "key_id": r.key_id,
                            "nonce": r.nonce,
                            "ciphertext": r.ciphertext,
                            "mac": r.mac,
                        }
                        for r in records
                    ],
                )
        except IntegrityError as exc:
            raise LedgerConflict(
                f"stream {head.stream!r}: seq {records[0].seq}..{records[-1].seq} "
                "overlaps records already stored"
            ) from exc

    async def head(self, stream: str) -> SignedHead | None:
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(select(ledger_heads).where(ledger_heads.c.stream == stream))
            ).first()
        return None if row is None else _head(row)

    async def read_stream(self, stream: str) -> tuple[SignedHead | None, list[StoredRecord]]:
        # The head is read first: records commit with their head, so every record up to it
        # is already there, and later appends (beyond it) are left out, giving a consistent
        # view without a snapshot-isolation transaction (which SQLite and asyncpg spell
        # differently).
        head = await self.head(stream)
        query = select(ledger_records).where(ledger_records.c.stream == stream)
        if head is not None:
            query = query.where(ledger_records.c.seq <= head.seq)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query.order_by(ledger_records.c.seq))).all()
        return head, [
            StoredRecord(
                r.stream, int(r.seq), r.key_id, bytes(r.nonce), bytes(r.ciphertext), bytes(r.mac)
            )
            for r in rows
        ]

    async def streams(self) -> list[str]:
        names = union(select(ledger_heads.c.stream), select(ledger_records.c.stream))
        async with self._engine.connect() as conn:
            rows = await conn.execute(select(names.subquery().c.stream).order_by("stream"))
            return [str(s) for s in rows.scalars()]
