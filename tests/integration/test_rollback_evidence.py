"""Rollback evidence: what the hash chains cannot see, the checkpoints outside the database do.

A stream deleted whole (records and head) and a database restored from an older copy are
both self-consistent: `Ledger.verify` alone passes them. Each case here does it the way
someone with write access to the database could (SQL deletes, putting an older copy back),
first on both backends through the ledger and checkpoint writer directly, then against a
real `circle serve` and `circle verify`.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import Row, delete, insert, select

from server.checkpoints.compare import (
    DELETED,
    FORKED,
    MOVED_BACK,
    ROLLED_BACK,
    TAMPERED,
    CheckpointCheck,
    check,
)
from server.checkpoints.writer import CheckpointWriter
from server.clock import WallClock
from server.crypto.keyring import KeyRing
from server.ledger import AUDIT_STREAM, Ledger
from server.storage.database import Database
from server.storage.schema import ledger_heads, ledger_records

from .db_fixtures import *  # noqa: F403  (fixtures, found by pytest by name)
from .server_fixtures import Api, CircleServer


def _events(first: int, last: int, tag: str = "") -> list[dict[str, Any]]:
    return [{"type": "event", "n": n, "tag": tag} for n in range(first, last + 1)]


@contextlib.asynccontextmanager
async def _node(
    database: Database, keyring: KeyRing, path: Path, name: str = "node-a"
) -> AsyncIterator[Ledger]:
    """A ledger whose appends reach a checkpoint writer on `path`, closed at the end."""
    writer = CheckpointWriter([path], keyring, name, WallClock())
    ledger = Ledger(database.ledger, keyring, on_head=writer.saw)
    await writer.start(ledger)
    try:
        yield ledger
    finally:
        await writer.close()


async def _check(database: Database, keyring: KeyRing, *paths: Path) -> CheckpointCheck:
    """What `circle verify` finds, with a ledger that has cached nothing."""
    return await check(Ledger(database.ledger, keyring), paths, keyring.ledger_public_key)


def _found(result: CheckpointCheck) -> list[tuple[str, str | None]]:
    return [(f.kind, f.stream) for f in result.findings]


async def _head_row(database: Database, stream: str) -> Row[Any]:
    async with database.engine.connect() as conn:
        return (await conn.execute(
            select(ledger_heads).where(ledger_heads.c.stream == stream))).one()


async def _put_back(database: Database, old_head: Row[Any]) -> None:
    """What restoring an older copy does to one stream: later records gone, old head back."""
    stream = old_head.stream
    async with database.engine.begin() as conn:
        await conn.execute(delete(ledger_records).where(
            ledger_records.c.stream == stream, ledger_records.c.seq > old_head.seq))
        await conn.execute(delete(ledger_heads).where(ledger_heads.c.stream == stream))
        await conn.execute(insert(ledger_heads).values(**old_head._mapping))


async def _delete_stream(database: Database, stream: str) -> None:
    async with database.engine.begin() as conn:
        await conn.execute(delete(ledger_records).where(ledger_records.c.stream == stream))
        await conn.execute(delete(ledger_heads).where(ledger_heads.c.stream == stream))


# -- the ledger and the writer, on SQLite and PostgreSQL ----------------------------------


async def test_a_clean_ledger_agrees_with_its_checkpoint(
    database: Database, keyring: KeyRing, tmp_path: Path
) -> None:
    path = tmp_path / "checkpoints.json"
    async with _node(database, keyring, path) as ledger:
        await ledger.append("s_a", 1, _events(1, 3))
        await ledger.append("s_b", 1, _events(1, 2))
        await ledger.append_audit({"type": "attendance_exported"})
    result = await _check(database, keyring, path)
    assert result.ok and result.findings == [] and result.warnings == []
    assert set(result.sources[0].checkpoint.streams) == {"s_a", "s_b", AUDIT_STREAM}


async def test_a_stream_deleted_whole_is_found(
    database: Database, keyring: KeyRing, tmp_path: Path
) -> None:
    path = tmp_path / "checkpoints.json"
    async with _node(database, keyring, path) as ledger:
        await ledger.append("s_a", 1, _events(1, 3))
        await ledger.append("s_b", 1, _events(1, 2))
    await _delete_stream(database, "s_a")
    result = await _check(database, keyring, path)
    assert result.report.ok, "the chains alone cannot see a stream that is gone"
    assert _found(result) == [(DELETED, "s_a")]
    assert result.findings[0].files == (path,)
    assert "saw it at seq 3" in result.findings[0].detail


async def test_an_older_copy_put_back_is_found_rolled_back(
    database: Database, keyring: KeyRing, tmp_path: Path
) -> None:
    path = tmp_path / "checkpoints.json"
    async with _node(database, keyring, path) as ledger:
        await ledger.append("s_a", 1, _events(1, 3))
        await ledger.append_audit({"type": "attendance_exported"})
        old_session, old_audit = (await _head_row(database, "s_a"),
                                  await _head_row(database, AUDIT_STREAM))
        await ledger.append("s_a", 4, _events(4, 6))
        await ledger.append_audit({"type": "attendance_exported"})  # the disclosure to hide
    for old in (old_session, old_audit):
        await _put_back(database, old)
    result = await _check(database, keyring, path)
    assert result.report.ok, "an older copy is a consistent ledger"
    assert _found(result) == [(ROLLED_BACK, "audit"), (ROLLED_BACK, "s_a")]
    assert [f.detail for f in result.findings] == [
        "stream audit: rolled back (db at seq 1, checkpoint saw 2)",
        "stream s_a: rolled back (db at seq 3, checkpoint saw 6)",
    ]


@pytest.mark.parametrize(("written_again_to", "detail"), [
    (6, "forked: the database's head at seq 6 is not the one the checkpoint saw"),
    (8, "forked at seq 6: the database's record there is not the one the checkpoint saw "
        "(db now at seq 8"),
])
async def test_a_rolled_back_stream_written_again_is_forked(
    database: Database, keyring: KeyRing, tmp_path: Path, written_again_to: int, detail: str
) -> None:
    """After the rollback another writer (a node without this file) fills the seqs again."""
    path = tmp_path / "checkpoints.json"
    async with _node(database, keyring, path) as ledger:
        await ledger.append("s_a", 1, _events(1, 3))
        old = await _head_row(database, "s_a")
        await ledger.append("s_a", 4, _events(4, 6))
    await _put_back(database, old)
    await Ledger(database.ledger, keyring).append("s_a", 4, _events(4, written_again_to, "new"))
    result = await _check(database, keyring, path)
    assert result.report.ok
    assert _found(result) == [(FORKED, "s_a")]
    assert detail in result.findings[0].detail


async def test_a_server_that_finds_its_stream_moved_back_keeps_the_evidence(
    database: Database, keyring: KeyRing, tmp_path: Path
) -> None:
    """Appends going on past the old head must not wash the rollback out of the checkpoint."""
    path = tmp_path / "checkpoints.json"
    writer = CheckpointWriter([path], keyring, "node-a", WallClock())
    ledger = Ledger(database.ledger, keyring, on_head=writer.saw)
    await writer.start(ledger)
    await ledger.append("s_a", 1, _events(1, 3))
    old = await _head_row(database, "s_a")
    await ledger.append("s_a", 4, _events(4, 6))
    await _put_back(database, old)
    # The same server goes on (a ledger with nothing cached, as after a restart).
    restarted = Ledger(database.ledger, keyring, on_head=writer.saw)
    await restarted.append("s_a", 4, _events(4, 9, "after the rollback"))
    await writer.close()
    result = await _check(database, keyring, path)
    assert _found(result) == [(FORKED, "s_a"), (MOVED_BACK, "s_a")]
    assert "found the database at seq 3, below seq 6" in result.findings[1].detail


async def test_each_nodes_file_accounts_for_the_streams_it_wrote(
    database: Database, keyring: KeyRing, tmp_path: Path
) -> None:
    """Two nodes on one database, a file each: verify adds up what it is given."""
    file_a, file_b = tmp_path / "node-a" / "checkpoints.json", tmp_path / "node-b" / "cp.json"
    async with _node(database, keyring, file_a, "node-a") as node_a, \
            _node(database, keyring, file_b, "node-b") as node_b:
        await node_a.append("s_a", 1, _events(1, 2))
        await node_b.append("s_b", 1, _events(1, 2))
        old_b = await _head_row(database, "s_b")
        await node_b.append("s_b", 3, _events(3, 4))
        await node_a.append_audit({"type": "api_key_created"})
        await node_b.append_audit({"type": "attendance_exported"})
    await _delete_stream(database, "s_a")
    await _put_back(database, old_b)

    both = await _check(database, keyring, file_a, file_b)
    assert [(f.kind, f.stream, f.files) for f in both.findings] == [
        (DELETED, "s_a", (file_a,)), (ROLLED_BACK, "s_b", (file_b,)),
    ]
    assert _found(await _check(database, keyring, file_a)) == [(DELETED, "s_a")]
    assert _found(await _check(database, keyring, file_b)) == [(ROLLED_BACK, "s_b")]


async def test_an_edited_checkpoint_is_reported_as_tampered(
    database: Database, keyring: KeyRing, tmp_path: Path
) -> None:
    path = tmp_path / "checkpoints.json"
    async with _node(database, keyring, path) as ledger:
        await ledger.append("s_a", 1, _events(1, 3))
    doc = json.loads(path.read_text())
    doc["streams"]["s_a"]["seq"] = 1  # to make a later rollback to seq 1 look fine
    path.write_text(json.dumps(doc))
    result = await _check(database, keyring, path)
    assert not result.ok and result.sources == []
    assert _found(result) == [(TAMPERED, None)]
    assert result.findings[0].detail.startswith(f"{path}: signature does not verify")


# -- a real server and `circle verify` ----------------------------------------------------


@pytest.fixture
def srv(tmp_path: Path) -> Iterator[CircleServer]:
    """A signaling-only server (not started) whose checkpoints also go to a second disk."""
    server = CircleServer(tmp_path / "data", env={
        "CIRCLE_MEDIA": "false",
        "CIRCLE_CHECKPOINT_COPY": str(tmp_path / "second-disk" / "checkpoints.json"),
    })
    server.api_key = server.create_key()
    yield server
    server.stop()


def _files(srv: CircleServer) -> list[Path]:
    return [srv.data_dir / "checkpoints.json",
            srv.data_dir.parent / "second-disk" / "checkpoints.json"]


async def _while_running(srv: CircleServer, *, sessions: list[str] | None = None,
                         new: int = 0) -> list[str]:
    """Start `srv`, invite someone to each of `sessions`, create `new` sessions, stop
    cleanly (the last checkpoint is written at the stop); returns the new session ids."""
    srv.start()
    try:
        async with aiohttp.ClientSession() as http:
            api = Api(srv, http)
            status, _ = await api.request("GET", "/healthz")  # answered once start-up is done
            assert status == 200
            for sid in sessions or []:
                await api.invite(sid, "c9", "Late Comer")
            return [await api.create_session() for _ in range(new)]
    finally:
        srv.stop()


def _head_seq(srv: CircleServer, stream: str) -> int:
    with contextlib.closing(sqlite3.connect(srv.data_dir / "circle.db")) as db:
        return int(db.execute("SELECT seq FROM ledger_heads WHERE stream = ?",
                              (stream,)).fetchone()[0])


def _copy_database(source: Path, target: Path) -> None:
    """A consistent copy (SQLite's backup API), as an operator takes or restores one."""
    with contextlib.closing(sqlite3.connect(source)) as src, \
            contextlib.closing(sqlite3.connect(target)) as dst:
        src.backup(dst)


def _verify_ok(srv: CircleServer, files: int = 2) -> bool:
    """`circle verify` passes and agrees with the checkpoint files (asserts on failure)."""
    done = srv.cli("verify")
    assert done.returncode == 0, done.stderr
    assert "ledger OK: " in done.stdout
    assert f"agrees with {files} checkpoint file(s)" in done.stdout
    return True


async def test_circle_verify_finds_an_older_copy_put_back_and_a_deleted_stream(
    srv: CircleServer, tmp_path: Path
) -> None:
    first, second = await _while_running(srv, new=2)
    _verify_ok(srv)
    older = tmp_path / "nightly-backup.db"
    _copy_database(srv.data_dir / "circle.db", older)
    at_backup = _head_seq(srv, first)
    (third,) = await _while_running(srv, sessions=[first], new=1)
    _verify_ok(srv)
    newest = tmp_path / "newest.db"
    _copy_database(srv.data_dir / "circle.db", newest)

    _copy_database(older, srv.data_dir / "circle.db")
    restored = srv.cli("verify")
    assert restored.returncode == 1
    primary, copy = _files(srv)
    assert (f"ROLLED BACK: stream {first}: rolled back (db at seq {at_backup}, checkpoint saw "
            f"{at_backup + 1}) (checkpoint {primary}, {copy})") in restored.stderr
    assert f"STREAM DELETED: stream {third}: " in restored.stderr
    assert f"stream {second}:" not in restored.stderr, "untouched since the backup"
    assert "ledger OK" not in restored.stdout

    _copy_database(newest, srv.data_dir / "circle.db")
    _verify_ok(srv)
    with contextlib.closing(sqlite3.connect(srv.data_dir / "circle.db")) as db:
        db.execute("DELETE FROM ledger_records WHERE stream = ?", (second,))
        db.execute("DELETE FROM ledger_heads WHERE stream = ?", (second,))
        db.commit()
    deleted = srv.cli("verify")
    assert deleted.returncode == 1
    assert f"STREAM DELETED: stream {second}: the checkpoint saw it at seq " in deleted.stderr
    assert "1 finding(s) against the checkpoints" in deleted.stderr


async def test_a_deleted_checkpoint_file_is_a_warning_not_silence(srv: CircleServer) -> None:
    await _while_running(srv, new=1)
    for path in _files(srv):
        path.unlink()
    unchecked = srv.cli("verify")
    assert unchecked.returncode == 3, unchecked.stderr
    assert "ledger OK" in unchecked.stdout
    for path in _files(srv):
        assert f"WARNING: no checkpoint at {path}: " in unchecked.stderr

    await _while_running(srv)
    assert "no checkpoint file at" in srv.log_text(), "the server says it starts a new one"
    _verify_ok(srv)


async def test_a_server_started_on_an_older_copy_keeps_the_evidence(
    srv: CircleServer, tmp_path: Path
) -> None:
    (sid,) = await _while_running(srv, new=1)
    older = tmp_path / "older.db"
    _copy_database(srv.data_dir / "circle.db", older)
    await _while_running(srv, sessions=[sid])
    _copy_database(older, srv.data_dir / "circle.db")
    await _while_running(srv, sessions=[sid, sid])  # writes over the rolled-back seqs
    assert f"ledger stream {sid} was moved back under this server" in srv.log_text()
    done = srv.cli("verify")
    assert done.returncode == 1
    assert f"FORKED: stream {sid}: forked at seq " in done.stderr
    assert f"MOVED BACK: stream {sid}: while the server ran it found the database" in done.stderr


async def test_a_tampered_checkpoint_stops_the_server_and_verify_names_it(
    srv: CircleServer,
) -> None:
    await _while_running(srv, new=1)
    primary = _files(srv)[0]
    doc = json.loads(primary.read_text())
    doc["counter"] += 100
    primary.write_text(json.dumps(doc))
    with contextlib.suppress(RuntimeError):  # it may exit before it records its port
        srv.start()
    assert srv.process is not None and srv.process.wait(30) == 1
    assert "signature does not verify" in srv.log_text()
    assert "Traceback" not in srv.log_text(), "a refusal in plain words"
    assert primary.read_text() == json.dumps(doc), "the evidence is left as it was"
    done = srv.cli("verify")
    assert done.returncode == 1
    assert f"CHECKPOINT TAMPERED: {primary}: signature does not verify" in done.stderr


async def test_a_crash_never_makes_a_false_alarm(srv: CircleServer) -> None:
    """kill -9 may lose the last second of marks; the database is then ahead, which is fine."""
    srv.start()
    async with aiohttp.ClientSession() as http:
        api = Api(srv, http)
        sid = await api.create_session()
        for n in range(5):
            await api.invite(sid, f"c{n}", "Ann Lee")
    srv.kill()
    assert _verify_ok(srv), "a mark lost to the crash is not a rollback"
    await _while_running(srv, sessions=[sid])
    assert _verify_ok(srv), "and the restarted server's appends agree again"
