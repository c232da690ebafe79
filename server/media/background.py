"""Background tasks a media component starts and must neither lose nor let crash it.

asyncio keeps only weak references to tasks, so a fire-and-forget task can vanish
mid-flight; each owner keeps its tasks here, and a failure is logged by exception type
only (an exception's text could quote SDP or ids) instead of being raised nowhere.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any


class Background:
    """A set of running tasks: spawn, cancel all, or wait for all."""

    def __init__(self, log: logging.Logger, what: str) -> None:
        self._log = log
        self._what = what
        self._tasks: set[asyncio.Task[None]] = set()

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        async def run() -> None:
            try:
                await coro
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._log.warning("%s failed (%s)", self._what, type(exc).__name__)

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def cancel(self) -> None:
        for task in list(self._tasks):
            task.cancel()

    async def wait(self) -> None:
        await asyncio.gather(*self._tasks, return_exceptions=True)
