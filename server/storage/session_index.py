"""Which sessions fall on which service dates, for attendance date ranges.

It holds only ids and times, never PHI: what happened in a session lives in the encrypted
ledger, and this index just says which ledger streams an export for a date range must read.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from server.storage.schema import session_index


class SessionIndex:
    """session_id -> (service_date, starts_at), queried by date range."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def index_session(
        self, session_id: str, starts_at: datetime, service_date: date | None = None
    ) -> None:
        """Record (or reschedule) a session.

        `service_date` defaults to the calendar date of `starts_at` in the timezone it is
        given in, so pass `starts_at` in the clinic's local zone (or the date explicitly):
        a 7 pm session in California is on the next day in UTC but billed on this one.
        """
        if starts_at.tzinfo is None:
            raise ValueError("starts_at must be timezone-aware")
        values = {
            "service_date": service_date or starts_at.date(),
            "starts_at": starts_at,
        }
        async with self._engine.begin() as conn:
            moved = await conn.execute(
                update(session_index)
                .where(session_index.c.session_id == session_id)
                .values(**values)
            )
            if moved.rowcount == 0:
                await conn.execute(insert(session_index).values(session_id=session_id, **values))

    async def sessions_between(self, from_date: date, to_date: date) -> list[str]:
        """Ids of sessions whose service date is in [from_date, to_date], by start time."""
        query = (
            select(session_index.c.session_id)
            .where(session_index.c.service_date.between(from_date, to_date))
            .order_by(session_index.c.starts_at, session_index.c.session_id)
        )
        async with self._engine.connect() as conn:
            return [str(s) for s in (await conn.execute(query)).scalars()]
