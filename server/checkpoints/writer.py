"""The server's side: keep this node's checkpoint file(s) up to date with the heads it appends.

Off the append path: the ledger tells `saw` about each committed head, which only updates a
map in memory; a background task writes the map out at most once a second (and once more at
a clean stop), signing and fsyncing in a worker thread. A crash can lose the last second of
marks, never a whole file: each write replaces the file atomically.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from server.checkpoints.document import (
    Checkpoint,
    CheckpointInvalid,
    Mark,
    encode,
    new_lineage,
    read_checkpoint,
    write_atomic,
)
from server.clock import Clock
from server.crypto.keyring import KeyRing
from server.ledger import Ledger
from server.storage.ledger_store import SignedHead

log = logging.getLogger("circle.checkpoints")

FLUSH_INTERVAL_S = 1.0
"""At most one write per this many seconds: the marks a crash may lose."""


class CheckpointError(Exception):
    """The checkpoints cannot be kept; the server refuses to start rather than run without."""


class CheckpointWriter:
    """This node's checkpoints: `start` before the ledger appends, `close` at a clean stop.

    Written to every path in `paths` (the file and its copy), with one counter for both.
    """

    def __init__(
        self,
        paths: Sequence[Path],
        keyring: KeyRing,
        node: str,
        clock: Clock,
        *,
        interval_s: float = FLUSH_INTERVAL_S,
    ) -> None:
        self._paths = list(paths)
        self._keys = keyring
        self._node = node
        self._clock = clock
        self._interval = interval_s
        self._marks: dict[str, Mark] = {}
        self._lineage = new_lineage()
        self._since = clock()
        self._counter = 0
        self._dirty = False
        self._failing: set[Path] = set()
        self._locks: list[int] = []
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self, ledger: Ledger) -> None:
        """Take the files, continue from the newest (or from the database's heads), write.

        Raises `CheckpointError` when a file is held by another server, cannot be written,
        or fails its signature (it is evidence: the operator looks at it with `circle
        verify` and moves it aside; the server never overwrites it).
        """
        self._lock_files()
        try:
            found = {path: self._read(path) for path in self._paths}
            present = [(path, c) for path, c in found.items() if c is not None]
            if present:
                self._continue(*max(present, key=lambda item: item[1].counter), found)
            else:
                await self._begin(ledger)
            self._dirty = True
            failed = await self._write()
            if failed:
                raise CheckpointError(
                    f"cannot write the checkpoint file {failed[0][0]}: {failed[0][1]}; set "
                    "CIRCLE_CHECKPOINT_FILE (or CIRCLE_CHECKPOINT_COPY) to a place the server "
                    "can write"
                )
        except BaseException:
            self._unlock_files()
            raise
        self._task = asyncio.create_task(self._run(), name="checkpoint writer")

    def saw(self, previous: SignedHead | None, head: SignedHead) -> None:
        """The ledger committed `head` over `previous` (`Ledger`'s `on_head`).

        A head that does not continue the stream's mark (the database was below it: moved
        back, or the stream deleted and begun again) leaves the mark as it is, for good and
        flagged, so that appends going on over the old seqs cannot wash the evidence out.
        """
        mark = self._marks.get(head.stream)
        if mark is not None and mark.moved_back_to is not None:
            return
        if mark is None or _continues(mark, previous):
            self._marks[head.stream] = Mark(head.seq, head.mac)
        else:
            found = 0 if previous is None else previous.seq
            self._marks[head.stream] = replace(mark, moved_back_to=found)
            log.error(
                "ledger stream %s was moved back under this server: the database was at seq "
                "%d, this node had written seq %d; the checkpoint keeps the evidence "
                "(run circle verify)", head.stream, found, mark.seq,
            )
        self._dirty = True
        self._wake.set()

    async def close(self) -> None:
        """Stop the background writes, write what is left, release the files."""
        self._stopping.set()
        self._wake.set()
        if self._task is not None:
            await self._task
        try:
            failed = await self._write()
        finally:
            self._unlock_files()
        if failed:
            log.error("stopped with checkpoint file(s) %s behind the ledger: their last "
                      "writes failed", ", ".join(str(path) for path, _ in failed))

    # -- internals ------------------------------------------------------------------------

    async def _run(self) -> None:
        while not self._stopping.is_set():
            await self._wake.wait()
            self._wake.clear()
            await self._write()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._interval)

    async def _begin(self, ledger: Ledger) -> None:
        """No checkpoint yet: start from the database's heads as they are now."""
        heads = await ledger.heads()
        self._marks = {head.stream: Mark(head.seq, head.mac) for head in heads}
        if heads:
            log.warning(
                "no checkpoint file at %s yet: starting one from the database as it is now "
                "(%d stream(s)). Expected at a first start or an upgrade; otherwise the file "
                "was deleted, and a rollback from before now cannot be seen",
                self._paths[0], len(heads),
            )

    def _continue(
        self, source: Path, newest: Checkpoint, found: dict[Path, Checkpoint | None]
    ) -> None:
        """Go on from the newest file (`source`); the others are written again from it."""
        self._marks = dict(newest.streams)
        self._lineage, self._since, self._counter = newest.lineage, newest.since, newest.counter
        for path, checkpoint in found.items():
            if checkpoint is None:
                log.warning("checkpoint file %s is missing: writing it again from %s",
                            path, source)
            elif checkpoint.counter < newest.counter:
                log.warning("checkpoint file %s is older than %s (%d < %d): replacing it",
                            path, source, checkpoint.counter, newest.counter)

    def _read(self, path: Path) -> Checkpoint | None:
        try:
            return read_checkpoint(path, self._keys.ledger_public_key)
        except CheckpointInvalid as bad:
            raise CheckpointError(
                f"{bad}. It is evidence: run `circle verify` to see what it shows, then move "
                "it aside to start the server with a new one"
            ) from None

    async def _write(self) -> list[tuple[Path, str]]:
        """Write the marks if they changed; returns the files that failed (kept for a retry)."""
        if not self._dirty:
            return []
        self._dirty = False
        self._counter += 1
        checkpoint = Checkpoint(self._lineage, self._node, self._counter, self._since,
                                self._clock(), dict(self._marks))
        failed = await asyncio.to_thread(self._write_files, checkpoint)
        for path in self._paths:
            error = dict(failed).get(path)
            if error is not None and path not in self._failing:
                self._failing.add(path)
                log.error("cannot write checkpoint file %s (%s); retrying every %g s",
                          path, error, self._interval)
            elif error is None and path in self._failing:
                self._failing.discard(path)
                log.info("checkpoint file %s written again", path)
        if failed:
            self._dirty = True
            self._wake.set()  # retried after the pause, appends or not
        return failed

    def _write_files(self, checkpoint: Checkpoint) -> list[tuple[Path, str]]:
        data = encode(checkpoint, self._keys.ledger_signing_key)
        failed: list[tuple[Path, str]] = []
        for path in self._paths:
            try:
                write_atomic(path, data)
            except OSError as exc:
                failed.append((path, exc.strerror or str(exc)))
        return failed

    def _lock_files(self) -> None:
        """One writer per file: two nodes given one path would each drop the other's marks."""
        for path in self._paths:
            lock = path.with_name(f".{path.name}.lock")
            try:
                path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
            except OSError as exc:
                self._unlock_files()
                raise CheckpointError(
                    f"cannot write beside the checkpoint file {path} ({exc.strerror or exc}); "
                    "set CIRCLE_CHECKPOINT_FILE (or CIRCLE_CHECKPOINT_COPY) to a place the "
                    "server can write"
                ) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                self._unlock_files()
                raise CheckpointError(
                    f"checkpoint file {path} is in use by another circle serve: give each node "
                    "its own CIRCLE_CHECKPOINT_FILE (and CIRCLE_CHECKPOINT_COPY)"
                ) from None
            self._locks.append(fd)

    def _unlock_files(self) -> None:
        while self._locks:
            os.close(self._locks.pop())


def _continues(mark: Mark, previous: SignedHead | None) -> bool:
    """Whether an append over `previous` goes on from `mark`: from it, or from further on
    (other writers appended meanwhile: another node, or a `circle` command)."""
    if previous is None:
        return False
    if previous.seq == mark.seq:
        return previous.mac == mark.mac
    return previous.seq > mark.seq
