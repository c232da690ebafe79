"""Attendance exports: choose the sessions, read their rows, filter, sort.

Pure apart from what it is given: the session index's `sessions_between` and a `RowReader`
(by default one ledger `load` per session; in the server, `cache.CachedRows`, which reads
streams in batches and keeps the sealed rows of ended sessions), so the HTTP handler and the
CLI share one code path and the whole export is tested with in-memory fakes. It does not
record the export itself: the caller (HTTP/CLI) knows who asked and writes that audit event.

What a request means (docs/records.md):

* `from`/`to` bound the service date (inclusive, in the clinic's zone), each on its own;
* `session` alone: every row of that session, whatever its date (only its stream is read);
* `participant` alone: that participant's rows over all time; every indexed session is
  read, which the row cache makes about 0.3 ms a session once warm (docs/records.md);
* neither: both dates are needed, at most `MAX_RANGE_DAYS` apart.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from decimal import Decimal
from functools import cached_property
from typing import Any, Final, Protocol

from server.attendance.media import VIDEO_SHARE
from server.attendance.projection import project
from server.attendance.rows import AttendanceRow, row_order
from signaling.core import events as e

LoadEvents = Callable[[str], Awaitable[list[Mapping[str, Any]]]]
SessionsBetween = Callable[[date, date], Awaitable[list[str]]]
Progress = Callable[[int, int], None]
"""`progress(sessions_read, sessions_to_read)`, after each batch of an export."""

INDEX_MARGIN: Final = timedelta(days=1)
"""How far the index query is widened on each side of the requested range.

