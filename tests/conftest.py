"""Loaded by pytest before any test module, in every run.

Hypothesis is imported here, at start-up: otherwise its pytest plugin imports it first from
the terminal summary of a run that used no property test, deep in pluggy's stack, where
CPython 3.11.7 can fail rewriting its asserts ("SystemError: AST constructor recursion
depth mismatch") and turn a green run red.

Two CI runs have stalled for good after their tests, once in a media test's teardown with
the event loop idle: on Python 3.11 an event loop's close waits without limit for its
default executor's threads (aiortc encodes every frame in one), and the interpreter's exit
waits for every thread. Both waits are bounded here, loudly, with every thread's stack:

- a test's loop waits `EXECUTOR_GRACE_S` for its executor (Python 3.12 bounds the same
  wait at 300 s), then warns and goes on;
- an interpreter still alive `EXIT_GRACE_S` after pytest finished prints every thread's
  stack and exits with pytest's own status, so the run's result stands and the log shows
  what held it.
"""

from __future__ import annotations

import asyncio
import faulthandler
import os
import sys
import threading
import time
import warnings

import hypothesis  # noqa: F401
import pytest

EXECUTOR_GRACE_S = 30.0
EXIT_GRACE_S = 60.0
_exit_status = 0

_shutdown_default_executor = asyncio.BaseEventLoop.shutdown_default_executor


async def _bounded_shutdown_default_executor(self: asyncio.BaseEventLoop) -> None:
    try:
        await asyncio.wait_for(asyncio.shield(_shutdown_default_executor(self)),
                               EXECUTOR_GRACE_S)
    except TimeoutError:
        warnings.warn(f"an event loop's default executor still had a thread running "
                      f"{EXECUTOR_GRACE_S:.0f} s after its test (stacks on stderr)",
                      RuntimeWarning, stacklevel=1)
        faulthandler.dump_traceback(file=sys.__stderr__, all_threads=True)


asyncio.BaseEventLoop.shutdown_default_executor = (  # type: ignore[method-assign]
    _bounded_shutdown_default_executor)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    global _exit_status
    _exit_status = int(exitstatus)


def _exit_if_still_alive() -> None:
    time.sleep(EXIT_GRACE_S)
    print(f"\ncircle tests: still alive {EXIT_GRACE_S:.0f} s after the run ended; these "
          f"threads held the exit:", file=sys.__stderr__, flush=True)
    faulthandler.dump_traceback(file=sys.__stderr__, all_threads=True)
    os._exit(_exit_status)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    threading.Thread(target=_exit_if_still_alive, name="exit-watchdog", daemon=True).start()
