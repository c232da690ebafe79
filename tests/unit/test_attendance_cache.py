"""The sealed row cache: used only while a session's stream is unchanged, never readable at
rest, never trusted over the ledger (a real `Ledger` over the in-memory store)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.attendance import AttendanceRow
from server.attendance.cache import CachedRows, decode_rows, encode_rows, fingerprint
from server.attendance.service import AttendanceService, LoadingReader, Rules
from server.crypto.keyring import KeyRing
from server.ledger import Ledger
from server.storage.rows_cache_store import SealedRows
from signaling.core import events as e
from tests.unit.test_attendance_service import session_records
from tests.unit.test_ledger_mapper import MemoryLedgerStore

T0 = datetime(2024, 5, 6, 17, tzinfo=UTC)
AS_OF = T0 + timedelta(days=7)
DEFAULT_RULES = Rules()
PEOPLE = [("t1", "therapist"), ("c1", "client"), ("c2", "client")]


class MemoryRowStore:
    """`RowStore` in a dict, with the SQL store's never-backwards rule."""

    def __init__(self) -> None:
        self.entries: dict[str, SealedRows] = {}
        self.puts = 0

    async def get_many(self, session_ids: Sequence[str]) -> dict[str, SealedRows]:
        return {s: self.entries[s] for s in session_ids if s in self.entries}

    async def put_many(self, entries: Sequence[SealedRows]) -> None:
        for entry in entries:
            old = self.entries.get(entry.session_id)
            if old is None or old.head_seq <= entry.head_seq:
                self.entries[entry.session_id] = entry
                self.puts += 1


class World:
    def __init__(self, tmp_path: Path) -> None:
        self.keys = KeyRing.load_or_create(tmp_path / "keys.json")
        self.ledger = Ledger(MemoryLedgerStore(), self.keys)
        self.store = MemoryRowStore()
        self.cache = CachedRows(self.ledger, self.store, self.keys)
        self.index: list[str] = []

    async def add(self, sid: str, starts_at: datetime = T0, ended: bool = True) -> None:
        records = session_records(sid, starts_at, PEOPLE)  # type: ignore[arg-type]
        await self.ledger.append(sid, 1, records if ended else records[:-1])
        self.index.append(sid)

    async def between(self, start: date, end: date) -> list[str]:
        return list(self.index)

    def service(self, rules: Rules = DEFAULT_RULES, cached: bool = True) -> AttendanceService:
        reader = self.cache if cached else LoadingReader(self.ledger.load)
        return AttendanceService(self.ledger.load, self.between, rules.tz, rules.late_after,
                                 rules.early_by, reader=reader)

    async def rows(self, rules: Rules = DEFAULT_RULES, as_of: datetime = AS_OF,
                   cached: bool = True) -> list[AttendanceRow]:
        week = (T0.date(), T0.date() + timedelta(days=7))
        return await self.service(rules, cached).export(*week, as_of=as_of)


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


async def test_a_second_export_is_served_from_the_cache_with_the_same_rows(world: World) -> None:
    await world.add("s_a")
    await world.add("s_b", T0 + timedelta(days=1))
    first = await world.rows()
    assert (world.cache.hits, world.cache.misses, world.cache.stored) == (0, 2, 2)
    second = await world.rows()
    assert (world.cache.hits, world.cache.misses) == (2, 2)
    assert first == second == await world.rows(cached=False)
    assert len(first) == 6


async def test_an_event_appended_since_is_a_miss_and_the_ledger_wins(world: World) -> None:
    records = [r for r in session_records("s_a", T0, PEOPLE)  # type: ignore[arg-type]
               if not (r["type"] == "media_published" and r["participant_id"] == "c2")]
    await world.ledger.append("s_a", 1, records)
    world.index.append("s_a")
    before = {r.participant_id: r.modality for r in await world.rows()}
    assert before["c2"] == "none" and "s_a" in world.store.entries
    # The relay's report of what c2 sent arrives after the end: it still counts.
    late = e.MediaPublished(at=T0 + timedelta(minutes=61), participant_id="c2",
                            kinds=frozenset({"audio"}))
    await world.ledger.append("s_a", len(records) + 1, [e.to_record(late)])
    rows = await world.rows()
    assert world.cache.hits == 0, "the head moved: the sealed rows were not used"
    assert {r.participant_id: r.modality for r in rows}["c2"] == "audio-only"
    assert rows == await world.rows(cached=False)
    assert world.store.entries["s_a"].head_seq == len(records) + 1
    assert await world.rows() == rows
    assert world.cache.hits == 1


