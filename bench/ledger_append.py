"""Where a durable ledger append's time goes: sqlite3 floor, store layer, full Ledger.

    .venv/bin/python -m bench.ledger_append [--appends 300] [--repeat 3]

Every accepted command waits for one `Ledger.append` before it takes effect (runtime.py),
so its latency bounds a session owner's events/s. Three layers, same SQLite settings
(WAL, synchronous=FULL), one record per append into one stream (a typical command), run
interleaved `--repeat` times, medians reported:

* sqlite3: the stdlib driver, BEGIN / UPDATE head / INSERT record / COMMIT (the fsync floor)
* store:   `SqlLedgerStore.append` with pre-built rows (SQLAlchemy async over aiosqlite)
* ledger:  `Ledger.append` (canonical JSON, AES-GCM seal, HMAC chain, Ed25519 head, store)

store/sqlite3 is the async database stack's cost, ledger/store the cryptography's.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import tempfile
import time
from pathlib import Path

from bench.control_common import machine_note, median, ratio, table
from server.crypto.keyring import KeyRing
from server.ledger import Ledger
from server.storage.database import open_database
from server.storage.ledger_store import SignedHead, StoredRecord

RECORD = {"type": "hand_changed", "at": "2026-11-25T15:00:00+00:00",
          "participant_id": "c-1042", "raised": True}


def sqlite_floor(path: Path, appends: int) -> float:
    """Seconds per append with the stdlib driver and the server's pragmas."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE IF NOT EXISTS heads (stream TEXT PRIMARY KEY, seq INT, mac BLOB)")
    conn.execute("CREATE TABLE IF NOT EXISTS recs (stream TEXT, seq INT, body BLOB, "
                 "PRIMARY KEY (stream, seq))")
    stream = f"s{time.monotonic_ns()}"
    conn.execute("INSERT INTO heads VALUES (?, 0, x'')", (stream,))
    start = time.perf_counter()
    for seq in range(1, appends + 1):
        conn.execute("BEGIN")
        conn.execute("UPDATE heads SET seq = ?, mac = ? WHERE stream = ? AND seq = ?",
                     (seq, os.urandom(32), stream, seq - 1))
        conn.execute("INSERT INTO recs VALUES (?, ?, ?)", (stream, seq, os.urandom(200)))
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    return elapsed / appends


async def store_and_ledger(tmp: Path, appends: int, round_no: int) -> tuple[float, float]:
    """Seconds per append through SqlLedgerStore alone, then through the Ledger."""
    db = await open_database(f"sqlite+aiosqlite:///{tmp}/circle.db")
    try:
        stream = f"store-{round_no}"
        previous: SignedHead | None = None
        start = time.perf_counter()
        for seq in range(1, appends + 1):
            record = StoredRecord(stream, seq, "k1", os.urandom(12), os.urandom(200),
                                  os.urandom(32))
            head = SignedHead(stream, seq, record.mac, os.urandom(64))
            await db.ledger.append([record], head, previous)
            previous = head
        store = (time.perf_counter() - start) / appends

        ledger = Ledger(db.ledger, KeyRing.load_or_create(tmp / "keys.json"))
        stream = f"ledger-{round_no}"
        start = time.perf_counter()
        for seq in range(1, appends + 1):
            await ledger.append(stream, seq, [RECORD])
        full = (time.perf_counter() - start) / appends
    finally:
        await db.close()
    return store, full


async def main_async(args: argparse.Namespace) -> None:
    floor, store, full = [], [], []
    with tempfile.TemporaryDirectory(prefix="circle-bench-append-") as tmp:
        for n in range(args.repeat):
            floor.append(sqlite_floor(Path(tmp) / "floor.db", args.appends))
            s, f = await store_and_ledger(Path(tmp), args.appends, n)
            store.append(s)
            full.append(f)
    f, s, led = median(floor), median(store), median(full)
    print(f"bench.ledger_append: {args.appends} appends x {args.repeat} rounds, one record "
          f"per append, SQLite WAL synchronous=FULL, medians\n{machine_note()}\n")
    print(table(["layer", "ms/append", "appends/s", "vs sqlite3"], [
        ["sqlite3 (stdlib, fsync floor)", f"{f * 1000:.2f}", f"{1 / f:.0f}", "1.00"],
        ["SqlLedgerStore (SQLAlchemy async)", f"{s * 1000:.2f}", f"{1 / s:.0f}", ratio(s, f)],
        ["Ledger.append (+ crypto)", f"{led * 1000:.2f}", f"{1 / led:.0f}", ratio(led, f)],
    ]))
    print(f"\nstore/sqlite3 {ratio(s, f)} (async DB stack), ledger/store {ratio(led, s)} "
          "(crypto + JSON)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--appends", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=3)
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
