"""Fill the row cache as each session ends, so an export never waits on a cold cache.

The cache (`cache.CachedRows`) is filled by whatever reads a session first; left alone,
that is the first export of a period, which then replays every session of it (1,000
sessions: seconds). A session's rows are final once it has ended, so the owner that
appended `SessionEnded` projects and seals them right away, in the background: a failure
costs only the warm-up (the export computes the rows as before), never the session.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from datetime import datetime

from server.attendance.service import AttendanceService
from signaling.core.events import Event, SessionEnded
from signaling.core.model import SessionState

log = logging.getLogger("circle.attendance")


class RowWarmer:
    """A session observer: reads each ended session through the export's row reader."""

    def __init__(self, attendance: AttendanceService, clock: Callable[[], datetime]) -> None:
        self._attendance = attendance
        self._clock = clock
        self._tasks: set[asyncio.Task[None]] = set()
        self.warmed = 0

    async def session_changed(
        self, before: SessionState, after: SessionState, events: Sequence[Event]
    ) -> None:
        if after.info is None or not any(isinstance(event, SessionEnded) for event in events):
            return
        task = asyncio.get_running_loop().create_task(self._warm(after.info.id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _warm(self, session_id: str) -> None:
        try:
            await self._attendance.reader.rows([session_id], self._clock(),
                                               self._attendance.rules)
            self.warmed += 1
        except Exception as exc:  # the export will compute these rows itself
            log.warning("could not warm the attendance rows of a session: %s",
                        type(exc).__name__)

    async def idle(self) -> None:
        """Wait for the warm-ups under way (tests; a clean stop)."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