async def test_a_live_session_is_never_kept(world: World) -> None:
    await world.add("s_live", ended=False)
    mid = T0 + timedelta(minutes=30)
    rows = await world.rows(as_of=mid)
    assert {r.minutes_present for r in rows} == {Decimal("30.00")}
    assert world.store.entries == {}
    later = await world.rows(as_of=mid + timedelta(minutes=10))
    assert {r.minutes_present for r in later} == {Decimal("40.00")}


async def test_an_export_as_of_before_the_end_does_not_use_or_keep_the_ended_rows(
    world: World,
) -> None:
    await world.add("s_a")
    mid = T0 + timedelta(minutes=30)
    await world.rows(as_of=mid)
    assert world.store.entries == {}, "as it stood at 30 minutes: not the final record"
    await world.rows()
    rows = await world.rows(as_of=mid)
    assert world.cache.hits == 0
    assert {r.minutes_present for r in rows} == {Decimal("30.00")}


async def test_other_rules_are_a_miss(world: World) -> None:
    await world.add("s_a")
    await world.rows()
    strict = Rules(late_after=timedelta(minutes=0), early_by=timedelta(minutes=5))
    assert fingerprint(strict) != fingerprint(Rules())
    await world.rows(strict)
    assert world.cache.hits == 0


async def test_a_tampered_entry_is_a_miss_and_is_replaced(world: World) -> None:
    await world.add("s_a")
    await world.rows()
    good = world.store.entries["s_a"]
    flipped = bytes([good.ciphertext[0] ^ 1]) + good.ciphertext[1:]
    world.store.entries["s_a"] = replace(good, ciphertext=flipped)
    rows = await world.rows()
    assert world.cache.hits == 0 and rows == await world.rows(cached=False)
    assert world.store.entries["s_a"].ciphertext not in (flipped, good.ciphertext)
    await world.rows()
    assert world.cache.hits == 1


async def test_an_entry_moved_to_another_session_does_not_open(world: World) -> None:
    await world.add("s_a")
    await world.add("s_b")
    await world.rows()
    # Same records, so the same head seq: only the sealing's binding tells them apart.
    world.store.entries["s_b"] = replace(world.store.entries["s_a"], session_id="s_b")
    rows = await world.rows()
    assert (world.cache.hits, {r.session_id for r in rows}) == (1, {"s_a", "s_b"})


async def test_nothing_is_readable_at_rest(world: World) -> None:
    await world.add("s_a")
    await world.rows()
    entry = world.store.entries["s_a"]
    for text in (b"C1", b"T1", b"s_a", b"therapist", b"present"):
        assert text not in entry.ciphertext


moments = st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1),
                       timezones=st.just(UTC))
row_values = st.builds(
    AttendanceRow,
    session_id=st.text(min_size=1, max_size=8),
    service_date=st.dates(),
    program=st.sampled_from(["IOP", "PHP", "OP"]),
    kind=st.sampled_from(["group", "individual", "family"]),
    participant_id=st.text(min_size=1, max_size=8),
    display_name=st.text(max_size=12),
    role=st.sampled_from(["client", "therapist"]),
    time_in=st.none() | moments,
    time_out=st.none() | moments,
    minutes_present=st.decimals(min_value=0, max_value=720, places=2),
    minutes_waiting=st.decimals(min_value=0, max_value=720, places=2),
    disconnects=st.integers(0, 50),
    modality=st.sampled_from(["audio-video", "audio-only", "none"]),
    breakout_rooms=st.lists(st.text(max_size=6), max_size=3).map(tuple),
    breakout_roles=st.lists(st.text(max_size=6), max_size=3).map(tuple),
    status=st.sampled_from(["present", "late", "left_early", "no_show", "denied", "removed"]),
)


@given(st.lists(row_values, max_size=5))
def test_the_row_codec_round_trips_exactly(rows: list[AttendanceRow]) -> None:
    import json

    again = decode_rows(json.loads(json.dumps(encode_rows(rows))))
    assert again == rows
    assert [str(r.minutes_present) for r in again] == [str(r.minutes_present) for r in rows]
