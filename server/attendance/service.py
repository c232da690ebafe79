"""Attendance exports over a date range: load ledgers, project, filter, sort.

Pure apart from the two callables it is given (a ledger's `load` and the session index's
`sessions_between`), so the HTTP handler and the CLI share one code path and the whole
export is tested with in-memory fakes. It does not record the export itself: the caller
(HTTP/CLI) knows who asked and writes that audit event.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any, Final

from server.attendance.projection import project
from server.attendance.rows import AttendanceRow, row_order
from signaling.core import events as e

LoadEvents = Callable[[str], Awaitable[list[Mapping[str, Any]]]]
SessionsBetween = Callable[[date, date], Awaitable[list[str]]]

INDEX_MARGIN: Final = timedelta(days=1)
"""How far the index query is widened on each side of the requested range.

The index may hold a session's date in another zone than the clinic's (UTC, say); no zone
is a day or more away from UTC, so asking for one more day each side and then filtering on
the projected service date (in the clinic's zone) never misses or wrongly includes one.
"""

MAX_CONCURRENT_LOADS: Final = 8
"""Ledger loads in flight at once: parallel enough to be quick, bounded for the database."""


class AttendanceService:
    """Builds attendance exports from the ledger and the session index."""

    def __init__(
        self,
        load_events: LoadEvents,
        sessions_between: SessionsBetween,
        tz: tzinfo = UTC,
        late_after: timedelta = timedelta(minutes=10),
        early_by: timedelta = timedelta(minutes=10),
    ) -> None:
        self._load = load_events
        self._between = sessions_between
        self._tz = tz
        self._late_after = late_after
        self._early_by = early_by

    async def export(
        self,
        from_date: date,
        to_date: date,
        session_id: str | None = None,
        participant_id: str | None = None,
        *,
        as_of: datetime,
    ) -> list[AttendanceRow]:
        """Rows whose service date is in [from_date, to_date] (inclusive), sorted.

        Order: service date, session id, therapists before clients, participant id
        (`rows.row_order`). With `session_id`, only that session is read (the index is not
        consulted, so a session missing from it can still be exported), and the date range
        still applies. A session with no records, or without `SessionCreated`, yields no
        rows. Records of types this build does not know (an audit record, or an event of
        a newer version) are skipped: attendance depends only on the known core events.
        A malformed record of a known type raises ValueError rather than exporting a
        silently wrong row.
        """
        if to_date < from_date:
            raise ValueError("to_date is before from_date")
        if session_id is not None:
            ids = [session_id]
        else:
            ids = list(
                dict.fromkeys(await self._between(from_date - INDEX_MARGIN, to_date + INDEX_MARGIN))
            )
        gate = asyncio.Semaphore(MAX_CONCURRENT_LOADS)

        async def rows_of(sid: str) -> list[AttendanceRow]:
            async with gate:
                records = await self._load(sid)
            return self._project(records, as_of)

        per_session = await asyncio.gather(*(rows_of(sid) for sid in ids))
        rows = [
            row
            for rows in per_session
            for row in rows
            if from_date <= row.service_date <= to_date
            and (session_id is None or row.session_id == session_id)
            and (participant_id is None or row.participant_id == participant_id)
        ]
        rows.sort(key=row_order)
        return rows

    def _project(self, records: list[Mapping[str, Any]], as_of: datetime) -> list[AttendanceRow]:
        known = e.event_types()
        events = [e.from_record(r) for r in records if r.get("type") in known]
        if not any(isinstance(ev, e.SessionCreated) for ev in events):
            return []
        return project(events, as_of, self._tz, self._late_after, self._early_by)
