"""The parts of one running Circle process, built once and handed to the HTTP handlers."""

from __future__ import annotations

import logging
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
from signaling.edge.gateway import Gateway
from signaling.edge.runtime import SessionHub

log = logging.getLogger("circle.services")


@dataclass
class Services:
    settings: Settings
    db: Database
    keyring: KeyRing
    ledger: Ledger
    hub: SessionHub
    gateway: Gateway
    tokens: JoinTokenService
    api_keys: ApiKeys
    attendance: AttendanceService
    metrics: Metrics
    clock: Clock
    """The server's wall clock (see server.clock): every "now" a handler needs."""

    async def database_ok(self) -> bool:
        try:
            async with self.db.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except Exception:
            log.exception("database health check failed")
            return False
        return True
