"""Tampering with the SQLite file directly is caught by `verify` and refused by `load`.

Each case edits rows the way someone with write access to the database (but not the key
ring) could, then checks that the report names the stream and seq of the first bad record.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from sqlalchemy import ColumnElement, and_, delete, select, update

from server.crypto.keyring import KeyRing
from server.ledger import Ledger, LedgerCorrupt
from server.storage.database import Database
from server.storage.schema import ledger_heads, ledger_records

from .db_fixtures import *  # noqa: F403  (fixtures, found by pytest by name)

Tamper = Callable[[Database], Awaitable[None]]
A_EVENTS = [{"type": "event", "n": n} for n in range(1, 6)]  # s_a holds seq 1..5


def _row(stream: str, seq: int) -> ColumnElement[bool]:
    return and_(ledger_records.c.stream == stream, ledger_records.c.seq == seq)


async def _flip_ciphertext_byte(db: Database) -> None:
    async with db.engine.begin() as conn:
        blob = (
            await conn.execute(select(ledger_records.c.ciphertext).where(_row("s_a", 3)))
        ).scalar_one()
        flipped = bytes([blob[0] ^ 0x01]) + bytes(blob[1:])
        await conn.execute(update(ledger_records).where(_row("s_a", 3)).values(ciphertext=flipped))


async def _delete_middle(db: Database) -> None:
    async with db.engine.begin() as conn:
        await conn.execute(delete(ledger_records).where(_row("s_a", 3)))


async def _delete_last(db: Database) -> None:
    async with db.engine.begin() as conn:
        await conn.execute(delete(ledger_records).where(_row("s_a", 5)))


async def _delete_first(db: Database) -> None:
    async with db.engine.begin() as conn:
        await conn.execute(delete(ledger_records).where(_row("s_a", 1)))


async def _copy_from_other_stream(db: Database) -> None:
    """Overwrite s_a seq 4 with s_b seq 2, a record valid in its own place."""
    async with db.engine.begin() as conn:
        src = (await conn.execute(select(ledger_records).where(_row("s_b", 2)))).one()
        await conn.execute(
            update(ledger_records)
            .where(_row("s_a", 4))
            .values(key_id=src.key_id, nonce=src.nonce, ciphertext=src.ciphertext, mac=src.mac)
        )


async def _copy_to_other_seq(db: Database) -> None:
    """Overwrite s_a seq 4 with s_a seq 2: same stream, wrong place."""
    async with db.engine.begin() as conn:
        src = (await conn.execute(select(ledger_records).where(_row("s_a", 2)))).one()
        await conn.execute(
            update(ledger_records)
            .where(_row("s_a", 4))
            .values(key_id=src.key_id, nonce=src.nonce, ciphertext=src.ciphertext, mac=src.mac)
        )


async def _relabel_key_id(db: Database) -> None:
    """Claim seq 2 was sealed with the other (existing) data key."""
    async with db.engine.begin() as conn:
        await conn.execute(update(ledger_records).where(_row("s_a", 2)).values(key_id="k2"))


async def _unknown_key_id(db: Database) -> None:
    async with db.engine.begin() as conn:
        await conn.execute(update(ledger_records).where(_row("s_a", 2)).values(key_id="k99"))


async def _edit_mac(db: Database) -> None:
    async with db.engine.begin() as conn:
        await conn.execute(update(ledger_records).where(_row("s_a", 2)).values(mac=b"\0" * 32))


async def _forge_head(db: Database) -> None:
    async with db.engine.begin() as conn:
        await conn.execute(
            update(ledger_heads).where(ledger_heads.c.stream == "s_a").values(signature=b"\0" * 64)
        )


async def _delete_head(db: Database) -> None:
    async with db.engine.begin() as conn:
        await conn.execute(delete(ledger_heads).where(ledger_heads.c.stream == "s_a"))


CASES: list[tuple[Tamper, int | None, str]] = [
    (_flip_ciphertext_byte, 3, "does not decrypt"),
    (_delete_middle, 3, "record missing"),
    (_delete_last, 5, "truncated"),
    (_delete_first, 2, "chain MAC mismatch"),
    (_copy_from_other_stream, 4, "does not decrypt"),
    (_copy_to_other_seq, 4, "does not decrypt"),
    (_relabel_key_id, 2, "does not decrypt"),
    (_unknown_key_id, 2, "unknown data key"),
    (_edit_mac, 2, "chain MAC mismatch"),
    (_forge_head, 5, "head signature"),
    (_delete_head, 1, "without a signed head"),
]


@pytest.mark.parametrize(
    ("tamper", "bad_seq", "reason"), CASES, ids=[c[0].__name__.strip("_") for c in CASES]
)
async def test_tampering_is_named(
    sqlite_database: Database,
    keyring: KeyRing,
    tamper: Tamper,
    bad_seq: int | None,
    reason: str,
) -> None:
    ledger = Ledger(sqlite_database.ledger, keyring)
    await ledger.append("s_a", 1, A_EVENTS[:2])
    keyring.rotate_data_key()  # so s_a spans two data keys and "k2" exists
    await ledger.append("s_a", 3, A_EVENTS[2:])
    await ledger.append("s_b", 1, [{"type": "other", "n": n} for n in range(1, 4)])
    assert (await ledger.verify()).ok

    await tamper(sqlite_database)

    fresh = Ledger(sqlite_database.ledger, keyring)
    report = await fresh.verify()
    assert not report.ok
    assert report.first_bad is not None
    assert (report.first_bad.stream, report.first_bad.seq) == ("s_a", bad_seq)
    assert reason in report.first_bad.reason
    assert [p.stream for p in report.problems] == ["s_a"]  # s_b is untouched
    assert report.streams_checked == 2
    with pytest.raises(LedgerCorrupt) as raised:
        await fresh.load("s_a")
    assert (raised.value.stream, raised.value.seq) == ("s_a", bad_seq)
    assert "s_a" in str(raised.value)
    assert await fresh.load("s_b") == [{"type": "other", "n": n} for n in range(1, 4)]
