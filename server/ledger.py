"""The ledger: the `EventLog` the control plane writes to, encrypted and hash-chained.

This is the mapper between JSON records and the opaque rows of a `LedgerStore`. Each record
is sealed with AES-256-GCM under the current data key, bound to its (stream, seq, key id);
each stream carries a keyed HMAC chain and an Ed25519-signed head, written in the same
transaction as the records. Together they make deletion, truncation, insertion, editing and
moving of records detectable by `verify` (and refused by `load`) for anyone who can write the
database but does not hold the key ring.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import weakref
from collections import OrderedDict
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature, InvalidTag

from server.crypto.chain import genesis_mac, head_message, next_mac
from server.crypto.keyring import KeyRing
from server.crypto.sealing import seal, unseal
from server.storage.ledger_store import LedgerStore, SignedHead, StoredRecord
from signaling.ports import JsonRecord, LedgerConflict

AUDIT_STREAM = "audit"
MAX_STREAM_LENGTH = 128
_TIP_CACHE_SIZE = 4096
_AUDIT_ATTEMPTS = 5

HeadListener = Callable[[SignedHead | None, SignedHead], None]
"""Told `(previous, head)` after every committed append: the head the append moved from (None
for a new stream) and the one it moved to. Called on the append path, so it must be quick."""


class LedgerCorrupt(Exception):
    """A stream failed an integrity check; names the first bad position."""

    def __init__(self, stream: str, seq: int | None, reason: str) -> None:
        where = f"seq {seq}" if seq is not None else "head"
        super().__init__(f"ledger stream {stream!r} {where}: {reason}")
        self.stream = stream
        self.seq = seq
        self.reason = reason


@dataclass(frozen=True)
class BadRecord:
    """The first failure found in one stream (`seq` None when no single record is to blame)."""

    stream: str
    seq: int | None
    reason: str


@dataclass(frozen=True)
class StreamState:
    """An intact stream as `verify` found it: where its head is, and the chain MACs asked for.

    Lets a caller holding an older view of the stream (a checkpoint) tell a stream that only
    grew since from one that was rolled back or rewritten.
    """

    head_seq: int
    macs: Mapping[int, bytes]


@dataclass(frozen=True)
class VerifyReport:
    """What `Ledger.verify` found: counts, the first bad record of each bad stream, and the
    state of each intact stream."""

    streams_checked: int
    records_checked: int
    problems: list[BadRecord] = field(default_factory=list)
    intact: dict[str, StreamState] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when every stream passed every check."""
        return not self.problems

    @property
    def first_bad(self) -> BadRecord | None:
        """The first problem in stream-name order, then seq order."""
        return self.problems[0] if self.problems else None


@dataclass(frozen=True)
class LoadedStream:
    """A stream's checked records and the `(seq, chain mac)` of the head they end at (None
    for a stream never written)."""

    records: list[JsonRecord]
    position: tuple[int, bytes] | None


