"""An in-memory EventLog with fences, for unit tests of the runtime and the cluster node."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from signaling.ports import FencedOut


class MemoryLog:
    """An in-memory EventLog; `fail` makes the next append raise, like a full disk."""

    def __init__(self) -> None:
        self.streams: dict[str, list[Mapping[str, Any]]] = {}
        self.fences: dict[str, int] = {}
        self.fail = False

    async def append(self, stream: str, first_seq: int, records: Sequence[Mapping[str, Any]],
                     *, fence: int | None = None) -> None:
        if self.fail:
            self.fail = False
            raise OSError("disk full")
        if fence is not None and self.fences.get(stream) != fence:
            raise FencedOut(stream)
        existing = self.streams.setdefault(stream, [])
        assert first_seq == len(existing) + 1
        existing.extend(records)

    async def load(self, stream: str) -> list[Mapping[str, Any]]:
        return list(self.streams.get(stream, []))

    async def claim_fence(self, stream: str) -> int:
        self.fences[stream] = self.fences.get(stream, 0) + 1
        return self.fences[stream]
