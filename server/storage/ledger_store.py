"""Persistence of sealed ledger records and signed stream heads (no crypto here).

The store sees only opaque bytes. It guarantees what the mapper above cannot: records and
their new head commit together, a taken (stream, seq) is refused, and a head only moves from
the position the writer last saw (compare-and-set), so two writers can never fork a chain.
In a cluster it also fences: an append carrying a fence commits only while that fence is the
stream's newest, so a node that lost a session's lease cannot write to it any more.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import Row, insert, select, union, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from server.storage.schema import ledger_fences, ledger_heads, ledger_records
from signaling.ports import FencedOut, LedgerConflict


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
        self,
        records: Sequence[StoredRecord],
        head: SignedHead,
        previous: SignedHead | None,
        fence: int | None = None,
    ) -> None:
        """Store `records` and move the head from `previous` to `head` in one transaction.

        Raises `LedgerConflict` if a seq is taken or the head is no longer `previous`, and
        `FencedOut` if `fence` is given and is not the stream's newest claimed fence (None
        skips that check: one node, no leases).
        """
        ...

    async def claim_fence(self, stream: str) -> int:
        """Raise the stream's fence by one (the first claim gets 1) and return it, committed.

        From then on appends with an older fence fail; one still in flight when the claim is
        made either commits before the claim returns or fails.
        """
        ...

    async def head(self, stream: str) -> SignedHead | None:
        """The stream's signed head, or None for a stream never written."""
        ...

    async def read_stream(self, stream: str) -> tuple[SignedHead | None, list[StoredRecord]]:
        """The head and the records up to it, in seq order."""
        ...

    async def heads_of(self, streams: Sequence[str]) -> dict[str, SignedHead]:
        """The signed heads of those of `streams` that have one (a batch of `head`)."""
        ...

    async def read_streams(
        self, streams: Sequence[str]
    ) -> dict[str, tuple[SignedHead | None, list[StoredRecord]]]:
        """`read_stream` of each of `streams` (all of them keys), in a few round trips."""
        ...

    async def streams(self) -> list[str]:
        """Every stream that has a head or a record, sorted."""
        ...


BATCH_STREAMS = 500
"""Streams per `IN (...)` list: far below SQLite's and asyncpg's bound-parameter limits."""


def _batches(streams: Sequence[str]) -> list[list[str]]:
    unique = list(dict.fromkeys(streams))
    return [unique[i : i + BATCH_STREAMS] for i in range(0, len(unique), BATCH_STREAMS)]


def _head(row: Row[Any]) -> SignedHead:
    return SignedHead(row.stream, int(row.seq), bytes(row.mac), bytes(row.signature))


async def _hold_fence(conn: AsyncConnection, stream: str, fence: int) -> None:
    """Check, first in an append's transaction, that `fence` is still the stream's newest.

    A no-op UPDATE rather than a SELECT: it locks the fence row until the append commits
    (PostgreSQL; SQLite's writer lock covers the whole file), so a concurrent claim cannot
    return while this append may still commit, and a claim that committed first makes the
    WHERE miss. Taken before the head's lock, in the same order as every fenced writer.
    """
    held = await conn.execute(
        update(ledger_fences)
        .where(ledger_fences.c.stream == stream, ledger_fences.c.fence == fence)
        .values(fence=ledger_fences.c.fence)
    )
    if held.rowcount != 1:
        raise FencedOut(
            f"stream {stream!r}: fence {fence} is not the newest (claimed again since, "
            "or never claimed)"
        )


class SqlLedgerStore:
    """`LedgerStore` on SQLAlchemy Core: one code path for SQLite and PostgreSQL."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def append(
        self,
        records: Sequence[StoredRecord],
        head: SignedHead,
        previous: SignedHead | None,
        fence: int | None = None,
    ) -> None:
        try:
            async with self._engine.begin() as conn:
                if fence is not None:
                    await _hold_fence(conn, head.stream, fence)
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

    async def claim_fence(self, stream: str) -> int:
        # One upsert, so two claimants can never both read n and both write n + 1. On
        # PostgreSQL it waits for the row lock of a fenced append in flight (`_hold_fence`),
        # so that append has committed, or failed, before the new fence is returned.
        insert_ = postgresql.insert if self._engine.dialect.name == "postgresql" else sqlite.insert
        claim = (
            insert_(ledger_fences)
            .values(stream=stream, fence=1)
            .on_conflict_do_update(
                index_elements=[ledger_fences.c.stream],
                set_={"fence": ledger_fences.c.fence + 1},
            )
            .returning(ledger_fences.c.fence)
        )
        async with self._engine.begin() as conn:
            return int((await conn.execute(claim)).scalar_one())

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

    async def heads_of(self, streams: Sequence[str]) -> dict[str, SignedHead]:
        found: dict[str, SignedHead] = {}
        async with self._engine.connect() as conn:
            for part in _batches(streams):
                query = select(ledger_heads).where(ledger_heads.c.stream.in_(part))
                for row in await conn.execute(query):
                    found[row.stream] = _head(row)
        return found

    async def read_streams(
        self, streams: Sequence[str]
    ) -> dict[str, tuple[SignedHead | None, list[StoredRecord]]]:
        # As in read_stream: heads first, then only the records up to each head. One query
        # per batch of streams instead of two per stream: an export reads hundreds at once.
        heads = await self.heads_of(streams)
        found: dict[str, tuple[SignedHead | None, list[StoredRecord]]] = {
            s: (heads.get(s), []) for s in streams
        }
        async with self._engine.connect() as conn:
            for part in _batches(streams):
                query = (
                    select(ledger_records)
                    .where(ledger_records.c.stream.in_(part))
                    .order_by(ledger_records.c.stream, ledger_records.c.seq)
                )
                for r in await conn.execute(query):
                    head = heads.get(r.stream)
                    if head is not None and r.seq > head.seq:
                        continue  # appended after the head was read
                    found[r.stream][1].append(
                        StoredRecord(r.stream, int(r.seq), r.key_id, bytes(r.nonce),
                                     bytes(r.ciphertext), bytes(r.mac))
                    )
        return found

    async def streams(self) -> list[str]:
        names = union(select(ledger_heads.c.stream), select(ledger_records.c.stream))
        async with self._engine.connect() as conn:
            rows = await conn.execute(select(names.subquery().c.stream).order_by("stream"))
            return [str(s) for s in rows.scalars()]
