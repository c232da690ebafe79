"""The tests' own "now": the machine's clock moved by the same setting as the server's.

scripts/test runs the integration suite a second and third time with
`CIRCLE_CLOCK_OFFSET_S` a year ahead and a year behind; the servers under test inherit it,
and every date a test sends (a session's `starts_at`, an export's `from`/`to`) comes from
here, so no test can pass only in the week it was written.
"""

from __future__ import annotations

import os
from datetime import datetime

from server.clock import WallClock

OFFSET_ENV = "CIRCLE_CLOCK_OFFSET_S"


def now() -> datetime:
    """Now by the clock the servers under test use."""
    return WallClock(float(os.environ.get(OFFSET_ENV) or 0))()


def iso(moment: datetime) -> str:
    """The wire form of a time, as a scheduler would send it."""
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