def canonical_json(record: JsonRecord) -> bytes:
    """The one byte form of a record: sorted keys, no spaces, UTF-8, no NaN."""
    return json.dumps(
        record, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


class Ledger:
    """`signaling.ports.EventLog` over a `LedgerStore`, with encryption and the hash chain."""

    def __init__(
        self, store: LedgerStore, keyring: KeyRing, *, on_head: HeadListener | None = None
    ) -> None:
        self._store = store
        self._keys = keyring
        self._on_head = on_head
        # Last verified head per stream: lets an append chain on without reading the stream.
        self._tips: OrderedDict[str, SignedHead] = OrderedDict()
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    # -- EventLog -----------------------------------------------------------------------

    async def append(
        self,
        stream: str,
        first_seq: int,
        records: Sequence[JsonRecord],
        *,
        fence: int | None = None,
    ) -> None:
        """Seal and store `records` as `first_seq`, `first_seq + 1`, ...; durable on return.

        Raises `LedgerConflict` if a seq is taken (another writer got there first),
        `FencedOut` if `fence` is given and the stream has been claimed again since (this
        node lost the session), and `ValueError` for a gap after the stream's last seq or the
        reserved audit stream.
        """
        if stream == AUDIT_STREAM:
            raise ValueError("the audit stream is written only through append_audit")
        _check_stream_name(stream)
        if first_seq < 0:
            raise ValueError(f"seq must be non-negative, got {first_seq}")
        if not records:
            return
        async with self._lock(stream):
            await self._append_locked(stream, first_seq, records, fence)

    async def claim_fence(self, stream: str) -> int:
        """Take the stream's next fence (1, 2, ...): appends with older fences now fail.

        Raises `ValueError` for the audit stream: every node appends to it, so no node may
        own it.
        """
        if stream == AUDIT_STREAM:
            raise ValueError("the audit stream is shared by every node and is never fenced")
        _check_stream_name(stream)
        return await self._store.claim_fence(stream)

    async def load(self, stream: str) -> list[JsonRecord]:
        """Every record of `stream` in seq order, after checking the whole stream.

        Raises `LedgerCorrupt` naming the first bad record: a session is never rebuilt from
        a ledger that has been tampered with.
        """
        head, stored = await self._store.read_stream(stream)
        if head is None and not stored:
            return []
        signed, records = self._open_stream(stream, head, stored)
        self._remember(signed)
        return records

    async def load_many(self, streams: Sequence[str]) -> dict[str, LoadedStream]:
        """`load` of each of `streams` (each one a key; no records for a stream never
        written), read in a few round trips instead of two per stream, with the position of
        the head the records were checked against. Raises `LedgerCorrupt` naming the first
        bad stream, in the order given, as `load` would."""
        found = await self._store.read_streams(streams)
        loaded: dict[str, LoadedStream] = {}
        for stream in streams:
            head, stored = found[stream]
            if head is None and not stored:
                loaded[stream] = LoadedStream([], None)
                continue
            signed, records = self._open_stream(stream, head, stored)
            self._remember(signed)
            loaded[stream] = LoadedStream(records, (signed.seq, signed.mac))
        return loaded

    async def head_positions(self, streams: Sequence[str]) -> dict[str, tuple[int, bytes]]:
        """Where each stream's stored head is now, `(seq, chain mac)`, for those that have one.

        Not checked (no signature, no chain): only for telling whether something derived
        from a stream *by this server*, and sealed with the position it was derived at, is
        still current. An equal position means the stream has not grown since, so what was
        derived from its checked records then is still what they yield (the MAC chains them
        all); any other answer is a miss, and the caller loads the stream, which checks
        everything. Records altered in place under an unchanged head are `verify`'s to find.
        """
        heads = await self._store.heads_of(streams)
        return {stream: (head.seq, head.mac) for stream, head in heads.items()}

    # -- audit, listing, verification ---------------------------------------------------

    async def append_audit(self, record: JsonRecord) -> int:
        """Append one audit event (export, admin action) at the next seq; returns that seq.

        Retries when another node appended audit events meanwhile, so callers never see a
        conflict for the shared audit stream.
        """
        for _ in range(_AUDIT_ATTEMPTS):
            async with self._lock(AUDIT_STREAM):
                tip = await self._tip(AUDIT_STREAM)
                seq = 1 if tip is None else tip.seq + 1
                try:
                    await self._append_locked(AUDIT_STREAM, seq, [record], None)
                except LedgerConflict:
                    continue
                return seq
        raise LedgerConflict(f"audit stream: still contended after {_AUDIT_ATTEMPTS} attempts")

    async def streams(self) -> list[str]:
        """Every stream in the ledger (sessions and the audit stream), sorted."""
        return await self._store.streams()

    async def heads(self) -> list[SignedHead]:
        """Every stream's signed head whose signature holds (a bad one is `verify`'s to name).

        What a new checkpoint starts from: it reads one head per stream, never the records.
        """
        found: list[SignedHead] = []
        for stream in await self._store.streams():
            try:
                head = await self._tip(stream, fresh=True)
            except LedgerCorrupt:
                continue
            if head is not None:
                found.append(head)
        return found

    async def verify(
        self,
        progress: Callable[[str, int], None] | None = None,
        *,
        marks: Mapping[str, Collection[int]] | None = None,
    ) -> VerifyReport:
        """Check every stream: decryption, chain, contiguity, head signature and position.

        `progress(stream, records_checked_so_far)` is called after each stream. A bad stream
        does not stop the walk: the report lists the first bad record of each. For each
        intact stream the report gives its head seq and the chain MAC at each seq `marks`
        names for it (a seq the stream does not hold is left out).
        """
        problems: list[BadRecord] = []
        intact: dict[str, StreamState] = {}
        names = await self._store.streams()
        checked = 0
        for stream in names:
            head, stored = await self._store.read_stream(stream)
            try:
                signed, _ = self._open_stream(stream, head, stored)
            except LedgerCorrupt as bad:
                problems.append(BadRecord(bad.stream, bad.seq, bad.reason))
            else:
                wanted = (marks or {}).get(stream, ())
                # Each stored MAC has just been checked against the recomputed chain.
                intact[stream] = StreamState(
                    signed.seq, {row.seq: row.mac for row in stored if row.seq in wanted}
                )
            checked += len(stored)
            if progress is not None:
                progress(stream, checked)
        return VerifyReport(len(names), checked, problems, intact)

    # -- internals ------------------------------------------------------------------------

    def _lock(self, stream: str) -> asyncio.Lock:
        lock = self._locks.get(stream)
        if lock is None:
            lock = self._locks[stream] = asyncio.Lock()
        return lock

    def _remember(self, head: SignedHead) -> None:
        """Cache `head` unless a newer one is cached (a `load` may race an append)."""
        cached = self._tips.get(head.stream)
        if cached is None or cached.seq < head.seq:
            self._tips[head.stream] = head
        self._tips.move_to_end(head.stream)
        while len(self._tips) > _TIP_CACHE_SIZE:
            self._tips.popitem(last=False)

    async def _tip(self, stream: str, *, fresh: bool = False) -> SignedHead | None:
        """The stream's head: cached, or read from the store and signature-checked."""
        if not fresh and stream in self._tips:
            return self._tips[stream]
        head = await self._store.head(stream)
        if head is not None:
            self._check_signature(head)
            self._remember(head)
        return head

    async def _append_locked(
        self, stream: str, first_seq: int, records: Sequence[JsonRecord], fence: int | None
    ) -> None:
        tip = await self._tip(stream)
        if tip is not None and first_seq > tip.seq + 1:
            tip = await self._tip(stream, fresh=True)  # the cache may lag another writer
        if tip is not None and first_seq <= tip.seq:
            raise LedgerConflict(f"stream {stream!r}: seq {first_seq} is taken (at {tip.seq})")
        if tip is not None and first_seq > tip.seq + 1:
            raise ValueError(f"stream {stream!r}: seq {first_seq} leaves a gap after {tip.seq}")

        key_id = self._keys.current_key_id
        key = self._keys.data_key(key_id)
        mac = genesis_mac(self._keys.chain_key, stream) if tip is None else tip.mac
        sealed: list[StoredRecord] = []
        for seq, record in enumerate(records, start=first_seq):
            nonce, ciphertext = seal(key, key_id, stream, seq, canonical_json(record))
            mac = next_mac(self._keys.chain_key, mac, stream, seq, key_id, nonce, ciphertext)
            sealed.append(StoredRecord(stream, seq, key_id, nonce, ciphertext, mac))
        last = sealed[-1].seq
        signature = self._keys.ledger_signing_key.sign(head_message(stream, last, mac))
        head = SignedHead(stream, last, mac, signature)
        try:
            await self._store.append(sealed, head, tip, fence)
        except BaseException:
            # Conflict (FencedOut included), or an error after which we cannot know whether
            # the commit landed: either way the next append must re-read the head.
            self._tips.pop(stream, None)
            raise
        self._remember(head)
        if self._on_head is not None:
            self._on_head(tip, head)

    def _check_signature(self, head: SignedHead) -> None:
        try:
            self._keys.ledger_public_key.verify(
                head.signature, head_message(head.stream, head.seq, head.mac)
            )
        except InvalidSignature:
            raise LedgerCorrupt(head.stream, head.seq, "head signature is invalid") from None

    def _open_stream(
        self, stream: str, head: SignedHead | None, stored: Sequence[StoredRecord]
    ) -> tuple[SignedHead, list[JsonRecord]]:
        """Decrypt a stream's records, checking everything; raise at the first bad one.

        Returns the head with the records: once checked it is known to be there, so callers
        need not narrow `head` again.
        """
        if head is None:
            raise LedgerCorrupt(stream, stored[0].seq, "records without a signed head")
        self._check_signature(head)
        mac = genesis_mac(self._keys.chain_key, stream)
        records: list[JsonRecord] = []
        expected = stored[0].seq if stored else None
        for row in stored:
            if row.seq != expected:
                raise LedgerCorrupt(
                    stream, expected, f"record missing (next stored record is seq {row.seq})"
                )
            records.append(self._decrypt(row))
            mac = next_mac(
                self._keys.chain_key, mac, stream, row.seq, row.key_id, row.nonce, row.ciphertext
            )
            if not hmac.compare_digest(mac, row.mac):
                raise LedgerCorrupt(
                    stream, row.seq, "chain MAC mismatch: record altered, inserted or reordered"
                )
            expected = row.seq + 1
        if not stored:
            raise LedgerCorrupt(stream, None, f"head signs seq {head.seq} but no record is stored")
        if stored[-1].seq != head.seq:
            raise LedgerCorrupt(
                stream,
                stored[-1].seq + 1,
                f"truncated: head signs seq {head.seq}, last stored record is {stored[-1].seq}",
            )
        if not hmac.compare_digest(mac, head.mac):
            raise LedgerCorrupt(stream, head.seq, "head MAC does not match the chain")
        return head, records

    def _decrypt(self, row: StoredRecord) -> JsonRecord:
        try:
            key = self._keys.data_key(row.key_id)
        except KeyError:
            raise LedgerCorrupt(row.stream, row.seq, f"unknown data key {row.key_id!r}") from None
        try:
            plaintext = unseal(key, row.key_id, row.stream, row.seq, row.nonce, row.ciphertext)
        except InvalidTag:
            raise LedgerCorrupt(
                row.stream,
                row.seq,
                "does not decrypt: ciphertext, nonce or its (stream, seq, key id) binding altered",
            ) from None
        try:
            record = json.loads(plaintext)
        except ValueError:
            record = None
        if not isinstance(record, dict):
            raise LedgerCorrupt(row.stream, row.seq, "decrypted payload is not a JSON object")
        return record


def _check_stream_name(stream: str) -> None:
    if not stream or len(stream) > MAX_STREAM_LENGTH:
        raise ValueError(f"stream name must be 1..{MAX_STREAM_LENGTH} characters")
