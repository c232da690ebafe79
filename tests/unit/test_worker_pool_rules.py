"""The pool's pure rules: how long a crashing worker waits, how many workers by default."""

from __future__ import annotations

import os

from server.config import Settings
from server.media.workers.pool import restart_delay


def test_a_worker_restarts_at_once_then_backs_off_while_it_keeps_dying() -> None:
    assert [restart_delay(n) for n in range(8)] == [0.0, 0.0, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


def test_one_worker_per_core_this_process_may_use_unless_set() -> None:
    assert Settings().media_worker_count == len(os.sched_getaffinity(0))
    assert Settings(media_workers=0).media_worker_count == 0
    assert Settings(media_workers=3).media_worker_count == 3
