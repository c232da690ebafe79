"""The server's wall clock: the machine's UTC time plus an optional, configured offset.

Every part of the server that needs "now" (session commands, token expiry, exports, audit
records, start-up recovery) reads this one clock, so a test can run a whole server a year
ahead or behind (`CIRCLE_CLOCK_OFFSET_S`) and prove that nothing depends on today's date.
Moving the clock in-process is the only way that works: libfaketime over the process tree
breaks Python's socket timeouts. Monotonic time (media pacing, rate limits) is never offset.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

Clock = Callable[[], datetime]
"""Returns an aware UTC datetime."""


class WallClock:
    """`datetime.now(UTC)` shifted by a fixed offset (zero in production)."""

    def __init__(self, offset_s: float = 0.0) -> None:
        self.offset = timedelta(seconds=offset_s)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset
