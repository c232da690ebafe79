"""The storage contract, written once and run on SQLite and on a real PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import inspect, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from server.apikeys import ApiKeys
from server.crypto.keyring import KeyRing
from server.ledger import AUDIT_STREAM, Ledger
from server.storage import migrate
from server.storage.database import Database
from server.storage.ledger_store import SignedHead, StoredRecord
from server.storage.schema import MIGRATIONS, ledger_records, schema_migrations
from signaling.ports import FencedOut, LedgerConflict

from .db_fixtures import *  # noqa: F403  (fixtures, found by pytest by name)
from .db_fixtures import DbTarget


def _events(n: int, start: int = 1) -> list[dict[str, object]]:
    return [{"type": "joined", "n": i, "name": "Zoë 🙂"} for i in range(start, start + n)]


# -- schema ------------------------------------------------------------------------------


async def test_migrations_are_recorded_and_idempotent(
    database: Database, db_target: DbTarget
) -> None:
    again = await db_target.open()
    await again.close()
    async with database.engine.connect() as conn:
        versions = (await conn.execute(select(schema_migrations.c.version))).scalars().all()
    assert sorted(versions) == [m.version for m in MIGRATIONS]
    assert database.schema_version == MIGRATIONS[-1].version


async def _tables(conn: AsyncConnection) -> set[str]:
    return set(await conn.run_sync(lambda sync: inspect(sync).get_table_names()))


async def test_a_version_1_database_upgrades_in_place_to_fences(
    db_target: DbTarget, keyring: KeyRing, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as old_circle:  # what the release before fences would do
        old_circle.setattr(migrate, "MIGRATIONS", MIGRATIONS[:1])
        async with await db_target.open() as db:
            assert db.schema_version == 1
            await Ledger(db.ledger, keyring).append("s_a", 1, _events(2))
            async with db.engine.connect() as conn:
                assert "ledger_fences" not in await _tables(conn)
    async with await db_target.open() as db:
        assert db.schema_version == MIGRATIONS[-1].version
        async with db.engine.connect() as conn:
            assert "ledger_fences" in await _tables(conn)
            versions = (await conn.execute(select(schema_migrations.c.version))).scalars()
            assert sorted(versions) == [m.version for m in MIGRATIONS]
        ledger = Ledger(db.ledger, keyring)
        fence = await ledger.claim_fence("s_a")
        assert fence == 1
        await ledger.append("s_a", 3, _events(1, start=3), fence=fence)
        assert await ledger.load("s_a") == _events(3)


# -- ledger through the mapper -----------------------------------------------------------


async def test_append_then_load_round_trips(database: Database, keyring: KeyRing) -> None:
    ledger = Ledger(database.ledger, keyring)
    await ledger.append("s_a", 1, _events(3))
    await ledger.append("s_a", 4, _events(2, start=4))
    await ledger.append("s_b", 1, _events(1))
    assert await ledger.load("s_a") == _events(5)
    assert await ledger.load("s_b") == _events(1)
    assert await ledger.load("s_unknown") == []
    assert await ledger.streams() == ["s_a", "s_b"]


async def test_records_are_not_stored_in_clear(database: Database, keyring: KeyRing) -> None:
    await Ledger(database.ledger, keyring).append("s_a", 1, [{"name": "Alice Example"}])
    async with database.engine.connect() as conn:
        blobs = (await conn.execute(select(ledger_records.c.ciphertext))).scalars().all()
    assert blobs and all(b"Alice" not in bytes(b) for b in blobs)


async def test_duplicate_seq_conflicts_and_loses_nothing(
    database: Database, keyring: KeyRing
) -> None:
    ledger = Ledger(database.ledger, keyring)
    await ledger.append("s_a", 1, _events(2))
    with pytest.raises(LedgerConflict):
        await ledger.append("s_a", 2, [{"type": "forked"}])
    # A second writer with its own cache (another node) hits the database's refusal.
    other = Ledger(database.ledger, keyring)
    await other.append("s_a", 3, _events(1, start=3))
    with pytest.raises(LedgerConflict):
        await ledger.append("s_a", 3, [{"type": "forked"}])
    await ledger.append("s_a", 4, _events(1, start=4))  # the loser re-reads the head
    assert await Ledger(database.ledger, keyring).load("s_a") == _events(4)
    assert (await ledger.verify()).ok


async def test_concurrent_writers_of_one_seq_one_wins(database: Database, keyring: KeyRing) -> None:
    writers = [Ledger(database.ledger, keyring) for _ in range(4)]
    results = await asyncio.gather(
        *(w.append("s_race", 1, [{"writer": i}]) for i, w in enumerate(writers)),
        return_exceptions=True,
    )
    assert sum(r is None for r in results) == 1
    assert all(isinstance(r, LedgerConflict) for r in results if r is not None)
    assert len(await Ledger(database.ledger, keyring).load("s_race")) == 1


async def test_store_refuses_a_stale_head_atomically(database: Database) -> None:
    store = database.ledger

    def rec(seq: int) -> StoredRecord:
        return StoredRecord("s_cas", seq, "k1", b"n" * 12, b"c", bytes([seq]) * 32)

    first = SignedHead("s_cas", 1, rec(1).mac, b"sig1")
    await store.append([rec(1)], first, None)
    second = SignedHead("s_cas", 2, rec(2).mac, b"sig2")
    await store.append([rec(2)], second, first)
    with pytest.raises(LedgerConflict):  # head already moved past `first`
        await store.append([rec(3)], SignedHead("s_cas", 3, rec(3).mac, b"x"), first)
    with pytest.raises(LedgerConflict):  # stream already exists
        await store.append([rec(9)], SignedHead("s_cas", 9, rec(9).mac, b"x"), None)
    head, records = await store.read_stream("s_cas")
    assert head == second
    assert [r.seq for r in records] == [1, 2]


async def test_claim_fence_counts_up_per_stream(database: Database, keyring: KeyRing) -> None:
    store = database.ledger
    assert [await store.claim_fence("s_a") for _ in range(3)] == [1, 2, 3]
    assert await store.claim_fence("s_b") == 1
    assert await Ledger(store, keyring).claim_fence("s_a") == 4
    async with database.engine.connect() as conn:  # committed: seen by any connection
        rows = await conn.execute(text("SELECT stream, fence FROM ledger_fences"))
        fences = {str(stream): int(fence) for stream, fence in rows}
    assert fences == {"s_a": 4, "s_b": 1}
    with pytest.raises(ValueError):
        await Ledger(store, keyring).claim_fence(AUDIT_STREAM)


async def test_only_the_newest_fence_appends(database: Database, keyring: KeyRing) -> None:
    old_owner, new_owner = Ledger(database.ledger, keyring), Ledger(database.ledger, keyring)
    first = await old_owner.claim_fence("s_a")
    await old_owner.append("s_a", 1, _events(2), fence=first)
    second = await new_owner.claim_fence("s_a")
    assert second == first + 1
    head = await database.ledger.head("s_a")
    with pytest.raises(FencedOut):
        await old_owner.append("s_a", 3, [{"type": "stale"}], fence=first)
    assert await database.ledger.head("s_a") == head
    assert await Ledger(database.ledger, keyring).load("s_a") == _events(2)
    await new_owner.append("s_a", 3, _events(1, start=3), fence=second)
    with pytest.raises(FencedOut):  # the old owner re-reads the head: still fenced out
        await old_owner.append("s_a", 4, [{"type": "stale"}], fence=first)
    await old_owner.append("s_a", 4, _events(1, start=4))  # no fence: one node, no leases
    assert await Ledger(database.ledger, keyring).load("s_a") == _events(4)
    assert (await old_owner.verify()).ok


async def test_a_fence_never_claimed_appends_nothing(database: Database, keyring: KeyRing) -> None:
    ledger = Ledger(database.ledger, keyring)
    with pytest.raises(FencedOut):
        await ledger.append("s_new", 1, _events(1), fence=1)
    await database.ledger.claim_fence("s_other")
    with pytest.raises(FencedOut):  # fences are per stream
        await ledger.append("s_new", 1, _events(1), fence=1)
    assert await database.ledger.read_stream("s_new") == (None, [])
    assert await ledger.streams() == []


async def test_a_claim_racing_a_fenced_append_never_lets_it_land_after(
    database: Database, keyring: KeyRing
) -> None:
    owner, rival = Ledger(database.ledger, keyring), Ledger(database.ledger, keyring)

    async def claim_after(delay: float) -> int:
        await asyncio.sleep(delay)
        return await rival.claim_fence("s_race")

    # The claim starts anywhere from with the append to well after it would have committed,
    # so the rounds sweep across the window where the two overlap.
    delays = [i * 0.0001 for i in range(20)] + [0.01, 0.05]
    stored: list[dict[str, object]] = []
    outcomes: list[str] = []
    for round_, delay in enumerate(delays * 3):
        fence = await owner.claim_fence("s_race")
        record: dict[str, object] = {"round": round_}
        appended, claimed = await asyncio.gather(
            owner.append("s_race", len(stored) + 1, [record], fence=fence),
            claim_after(delay),
            return_exceptions=True,
        )
        assert claimed == fence + 1
        if appended is None:
            stored.append(record)
        else:
            assert isinstance(appended, FencedOut), appended
        outcomes.append("ok" if appended is None else "fenced")
        head = await database.ledger.head("s_race")
        assert (head.seq if head else 0) == len(stored)
        with pytest.raises(FencedOut):  # once the claim has returned, the old fence is dead
            await owner.append("s_race", len(stored) + 1, [{"late": round_}], fence=fence)
    assert await Ledger(database.ledger, keyring).load("s_race") == stored
    assert set(outcomes) == {"ok", "fenced"}, f"the race was not exercised: {outcomes}"


async def _pids_blocked_by(conn: AsyncConnection, pid: int) -> list[int]:
    rows = await conn.execute(
        text("SELECT pid FROM pg_stat_activity WHERE :pid = ANY(pg_blocking_pids(pid))"),
        {"pid": pid},
    )
    blocked = [int(p) for p in rows.scalars()]
    await conn.rollback()  # pg_stat_activity stays frozen for the rest of a transaction
    return blocked


async def _wait_blocked_by(conn: AsyncConnection, pid: int) -> int:
    deadline = time.monotonic() + 10
    while not (blocked := await _pids_blocked_by(conn, pid)):
        assert time.monotonic() < deadline, f"nothing blocked behind backend {pid}"
        await asyncio.sleep(0.01)
    return blocked[0]


# Row locks are PostgreSQL's; SQLite lets one writer at a time in anyway.
@pytest.mark.parametrize("db_target", [pytest.param("postgres", marks=pytest.mark.postgres)],
                         indirect=True)
async def test_a_claim_waits_for_the_fenced_append_in_flight(
    database: Database, db_target: DbTarget, keyring: KeyRing
) -> None:
    """On PostgreSQL: the append holds its fence row, so the claim returns after its commit."""
    ledger = Ledger(database.ledger, keyring)
    fence = await ledger.claim_fence("s_a")
    await ledger.append("s_a", 1, _events(1), fence=fence)
    engine = database.engine
    async with engine.connect() as blocker, engine.connect() as watcher:
        # Stall the next append on the head row, after it has taken the fence row.
        await blocker.execute(text("SELECT 1 FROM ledger_heads WHERE stream = 's_a' FOR UPDATE"))
        blocker_pid = int((await blocker.execute(text("SELECT pg_backend_pid()"))).scalar_one())
        append = asyncio.create_task(ledger.append("s_a", 2, _events(1, start=2), fence=fence))
        claim: asyncio.Task[int] | None = None
        try:
            append_pid = await _wait_blocked_by(watcher, blocker_pid)
            claim = asyncio.create_task(database.ledger.claim_fence("s_a"))
            await _wait_blocked_by(watcher, append_pid)
            assert not append.done() and not claim.done()
            await blocker.rollback()
            await append  # committed before the claim could take the fence row
            assert await claim == fence + 1
        finally:
            for task in (append, claim):
                if task is not None and not task.done():
                    task.cancel()
    assert await Ledger(database.ledger, keyring).load("s_a") == _events(2)
    with pytest.raises(FencedOut):
        await ledger.append("s_a", 3, _events(1, start=3), fence=fence)


async def test_rotation_keeps_old_records_readable(
    database: Database, keyring: KeyRing, tmp_path: Path
) -> None:
    ledger = Ledger(database.ledger, keyring)
    await ledger.append("s_a", 1, _events(2))
    old = keyring.current_key_id
    new = keyring.rotate_data_key()
    assert new != old
    await ledger.append("s_a", 3, _events(2, start=3))
    async with database.engine.connect() as conn:
        used = (await conn.execute(select(ledger_records.c.key_id).distinct())).scalars().all()
    assert sorted(used) == sorted([old, new])
    reopened = KeyRing.load_or_create(tmp_path / "keys" / "keyring.json")
    assert await Ledger(database.ledger, reopened).load("s_a") == _events(4)


async def test_appended_records_survive_a_fresh_database(
    db_target: DbTarget, keyring: KeyRing
) -> None:
    async with await db_target.open() as db:
        await Ledger(db.ledger, keyring).append("s_a", 1, _events(3))
        await Ledger(db.ledger, keyring).append_audit({"action": "export"})
    async with await db_target.open() as db:
        ledger = Ledger(db.ledger, keyring)
        assert await ledger.load("s_a") == _events(3)
        await ledger.append("s_a", 4, _events(1, start=4))
        assert await ledger.load("s_a") == _events(4)
        report = await ledger.verify()
    assert report.ok
    assert (report.streams_checked, report.records_checked) == (2, 5)


async def test_audit_assigns_consecutive_seqs(database: Database, keyring: KeyRing) -> None:
    ledgers = [Ledger(database.ledger, keyring) for _ in range(2)]
    seqs = await asyncio.gather(
        *(ledgers[i % 2].append_audit({"action": "export", "i": i}) for i in range(10))
    )
    assert sorted(seqs) == list(range(1, 11))
    loaded = await ledgers[0].load(AUDIT_STREAM)
    assert sorted(int(r["i"]) for r in loaded) == list(range(10))
    with pytest.raises(ValueError):
        await ledgers[0].append(AUDIT_STREAM, 11, [{"action": "sneaky"}])


async def test_verify_reports_progress(database: Database, keyring: KeyRing) -> None:
    ledger = Ledger(database.ledger, keyring)
    await ledger.append("s_a", 1, _events(2))
    await ledger.append("s_b", 1, _events(3))
    seen: list[tuple[str, int]] = []
    report = await ledger.verify(lambda stream, n: seen.append((stream, n)))
    assert report.ok and report.first_bad is None
    assert seen == [("s_a", 2), ("s_b", 5)]


async def test_streams_are_read_in_batches_as_one_by_one(
    database: Database, keyring: KeyRing, monkeypatch: pytest.MonkeyPatch
) -> None:
    from server.storage import ledger_store

    monkeypatch.setattr(ledger_store, "BATCH_STREAMS", 2)  # several IN lists
    ledger = Ledger(database.ledger, keyring)
    for n, stream in enumerate(("s_a", "s_b", "s_c"), start=1):
        await ledger.append(stream, 1, _events(n))
    streams = ["s_c", "s_none", "s_a", "s_b", "s_a"]
    together = await database.ledger.read_streams(streams)
    assert set(together) == set(streams)
    for stream in streams:
        assert together[stream] == await database.ledger.read_stream(stream), stream
    heads = await database.ledger.heads_of(streams)
    assert set(heads) == {"s_a", "s_b", "s_c"}
    assert heads["s_b"] == await database.ledger.head("s_b")
    loaded = await ledger.load_many(streams)
    assert [len(loaded[s].records) for s in streams] == [3, 0, 1, 2, 1]
    assert await ledger.head_positions(["s_b", "s_none"]) == {
        "s_b": (heads["s_b"].seq, heads["s_b"].mac)}


async def test_sealed_rows_are_stored_and_never_moved_back(database: Database) -> None:
    from server.storage.rows_cache_store import SealedRows

    store = database.attendance_rows
    first = SealedRows("s_a", 10, "k1", b"n" * 12, b"\x00rows at 10")
    await store.put_many([first, SealedRows("s_b", 3, "k1", b"m" * 12, b"b")])
    assert await store.get_many(["s_a", "s_none"]) == {"s_a": first}
    newer = SealedRows("s_a", 12, "k2", b"o" * 12, b"rows at 12")
    await store.put_many([newer])
    await store.put_many([first])  # an export that read the stream earlier, finishing later
    assert (await store.get_many(["s_a"]))["s_a"] == newer
    assert await store.clear() == 2
    assert await store.get_many(["s_a", "s_b"]) == {}
    await store.put_many([])


# -- session index -----------------------------------------------------------------------


async def test_sessions_between_dates(database: Database) -> None:
    idx = database.sessions
    pacific = timezone(timedelta(hours=-8))
    await idx.index_session("s_1", datetime(2025, 3, 1, 9, 0, tzinfo=UTC))
    await idx.index_session("s_2", datetime(2025, 3, 2, 19, 0, tzinfo=pacific))  # 03:00Z on 3rd
    await idx.index_session("s_3", datetime(2025, 3, 3, 8, 0, tzinfo=UTC))
    await idx.index_session("s_4", datetime(2025, 3, 5, 8, 0, tzinfo=UTC))
    assert await idx.sessions_between(date(2025, 3, 2), date(2025, 3, 3)) == ["s_2", "s_3"]
    assert await idx.sessions_between(date(2025, 3, 1), date(2025, 3, 1)) == ["s_1"]
    await idx.index_session("s_1", datetime(2025, 3, 5, 7, 0, tzinfo=UTC))  # rescheduled
    assert await idx.sessions_between(date(2025, 3, 5), date(2025, 3, 5)) == ["s_1", "s_4"]
    with pytest.raises(ValueError):
        await idx.index_session("s_5", datetime(2025, 3, 5, 7, 0))


# -- API keys ----------------------------------------------------------------------------


async def test_api_key_lifecycle(database: Database) -> None:
    keys = ApiKeys(database.api_keys)
    plaintext, key = await keys.create("staff", "scheduler")
    assert plaintext.startswith(f"ck_{key.id}_")
    assert key.role == "staff" and key.active and key.created_at.tzinfo is not None
    assert await keys.authenticate(plaintext) == key
    _, admin = await keys.create("admin", "ops")
    assert [k.id for k in await keys.list()] == [key.id, admin.id]

    secret = plaintext.split("_", 2)[2]
    for bad in (
        "",
        "ck_",
        f"ck_{key.id}",
        f"ck_{key.id}_",
        f"ck_{key.id}_x{secret}",
        f"xx_{key.id}_{secret}",
        f"ck_nope_{secret}",
    ):
        assert await keys.authenticate(bad) is None, bad

    assert await keys.revoke(key.id) is True
    assert await keys.revoke(key.id) is False
    assert await keys.revoke("unknown") is False
    assert await keys.authenticate(plaintext) is None
    listed = {k.id: k for k in await keys.list()}
    assert listed[key.id].revoked_at is not None and listed[admin.id].active


async def test_api_key_roles_are_checked(database: Database) -> None:
    with pytest.raises(ValueError):
        await ApiKeys(database.api_keys).create("root", "x")  # type: ignore[arg-type]
