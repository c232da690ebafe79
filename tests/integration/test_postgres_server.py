"""The whole server on a real PostgreSQL: a session, a SIGKILL restart, an export, verify."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import create_async_engine

from client.participant import CircleClient

from .db_fixtures import PG_URL, postgres_unavailable
from .server_fixtures import Api, CircleServer, settle

pytestmark = [pytest.mark.integration, pytest.mark.postgres]


@pytest.fixture
async def pg_database() -> AsyncIterator[str]:
    """A fresh database of this test's own on the test PostgreSQL, dropped afterwards."""
    name = f"circle_e2e_{secrets.token_hex(5)}"
    admin = create_async_engine(PG_URL, isolation_level="AUTOCOMMIT", connect_args={"timeout": 5})
    try:
        async with admin.connect() as conn:
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        await admin.dispose()
        postgres_unavailable(f"{PG_URL}: {type(exc).__name__}: {exc}")
    yield make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    async with admin.connect() as conn:
        await conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    await admin.dispose()


async def test_server_on_postgres_survives_sigkill(pg_database: str, tmp_path: Path) -> None:
    env = {"CIRCLE_DATABASE_URL": pg_database, "CIRCLE_RECONNECT_GRACE_S": "30",
           "CIRCLE_MEDIA": "false"}
    srv = CircleServer(tmp_path / "data", env=env)
    srv.api_key = srv.create_key()
    srv.start()
    try:
        async with aiohttp.ClientSession() as http:
            api = Api(srv, http)
            sid = await api.create_session()
            therapist = await api.join(sid, "t1", "Dr Kim Park", role="therapist")
            ann = await api.join(sid, "c1", "Ann Lee")
            await therapist.wait_for(lambda s: len(s["waiting"]) == 1)
            await therapist.call("admit", {"participant_id": "c1"})
            await ann.wait_for(lambda s: s["you"]["status"] == "admitted")
            token = ann._token
            for c in (therapist, ann):
                c.sio.reconnection = False
            srv.kill()
            await settle(therapist, ann)
            srv.start()
            back = CircleClient(srv.url, token)
            try:
                await back.connect()
                view = await back.wait_for(lambda s: s["you"]["status"] == "admitted")
                assert view["you"]["room"] == "main"
            finally:
                await settle(back)
            status, body = await api.request(
                "GET", api.attendance_query(sid, session=sid))
            assert status == 200 and "Ann Lee" in body
    finally:
        srv.stop()
    verified = srv.cli("verify")
    assert verified.returncode == 0, verified.stderr
    assert "ledger OK" in verified.stdout
