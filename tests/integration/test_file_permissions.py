"""What the server and `circle` leave on disk is its owner's only.

The data dir is made 0700 and a looser one refused (with the chmod to run); the SQLite file
and its -wal/-shm, the keys and the checkpoints are 0600; `circle export --out` writes an
owner-only file, and the export still carries the 42 CFR Part 2 notice.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from .server_fixtures import Api, CircleServer

SIGNALING_ONLY = {"CIRCLE_MEDIA": "false"}


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@contextlib.asynccontextmanager
async def _running(srv: CircleServer) -> AsyncIterator[Api]:
    srv.start()
    try:
        async with aiohttp.ClientSession() as http:
            api = Api(srv, http)
            status, _ = await api.request("GET", "/healthz")  # answered once start-up is done
            assert status == 200
            yield api
    finally:
        srv.stop()


def _sqlite_files(data_dir: Path) -> list[Path]:
    return [p for p in (data_dir / name for name in ("circle.db", "circle.db-wal",
                                                     "circle.db-shm")) if p.exists()]


async def test_a_fresh_start_leaves_only_owner_only_files(tmp_path: Path) -> None:
    """`circle serve` on a data dir that does not exist yet (nothing made it before)."""
    srv = CircleServer(tmp_path / "data", env=SIGNALING_ONLY)
    async with _running(srv):
        data = srv.data_dir
        assert _mode(data) == 0o700
        files = [*_sqlite_files(data), data / "keys.json", data / "checkpoints.json"]
        assert {p.name: _mode(p) for p in files} == {p.name: 0o600 for p in files}
        assert (data / "circle.db-wal").exists(), "WAL mode: the -wal file gets 0600 too"


async def test_a_database_file_made_looser_before_is_made_owner_only(tmp_path: Path) -> None:
    srv = CircleServer(tmp_path / "data", env=SIGNALING_ONLY)
    srv.api_key = srv.create_key()  # the CLI makes the database before any server runs
    (srv.data_dir / "circle.db").chmod(0o644)
    async with _running(srv) as api:
        await api.create_session()
        assert {p.name: _mode(p) for p in _sqlite_files(srv.data_dir)} == {
            p.name: 0o600 for p in _sqlite_files(srv.data_dir)}
    assert "circle.db was mode 644: made it 0600" in srv.log_text()


@pytest.mark.parametrize("mode", [0o755, 0o750, 0o701])
def test_a_data_dir_group_or_others_can_open_is_refused(tmp_path: Path, mode: int) -> None:
    data = tmp_path / "data"
    data.mkdir()
    data.chmod(mode)
    srv = CircleServer(data, env=SIGNALING_ONLY)
    refused = srv.cli("serve", "--port", "0", timeout=60)
    assert refused.returncode == 1
    assert f"data dir {data} is accessible by group or others" in refused.stderr
    assert f"run chmod 700 {data}" in refused.stderr
    assert not (data / "keys.json").exists() and not (data / "circle.db").exists(), \
        "refused before anything secret is made there"
    assert _mode(data) == mode, "never changed behind the operator's back"


async def test_an_export_file_is_owner_only_and_carries_the_notice(tmp_path: Path) -> None:
    srv = CircleServer(tmp_path / "data", env=SIGNALING_ONLY)
    srv.api_key = srv.create_key()
    async with _running(srv) as api:
        sid = await api.create_session()
        await api.invite(sid, "c1", "Ann Lee")
        day = api.service_date(sid)
    as_json = tmp_path / "exports" / "attendance.json"
    as_json.parent.mkdir()
    done = srv.cli("export", "--from", day, "--to", day, "--format", "json",
                   "--out", str(as_json), check=True)
    assert _mode(as_json) == 0o600
    assert "42 CFR part 2" in json.loads(as_json.read_text())["notice"]
    assert "NOTICE: " in done.stderr

    as_csv = tmp_path / "exports" / "attendance.csv"
    as_csv.write_text("an older export, left readable\n")
    as_csv.chmod(0o644)
    done = srv.cli("export", "--from", day, "--to", day, "--out", str(as_csv), check=True)
    assert _mode(as_csv) == 0o600
    assert as_csv.read_text().startswith("session_id,") and "older export" not in \
        as_csv.read_text()
    assert "NOTICE: This information has been disclosed to you" in done.stderr
    with contextlib.closing(sqlite3.connect(srv.data_dir / "circle.db")) as db:
        exports = db.execute("SELECT count(*) FROM ledger_records WHERE stream = 'audit'")
        assert exports.fetchone()[0] == 3, "the key, then each export, audited"
