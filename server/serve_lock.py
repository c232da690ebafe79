"""`serve.lock` in the data dir: one `circle serve` per data dir, and where it listens.

The running server holds an exclusive flock on the file for its lifetime (a second server
on the same data would replay and "recover" sessions it cannot serve), and writes
`{"pid": ..., "url": ...}` into it once its socket listens. With `--port 0` the kernel
picks the port; supervisors, the tests and the benchmarks read it here instead of guessing
a free port that another process can take first.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

FILE_NAME = "serve.lock"


class DataDirBusy(Exception):
    """Another process holds the data dir."""


@dataclass(frozen=True)
class Holder:
    pid: int
    url: str

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])


def claim(data_dir: Path) -> IO[str]:
    """An exclusive lock on `data_dir` for this process's lifetime (released at exit)."""
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)  # the server refuses a looser one
    handle = (data_dir / FILE_NAME).open("a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise DataDirBusy(f"another circle serve is already using {data_dir.resolve()}") from None
    return handle


def record_address(lock: IO[str], url: str) -> None:
    """Say in the held lock file which process listens where."""
    lock.seek(0)
    lock.truncate()
    lock.write(json.dumps({"pid": os.getpid(), "url": url}) + "\n")
    lock.flush()


def read_holder(data_dir: Path) -> Holder | None:
    """What the lock file says, or None while nothing (readable) has been written."""
    try:
        held = json.loads((data_dir / FILE_NAME).read_text())
        return Holder(int(held["pid"]), str(held["url"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def wait_for_listening(
    pid: int, data_dir: Path, alive: Callable[[], bool], timeout_s: float = 30.0
) -> int:
    """The port process `pid` listens on, once it has recorded it; for supervisors and tests.

    `alive()` says whether the process still runs, so a server that fails at start-up is
    reported at once instead of at the deadline. The file is written once, right after the
    socket listens, so polling it is a wait on that event, not a guess at timing.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError("circle serve exited during start-up")
        holder = read_holder(data_dir)
        if holder is not None and holder.pid == pid:
            return holder.port
        time.sleep(0.02)
    raise RuntimeError(f"circle serve did not start listening in {timeout_s:g} s")

