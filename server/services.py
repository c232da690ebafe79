"""The parts of one running Circle process, built once and handed to the HTTP handlers."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sqlalchemy import text

from server.apikeys import ApiKeys
from server.attendance.service import AttendanceService
from server.auth.tokens import JoinTokenService
from server.clock import Clock
from server.config import Settings
from server.crypto.keyring import KeyRing
from server.ledger import Ledger
from server.metrics import Metrics
from server.storage.database import Database
from signaling.cluster.node import ClusterNode
from signaling.edge.gateway import Gateway
from signaling.edge.media import MediaCoordinator

log = logging.getLogger("circle.services")


@dataclass
class Services:
    settings: Settings
    db: Database
    keyring: KeyRing
    ledger: Ledger
    sessions: ClusterNode
    """Every session's work, routed to its owner (this node or another)."""
    gateway: Gateway
    media: MediaCoordinator
    tokens: JoinTokenService
    api_keys: ApiKeys
    attendance: AttendanceService
    metrics: Metrics
    clock: Clock
    """The server's wall clock (see server.clock): every "now" a handler needs."""
    redis_ok: Callable[[], Awaitable[bool | None]]
    """Whether Redis answers (None: one node, no Redis configured)."""

    async def database_ok(self) -> bool:
        try:
            async with self.db.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except Exception:
            log.exception("database health check failed")
            return False
        return True
