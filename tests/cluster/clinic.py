"""A clinic of real nodes: `circle serve` processes sharing a PostgreSQL database of the
test's own, a redis-server of the test's own and one keys file.

Each node has its own data dir (the serve lock is per node) and binds 127.0.0.1 on a port
the kernel picks. Leases are short, so a failover takes seconds, not the default ten.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from client.participant import CircleClient, MediaOptions
from tests.ci import unavailable
from tests.integration.server_fixtures import GRACE_S, Api, CircleServer

from .redis_server import RedisServer, redis_server

PG_URL = os.environ.get("CIRCLE_TEST_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
LEASE_TTL_S = 3.0
"""A dead node's sessions are claimable this long after its last renewal."""


@contextlib.asynccontextmanager
async def own_database() -> AsyncIterator[str]:
    """A fresh PostgreSQL database for one clinic, dropped afterwards."""
    name = f"circle_clinic_{secrets.token_hex(5)}"
    admin = create_async_engine(PG_URL, isolation_level="AUTOCOMMIT",
                                connect_args={"timeout": 5})
    try:
        async with admin.connect() as conn:
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        await admin.dispose()
        unavailable(f"PostgreSQL unavailable ({type(exc).__name__}: {exc}); "
                    "set CIRCLE_TEST_PG_URL")
    try:
        yield make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()


@dataclass
class Clinic:
    root: Path
    redis: RedisServer
    database_url: str
    nodes: list[CircleServer] = field(default_factory=list)
    http: aiohttp.ClientSession | None = None
    admin_key: str = ""
    clients: list[CircleClient] = field(default_factory=list)

    def env(self, **extra: str) -> dict[str, str]:
        return {
            "CIRCLE_DATABASE_URL": self.database_url,
            "CIRCLE_REDIS_URL": self.redis.url,
            "CIRCLE_KEYS_FILE": str(self.root / "keys.json"),
            "CIRCLE_LEASE_TTL_S": str(LEASE_TTL_S),
            "CIRCLE_RECONNECT_GRACE_S": str(GRACE_S * 10),
            "CIRCLE_MEDIA_WORKERS": "1",
            **extra,
        }

    def add_node(self, **extra: str) -> CircleServer:
        home = self.root / f"node{len(self.nodes)}"
        home.mkdir(parents=True, exist_ok=True)
        node = CircleServer(home / "data", env=self.env(**extra))
        if not self.nodes:
            # The first node's CLI makes the shared keys file and the clinic's API keys.
            self.admin_key = node.create_key(role="admin", name="cluster-tests")
        node.api_key = self.admin_key
        node.start()
        self.nodes.append(node)
        return node

    def api(self, node: CircleServer) -> Api:
        assert self.http is not None
        return Api(node, self.http)

    async def join(self, via: CircleServer | list[CircleServer], session_id: str, pid: str,
                   name: str, role: str = "client",
                   media: MediaOptions | None = None) -> CircleClient:
        """A participant whose invite comes from the first node and who connects to `via`
        (a list: the URLs it may use, in order, as `python -m client` takes them)."""
        order = via if isinstance(via, list) else [via]
        invite = await self.api(order[0]).invite(session_id, pid, name, role)
        client = CircleClient([n.url for n in order], invite["token"], media=media)
        await client.connect()
        self.clients.append(client)
        return client


@contextlib.asynccontextmanager
async def clinic(root: Path, nodes: int = 2, **extra: str) -> AsyncIterator[Clinic]:
    async with redis_server(root / "redis") as redis, own_database() as database_url:
        place = Clinic(root, redis, database_url)
        try:
            for _ in range(nodes):
                place.add_node(**extra)
            async with aiohttp.ClientSession() as http:
                place.http = http
                yield place
                for client in place.clients:
                    with contextlib.suppress(Exception):
                        await client.close()
        finally:
            for node in place.nodes:
                node.kill()