The index may hold a session's date in another zone than the clinic's (UTC, say); no zone
is a day or more away from UTC, so asking for one more day each side and then filtering on
the projected service date (in the clinic's zone) never misses or wrongly includes one.
"""

MAX_CONCURRENT_LOADS: Final = 8
"""Ledger loads in flight at once (per-session reader): quick, and bounded for the database."""

MAX_RANGE_DAYS: Final = 366
"""The longest date range an export without a session or participant may ask for: a year
(a leap year's), enough for any billing or audit period; longer is asked for in pieces."""

BATCH_SESSIONS: Final = 100
"""Sessions read per batch: bounds memory and paces progress reports."""

LATE_AFTER: Final = timedelta(minutes=10)
EARLY_BY: Final = timedelta(minutes=10)


@dataclass(frozen=True)
class Rules:
    """The clinic's settings a projection depends on (docs/records.md, "Status rules")."""

    tz: tzinfo = UTC
    """Decides the service date."""
    late_after: timedelta = LATE_AFTER
    """First admitted more than this after the scheduled start: `late`."""
    early_by: timedelta = EARLY_BY
    """Last presence ended more than this before the end: `left_early`."""
    video_share: Decimal = VIDEO_SHARE
    """Video flowed for at least this share of the time present: `audio-video`."""

    @cached_property
    def key(self) -> str:
        """What a cached projection must have been made with to be reused under these rules."""
        zone = getattr(self.tz, "key", None) or str(self.tz)
        return (f"tz={zone};late={self.late_after.total_seconds()};"
                f"early={self.early_by.total_seconds()};video={self.video_share}")

    def project(self, records: Sequence[Mapping[str, Any]], as_of: datetime) -> list[AttendanceRow]:
        """One session's rows from its ledger records (unknown record types skipped).

        A session without `SessionCreated` yields no rows; a malformed record of a known
        type raises ValueError rather than exporting a silently wrong row.
        """
        known = e.event_types()
        events = [e.from_record(r) for r in records if r.get("type") in known]
        if not any(isinstance(ev, e.SessionCreated) for ev in events):
            return []
        return project(events, as_of, self.tz, self.late_after, self.early_by,
                       self.video_share)


class RowReader(Protocol):
    """Reads the attendance rows of sessions, as of a moment, under the given rules."""

    async def rows(
        self, session_ids: Sequence[str], as_of: datetime, rules: Rules
    ) -> dict[str, list[AttendanceRow]]:
        """Rows per session id (every id a key; [] for a session with no records)."""
        ...


class LoadingReader:
    """One ledger load and one projection per session: no cache (tests, and the floor)."""

    def __init__(self, load_events: LoadEvents) -> None:
        self._load = load_events

    async def rows(
        self, session_ids: Sequence[str], as_of: datetime, rules: Rules
    ) -> dict[str, list[AttendanceRow]]:
        gate = asyncio.Semaphore(MAX_CONCURRENT_LOADS)

        async def rows_of(sid: str) -> list[AttendanceRow]:
            async with gate:
                records = await self._load(sid)
            return rules.project(records, as_of)

        found = await asyncio.gather(*(rows_of(sid) for sid in session_ids))
        return dict(zip(session_ids, found, strict=True))


def _widen(day: date | None, by: timedelta, default: date) -> date:
    if day is None:
        return default
    try:
        return day + by
    except OverflowError:
        return default


class AttendanceService:
    """Builds attendance exports from the session index and a row reader."""

    def __init__(
        self,
        load_events: LoadEvents,
        sessions_between: SessionsBetween,
        tz: tzinfo = UTC,
        late_after: timedelta = LATE_AFTER,
        early_by: timedelta = EARLY_BY,
        *,
        reader: RowReader | None = None,
        video_share: Decimal = VIDEO_SHARE,
    ) -> None:
        self._between = sessions_between
        self.rules = Rules(tz, late_after, early_by, video_share)
        self.reader = reader or LoadingReader(load_events)

    async def export(
        self,
        from_date: date | None,
        to_date: date | None,
        session_id: str | None = None,
        participant_id: str | None = None,
        *,
        as_of: datetime,
        program: str | None = None,
        progress: Progress | None = None,
    ) -> list[AttendanceRow]:
        """Rows whose service date is within the given bounds (inclusive), sorted.

        Order: service date, session id, therapists before clients, participant id
        (`rows.row_order`). With `session_id`, only that session is read (the index is not
        consulted, so a session missing from it can still be exported), and any date bound
        still applies. A session with no records, or without `SessionCreated`, yields no
        rows. Raises ValueError for a request the module docstring does not allow.
        """
        check_request(from_date, to_date, session_id, participant_id)
        if session_id is not None:
            ids = [session_id]
        else:
            lo = _widen(from_date, -INDEX_MARGIN, date.min)
            hi = _widen(to_date, INDEX_MARGIN, date.max)
            ids = list(dict.fromkeys(await self._between(lo, hi)))
        rows: list[AttendanceRow] = []
        for start in range(0, len(ids), BATCH_SESSIONS):
            batch = ids[start : start + BATCH_SESSIONS]
            found = await self.reader.rows(batch, as_of, self.rules)
            rows.extend(
                row
                for sid in batch
                for row in found[sid]
                if (from_date is None or row.service_date >= from_date)
                and (to_date is None or row.service_date <= to_date)
                and (session_id is None or row.session_id == session_id)
                and (participant_id is None or row.participant_id == participant_id)
                and (program is None or row.program == program)
            )
            if progress is not None:
                progress(start + len(batch), len(ids))
        rows.sort(key=row_order)
        return rows


def check_request(
    from_date: date | None, to_date: date | None, session_id: str | None,
    participant_id: str | None,
) -> None:
    """Raise ValueError (a message for people) unless the module docstring allows this."""
    if from_date is not None and to_date is not None and to_date < from_date:
        raise ValueError("to is before from")
    if session_id is not None or participant_id is not None:
        return
    if from_date is None or to_date is None:
        missing = "from" if from_date is None else "to"
        raise ValueError(f"missing query parameter {missing} (give from and to, or a "
                         "session or participant)")
    if (to_date - from_date).days + 1 > MAX_RANGE_DAYS:
        raise ValueError(f"a date range covers at most {MAX_RANGE_DAYS} days; ask for a "
                         "longer one in pieces, or name a session or participant")
