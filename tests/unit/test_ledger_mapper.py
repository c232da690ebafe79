"""The ledger mapper over an in-memory store: sealing, chaining, heads, seq rules, caching."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidTag

from server.crypto.chain import genesis_mac, head_message, next_mac
from server.crypto.keyring import KeyRing
from server.crypto.sealing import seal, unseal
from server.ledger import AUDIT_STREAM, Ledger, LedgerCorrupt, canonical_json
from server.storage.ledger_store import SignedHead, StoredRecord
from signaling.ports import EventLog, FencedOut, LedgerConflict


class MemoryLedgerStore:
    """A `LedgerStore` in dicts, with the same conflict rules as the SQL one."""

    def __init__(self) -> None:
        self.records: dict[tuple[str, int], StoredRecord] = {}
        self.heads: dict[str, SignedHead] = {}
        self.fences: dict[str, int] = {}
        self.head_reads = 0
        self.fail_next: Exception | None = None

    async def append(
        self,
        records: Sequence[StoredRecord],
        head: SignedHead,
        previous: SignedHead | None,
        fence: int | None = None,
    ) -> None:
        if self.fail_next is not None:
            exc, self.fail_next = self.fail_next, None
            raise exc
        if fence is not None and self.fences.get(head.stream) != fence:
            raise FencedOut("fence moved")
        if self.heads.get(head.stream) != previous:
            raise LedgerConflict("head moved")
        if any((r.stream, r.seq) in self.records for r in records):
            raise LedgerConflict("seq taken")
        self.records.update({(r.stream, r.seq): r for r in records})
        self.heads[head.stream] = head

    async def claim_fence(self, stream: str) -> int:
        self.fences[stream] = self.fences.get(stream, 0) + 1
        return self.fences[stream]

    async def head(self, stream: str) -> SignedHead | None:
        self.head_reads += 1
        return self.heads.get(stream)

    async def read_stream(self, stream: str) -> tuple[SignedHead | None, list[StoredRecord]]:
        head = self.heads.get(stream)
        rows = sorted((r for (s, _), r in self.records.items() if s == stream), key=lambda r: r.seq)
        return head, [r for r in rows if head is None or r.seq <= head.seq]

    async def heads_of(self, streams: Sequence[str]) -> dict[str, SignedHead]:
        return {s: self.heads[s] for s in streams if s in self.heads}

    async def read_streams(
        self, streams: Sequence[str]
    ) -> dict[str, tuple[SignedHead | None, list[StoredRecord]]]:
        return {s: await self.read_stream(s) for s in streams}

    async def streams(self) -> list[str]:
        return sorted({s for s, _ in self.records} | set(self.heads))


@pytest.fixture
def keyring(tmp_path: Path) -> KeyRing:
    return KeyRing.load_or_create(tmp_path / "keyring.json")


@pytest.fixture
def store() -> MemoryLedgerStore:
    return MemoryLedgerStore()


@pytest.fixture
def ledger(store: MemoryLedgerStore, keyring: KeyRing) -> Ledger:
    return Ledger(store, keyring)


def test_ledger_is_an_event_log(ledger: Ledger) -> None:
    log: EventLog = ledger
    assert log is ledger


def test_canonical_json_is_sorted_compact_utf8() -> None:
    assert canonical_json({"b": 1, "a": "Zoë", "c": [1, {"y": 2, "x": 1}]}) == (
        '{"a":"Zoë","b":1,"c":[1,{"x":1,"y":2}]}'.encode()
    )
    with pytest.raises(ValueError):
        canonical_json({"x": float("nan")})


def test_sealed_record_is_bound_to_stream_seq_and_key_id() -> None:
    key = b"k" * 32
    nonce, ciphertext = seal(key, "k1", "s_a", 7, b"{}")
    assert unseal(key, "k1", "s_a", 7, nonce, ciphertext) == b"{}"
    for stream, seq, key_id in [("s_b", 7, "k1"), ("s_a", 8, "k1"), ("s_a", 7, "k2")]:
        with pytest.raises(InvalidTag):
            unseal(key, key_id, stream, seq, nonce, ciphertext)


async def test_records_are_sealed_chained_and_signed(
    ledger: Ledger, store: MemoryLedgerStore, keyring: KeyRing
) -> None:
    await ledger.append("s_a", 1, [{"n": 1}, {"n": 2}])
    await ledger.append("s_a", 3, [{"n": 3}])
    mac = genesis_mac(keyring.chain_key, "s_a")
    for seq in (1, 2, 3):
        row = store.records[("s_a", seq)]
        key = keyring.data_key(row.key_id)
        assert unseal(key, row.key_id, "s_a", seq, row.nonce, row.ciphertext) == (
            canonical_json({"n": seq})
        )
        mac = next_mac(keyring.chain_key, mac, "s_a", seq, row.key_id, row.nonce, row.ciphertext)
        assert row.mac == mac
    head = store.heads["s_a"]
    assert (head.seq, head.mac) == (3, mac)
    keyring.ledger_public_key.verify(head.signature, head_message("s_a", 3, mac))
    assert len({r.nonce for r in store.records.values()}) == 3
    assert await ledger.load("s_a") == [{"n": 1}, {"n": 2}, {"n": 3}]


async def test_streams_have_independent_chains(ledger: Ledger, store: MemoryLedgerStore) -> None:
    await ledger.append("s_a", 1, [{"n": 1}])
    await ledger.append("s_b", 1, [{"n": 1}])
    assert store.records[("s_a", 1)].mac != store.records[("s_b", 1)].mac
    assert await ledger.streams() == ["s_a", "s_b"]


async def test_seq_rules(ledger: Ledger, store: MemoryLedgerStore) -> None:
    await ledger.append("s_a", 0, [])  # nothing to store: no stream either
    assert await ledger.streams() == []
    await ledger.append("s_a", 1, [{"n": 1}, {"n": 2}])
    with pytest.raises(LedgerConflict):
        await ledger.append("s_a", 2, [{"n": "fork"}])
    with pytest.raises(ValueError, match="gap"):
        await ledger.append("s_a", 5, [{"n": 5}])
    with pytest.raises(ValueError):
        await ledger.append("s_a", -1, [{"n": 0}])
    with pytest.raises(ValueError):
        await ledger.append("x" * 129, 1, [{"n": 1}])
    with pytest.raises(ValueError):
        await ledger.append(AUDIT_STREAM, 1, [{"n": 1}])
    assert await ledger.load("s_a") == [{"n": 1}, {"n": 2}]


async def test_unserialisable_record_stores_nothing(
    ledger: Ledger, store: MemoryLedgerStore
) -> None:
    with pytest.raises(TypeError):
        await ledger.append("s_a", 1, [{"n": 1}, {"when": object()}])
    assert store.records == {} and store.heads == {}


async def test_head_is_cached_after_first_use(ledger: Ledger, store: MemoryLedgerStore) -> None:
    for seq in range(1, 6):
        await ledger.append("s_a", seq, [{"n": seq}])
    assert store.head_reads == 1


async def test_load_primes_the_cache(store: MemoryLedgerStore, keyring: KeyRing) -> None:
    await Ledger(store, keyring).append("s_a", 1, [{"n": 1}])
    replayed = Ledger(store, keyring)
    await replayed.load("s_a")
    store.head_reads = 0
    await replayed.append("s_a", 2, [{"n": 2}])
    assert store.head_reads == 0


async def test_a_failed_append_forgets_the_cached_head(
    ledger: Ledger, store: MemoryLedgerStore
) -> None:
    await ledger.append("s_a", 1, [{"n": 1}])
    store.fail_next = ConnectionError("database went away")
    with pytest.raises(ConnectionError):
        await ledger.append("s_a", 2, [{"n": 2}])
    store.head_reads = 0
    await ledger.append("s_a", 2, [{"n": 2}])
    assert store.head_reads == 1
    assert await ledger.load("s_a") == [{"n": 1}, {"n": 2}]


async def test_another_writer_makes_a_stale_cache_conflict(
    store: MemoryLedgerStore, keyring: KeyRing
) -> None:
    mine, theirs = Ledger(store, keyring), Ledger(store, keyring)
    await mine.append("s_a", 1, [{"n": 1}])
    await theirs.append("s_a", 2, [{"n": "theirs"}])
    with pytest.raises(LedgerConflict):
        await mine.append("s_a", 2, [{"n": "mine"}])
    await mine.append("s_a", 3, [{"n": 3}])  # re-read head, chained on theirs
    assert (await mine.verify()).ok


async def test_audit_seqs_are_assigned_under_a_lock(ledger: Ledger) -> None:
    seqs = await asyncio.gather(*(ledger.append_audit({"i": i}) for i in range(20)))
    assert sorted(seqs) == list(range(1, 21))
    assert [r["i"] for r in await ledger.load(AUDIT_STREAM)] == [
        i for _, i in sorted(zip(seqs, range(20), strict=True))
    ]


async def test_verify_counts_and_passes_a_clean_ledger(ledger: Ledger) -> None:
    await ledger.append("s_a", 1, [{"n": 1}, {"n": 2}])
    await ledger.append_audit({"action": "export"})
    report = await ledger.verify()
    assert report.ok and report.first_bad is None
    assert (report.streams_checked, report.records_checked) == (2, 3)


async def test_fence_goes_to_the_store_and_fenced_out_forgets_the_head(
    store: MemoryLedgerStore, keyring: KeyRing
) -> None:
    old_owner, new_owner = Ledger(store, keyring), Ledger(store, keyring)
    first = await old_owner.claim_fence("s_a")
    await old_owner.append("s_a", 1, [{"n": 1}], fence=first)
    assert await new_owner.claim_fence("s_a") == first + 1
    with pytest.raises(FencedOut):
        await old_owner.append("s_a", 2, [{"n": "stale"}], fence=first)
    assert store.heads["s_a"].seq == 1
    await new_owner.append("s_a", 2, [{"n": 2}], fence=first + 1)
    store.head_reads = 0
    with pytest.raises(FencedOut):  # re-reads the head the new owner moved, still fenced out
        await old_owner.append("s_a", 3, [{"n": "stale"}], fence=first)
    assert store.head_reads == 1
    assert await new_owner.load("s_a") == [{"n": 1}, {"n": 2}]


async def test_the_audit_stream_is_never_fenced(ledger: Ledger) -> None:
    with pytest.raises(ValueError):
        await ledger.claim_fence(AUDIT_STREAM)
    with pytest.raises(ValueError):
        await ledger.claim_fence("")


async def test_load_many_is_load_of_each_stream(ledger: Ledger, store: MemoryLedgerStore) -> None:
    await ledger.append("s_a", 1, [{"n": 1}, {"n": 2}])
    await ledger.append("s_b", 1, [{"n": 3}])
    loaded = await ledger.load_many(["s_b", "s_a", "s_none"])
    assert {s: got.records for s, got in loaded.items()} == {
        "s_a": [{"n": 1}, {"n": 2}], "s_b": [{"n": 3}], "s_none": []}
    a_at = (2, store.heads["s_a"].mac)
    assert (loaded["s_a"].position, loaded["s_none"].position) == (a_at, None)
    assert await ledger.head_positions(["s_a", "s_none"]) == {"s_a": a_at}


async def test_load_many_refuses_a_tampered_stream_like_load(
    ledger: Ledger, store: MemoryLedgerStore
) -> None:
    await ledger.append("s_a", 1, [{"n": 1}])
    await ledger.append("s_b", 1, [{"n": 2}, {"n": 3}])
    row = store.records[("s_b", 2)]
    store.records[("s_b", 2)] = StoredRecord(row.stream, row.seq, row.key_id, row.nonce,
                                             bytes(len(row.ciphertext)), row.mac)
    with pytest.raises(LedgerCorrupt) as bad:
        await ledger.load_many(["s_a", "s_b"])
    assert (bad.value.stream, bad.value.seq) == ("s_b", 2)
    # The head did not move: a position check alone cannot see this (verify does).
    assert (await ledger.head_positions(["s_b"]))["s_b"][0] == 2
