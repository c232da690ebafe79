"""The server's checkpoint writer over an in-memory ledger store, and `check` on its files.

Marks follow the appends (batched, written at close), a restart goes on with the same file
(lineage, counter), a head below a mark freezes the mark as evidence, and the writer refuses
to start on a file it must not overwrite or share.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from server.checkpoints import writer as writer_module
from server.checkpoints.compare import check
from server.checkpoints.document import Checkpoint, Mark, encode, read_checkpoint, write_atomic
from server.checkpoints.writer import CheckpointError, CheckpointWriter
from server.clock import WallClock
from server.crypto.keyring import KeyRing
from server.ledger import Ledger
from server.storage.ledger_store import SignedHead
from tests.unit.test_ledger_mapper import MemoryLedgerStore

AT = datetime(2024, 5, 1, 17, 0, tzinfo=UTC)


@pytest.fixture
def ring(tmp_path: Path) -> KeyRing:
    return KeyRing.load_or_create(tmp_path / "keys" / "keys.json")


@pytest.fixture
def store() -> MemoryLedgerStore:
    return MemoryLedgerStore()


def _files(tmp_path: Path) -> list[Path]:
    return [tmp_path / "keys" / "checkpoints.json", tmp_path / "other-disk" / "copy.json"]


def _writer(ring: KeyRing, paths: list[Path], **kw: float) -> CheckpointWriter:
    return CheckpointWriter(paths, ring, "node-a", WallClock(), **kw)


def _read(ring: KeyRing, path: Path) -> Checkpoint:
    checkpoint = read_checkpoint(path, ring.ledger_public_key)
    assert checkpoint is not None
    return checkpoint


def _marks(store: MemoryLedgerStore) -> dict[str, Mark]:
    return {name: Mark(head.seq, head.mac) for name, head in store.heads.items()}


@pytest.fixture
async def running(
    ring: KeyRing, store: MemoryLedgerStore, tmp_path: Path
) -> AsyncIterator[tuple[CheckpointWriter, Ledger]]:
    """A started writer on both files and a ledger that reports to it."""
    writer = _writer(ring, _files(tmp_path))
    ledger = Ledger(store, ring, on_head=writer.saw)
    await writer.start(ledger)
    yield writer, ledger
    await writer.close()


async def test_a_first_start_begins_from_the_databases_heads(
    ring: KeyRing, store: MemoryLedgerStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    plain = Ledger(store, ring)
    await plain.append("s_a", 1, [{"n": 1}, {"n": 2}])
    await plain.append_audit({"type": "api_key_created"})
    writer = _writer(ring, _files(tmp_path))
    with caplog.at_level(logging.WARNING, "circle.checkpoints"):
        await writer.start(Ledger(store, ring, on_head=writer.saw))
    try:
        for path in _files(tmp_path):
            written = _read(ring, path)
            assert (written.node, written.counter) == ("node-a", 1)
            assert written.streams == _marks(store)
        assert "no checkpoint file at" in caplog.text and "2 stream(s)" in caplog.text
    finally:
        await writer.close()


async def test_appends_reach_the_files_in_batches_and_all_at_close(
    running: tuple[CheckpointWriter, Ledger], store: MemoryLedgerStore, ring: KeyRing,
    tmp_path: Path,
) -> None:
    writer, ledger = running
    for seq in range(1, 51):
        await ledger.append("s_a", seq, [{"n": seq}])
        await ledger.append_audit({"n": seq})
    await writer.close()
    primary, copy = (_read(ring, path) for path in _files(tmp_path))
    assert primary == copy
    assert primary.streams == _marks(store)
    assert primary.streams["s_a"].seq == 50
    assert primary.counter <= 4, "100 appends within a second are a few writes, not 100"


async def test_the_background_task_writes_without_waiting_for_a_stop(
    ring: KeyRing, store: MemoryLedgerStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrote = threading.Event()

    def write_and_tell(path: Path, data: bytes) -> None:
        write_atomic(path, data)
        wrote.set()

    writer = _writer(ring, _files(tmp_path)[:1])
    ledger = Ledger(store, ring, on_head=writer.saw)
    await writer.start(ledger)
    monkeypatch.setattr(writer_module, "write_atomic", write_and_tell)
    try:
        await ledger.append("s_a", 1, [{"n": 1}])
        assert await asyncio.to_thread(wrote.wait, 10)
        assert _read(ring, _files(tmp_path)[0]).streams["s_a"] == _marks(store)["s_a"]
    finally:
        await writer.close()


async def test_a_restart_goes_on_with_the_same_lineage_and_counter(
    running: tuple[CheckpointWriter, Ledger], ring: KeyRing, store: MemoryLedgerStore,
    tmp_path: Path,
) -> None:
    writer, ledger = running
    await ledger.append("s_a", 1, [{"n": 1}])
    await writer.close()
    before = _read(ring, _files(tmp_path)[0])
    again = _writer(ring, _files(tmp_path))
    await again.start(Ledger(store, ring, on_head=again.saw))
    await again.close()
    after = _read(ring, _files(tmp_path)[0])
    assert (after.lineage, after.since, after.streams) == (before.lineage, before.since,
                                                          before.streams)
    assert after.counter == before.counter + 1


def _head(seq: int, mac: bytes) -> SignedHead:
    """A head as the ledger hands it to `saw` (the writer never checks its signature)."""
    return SignedHead("s_a", seq, mac, b"")


async def test_a_head_below_the_mark_freezes_the_mark_for_good(
    running: tuple[CheckpointWriter, Ledger], ring: KeyRing, store: MemoryLedgerStore,
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    writer, _ = running
    m = {n: bytes([n]) * 32 for n in range(1, 12)}
    writer.saw(None, _head(5, m[5]))
    with caplog.at_level(logging.ERROR, "circle.checkpoints"):
        writer.saw(_head(3, m[3]), _head(4, m[4]))  # the database was at 3
    assert "s_a was moved back under this server" in caplog.text
    writer.saw(_head(9, m[9]), _head(10, m[10]))  # appends go on past the mark
    await writer.close()
    assert _read(ring, _files(tmp_path)[0]).streams["s_a"] == Mark(5, m[5], moved_back_to=3)

    again = _writer(ring, _files(tmp_path))
    await again.start(Ledger(store, ring, on_head=again.saw))
    again.saw(_head(10, m[10]), _head(11, m[11]))
    await again.close()
    assert _read(ring, _files(tmp_path)[0]).streams["s_a"] == Mark(5, m[5], moved_back_to=3)


@pytest.mark.parametrize(("previous", "moved_back_to"), [
    (None, 0),  # the stream deleted and begun again
    (5, 5),     # same seq, another chain
])
async def test_a_stream_begun_again_or_forked_freezes_its_mark(
    running: tuple[CheckpointWriter, Ledger], ring: KeyRing, tmp_path: Path,
    previous: int | None, moved_back_to: int,
) -> None:
    writer, _ = running
    writer.saw(None, _head(5, b"\1" * 32))
    writer.saw(None if previous is None else _head(previous, b"\2" * 32),
               _head(6, b"\3" * 32))
    await writer.close()
    assert _read(ring, _files(tmp_path)[0]).streams["s_a"] == Mark(5, b"\1" * 32, moved_back_to)


async def test_appends_by_others_in_between_move_the_mark_on(
    running: tuple[CheckpointWriter, Ledger], ring: KeyRing, tmp_path: Path,
) -> None:
    """Another node or a `circle` command appended 6..7: this append starts from 7."""
    writer, _ = running
    writer.saw(None, _head(5, b"\1" * 32))
    writer.saw(_head(7, b"\2" * 32), _head(8, b"\3" * 32))
    await writer.close()
    assert _read(ring, _files(tmp_path)[0]).streams["s_a"] == Mark(8, b"\3" * 32)


async def test_a_second_writer_on_a_file_is_refused(
    running: tuple[CheckpointWriter, Ledger], ring: KeyRing, store: MemoryLedgerStore,
    tmp_path: Path,
) -> None:
    second = CheckpointWriter([tmp_path / "elsewhere.json", _files(tmp_path)[1]], ring,
                              "node-b", WallClock())
    with pytest.raises(CheckpointError, match="in use by another circle serve"):
        await second.start(Ledger(store, ring))
    assert not (tmp_path / "elsewhere.json").exists()


async def test_a_tampered_file_stops_the_start_and_stays_as_it_was(
    ring: KeyRing, store: MemoryLedgerStore, tmp_path: Path
) -> None:
    path = _files(tmp_path)[0]
    forger = KeyRing.load_or_create(tmp_path / "forger.json")
    forged = encode(Checkpoint("l", "x", 1, AT, AT, {}),
                    forger.ledger_signing_key)
    write_atomic(path, forged)
    writer = _writer(ring, [path])
    with pytest.raises(CheckpointError, match=r"signature does not verify.*move it aside"):
        await writer.start(Ledger(store, ring))
    assert path.read_bytes() == forged
    again = _writer(ring, [path])  # the lock was let go
    path.unlink()
    await again.start(Ledger(store, ring))
    await again.close()


async def test_a_missing_copy_is_written_again_from_the_file(
    running: tuple[CheckpointWriter, Ledger], ring: KeyRing, store: MemoryLedgerStore,
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    writer, ledger = running
    await ledger.append("s_a", 1, [{"n": 1}])
    await writer.close()
    primary, copy = _files(tmp_path)
    copy.unlink()
    again = _writer(ring, [primary, copy])
    with caplog.at_level(logging.WARNING, "circle.checkpoints"):
        await again.start(Ledger(store, ring, on_head=again.saw))
    await again.close()
    assert f"{copy} is missing" in caplog.text
    assert _read(ring, copy) == _read(ring, primary)
    assert _read(ring, copy).streams == _marks(store)


async def test_a_place_that_cannot_be_written_stops_the_start(
    ring: KeyRing, store: MemoryLedgerStore, tmp_path: Path
) -> None:
    (tmp_path / "a-file").write_text("")
    writer = _writer(ring, [tmp_path / "a-file" / "checkpoints.json"])
    with pytest.raises(CheckpointError, match="set CIRCLE_CHECKPOINT_FILE"):
        await writer.start(Ledger(store, ring))


async def test_a_failed_write_is_logged_once_and_retried(
    ring: KeyRing, store: MemoryLedgerStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    path = _files(tmp_path)[0]
    writer = _writer(ring, [path], interval_s=0.01)
    ledger = Ledger(store, ring, on_head=writer.saw)
    await writer.start(ledger)
    attempts = 0
    recovered = threading.Event()

    def full_disk_twice(target: Path, data: bytes) -> None:
        nonlocal attempts
        attempts += 1
        if attempts <= 2:
            raise OSError(28, "No space left on device")
        write_atomic(target, data)
        recovered.set()

    monkeypatch.setattr(writer_module, "write_atomic", full_disk_twice)
    with caplog.at_level(logging.INFO, "circle.checkpoints"):
        await ledger.append("s_a", 1, [{"n": 1}])
        assert await asyncio.to_thread(recovered.wait, 10)
        await writer.close()
    assert caplog.text.count("cannot write checkpoint file") == 1
    assert "No space left on device" in caplog.text and "written again" in caplog.text
    assert _read(ring, path).streams == _marks(store)


# -- check: what `circle verify` runs -----------------------------------------------------


async def test_check_names_missing_and_stale_files(
    ring: KeyRing, store: MemoryLedgerStore, tmp_path: Path
) -> None:
    ledger = Ledger(store, ring)
    primary, copy = _files(tmp_path)
    nothing = await check(ledger, [primary], ring.ledger_public_key)
    assert (nothing.ok, nothing.warnings) == (True, []), "a fresh install: nothing to compare"

    await ledger.append("s_a", 1, [{"n": 1}])
    unchecked = await check(ledger, [primary], ring.ledger_public_key)
    assert unchecked.ok and [w.split(":")[0] for w in unchecked.warnings] == [
        f"no checkpoint at {primary}"]

    newer = Checkpoint("l1", "node-a", 9, AT, AT, _marks(store))
    write_atomic(copy, encode(newer, ring.ledger_signing_key))
    write_atomic(primary, encode(replace(newer, counter=5), ring.ledger_signing_key))
    stale = await check(ledger, [primary, copy], ring.ledger_public_key)
    assert stale.ok and len(stale.sources) == 2
    assert stale.warnings == [
        f"{primary} is older than {copy} (checkpoint 5 < 9): its writes failed, or an older "
        "copy was put back"
    ]


async def test_check_reads_the_files_before_the_database(
    running: tuple[CheckpointWriter, Ledger], ring: KeyRing, store: MemoryLedgerStore,
    tmp_path: Path,
) -> None:
    """Appends racing `check` only put the database ahead of the checkpoint: no finding."""
    writer, ledger = running
    await ledger.append("s_a", 1, [{"n": 1}])
    await writer.close()

    def progress(stream: str, records: int) -> None:
        write_atomic(_files(tmp_path)[0], b"replaced once the database is being read")

    result = await check(ledger, _files(tmp_path)[:1], ring.ledger_public_key, progress)
    assert result.ok and result.findings == [] and len(result.sources) == 1
