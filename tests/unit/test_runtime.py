"""The session owner: one queue per session, append before apply, timers from the core."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from signaling.core import commands as c
from signaling.core.events import Event
from signaling.core.model import SessionState
from signaling.core.policy import Rejected
from signaling.core.session import Accepted
from signaling.edge.runtime import SessionHub
from signaling.ports import FencedOut

from .core_helpers import STAFF, T0
from .memory_log import MemoryLog


class Recorder:
    def __init__(self, log: MemoryLog) -> None:
        self.log = log
        self.seen: list[tuple[int, int]] = []

    async def session_changed(self, before: SessionState, after: SessionState,
                              events: Sequence[Event]) -> None:
        stored = len(self.log.streams.get(after.info.id if after.info else "", []))
        assert stored == after.seq, "observers run only after the events are durable"
        self.seen.append((before.seq, after.seq))


def create(grace_s: int = 60) -> c.CreateSession:
    return c.CreateSession("s1", "Group", "group", "IOP", T0, 90, grace_s)


async def test_commands_are_applied_in_order_after_the_log_append() -> None:
    log = MemoryLog()
    recorder = Recorder(log)
    hub = SessionHub(log, clock=lambda: T0, observers=[recorder])
    assert isinstance(await hub.submit("s1", STAFF, create()), Accepted)
    actor = c.Actor.participant("t1", "therapist")
    decisions = await asyncio.gather(*(
        hub.submit("s1", actor, c.Connect("t1", "T", "therapist", "j")) if i == 0
        else hub.submit("s1", actor, c.RaiseHand(i % 2 == 1)) for i in range(6)
    ))
    assert all(isinstance(d, Accepted) for d in decisions)
    assert [after for _, after in recorder.seen] == sorted(after for _, after in recorder.seen)
    state = await hub.state("s1")
    assert state.seq == len(log.streams["s1"])
    await hub.close()


async def test_a_failed_append_refuses_the_command_and_changes_nothing() -> None:
    log = MemoryLog()
    hub = SessionHub(log, clock=lambda: T0)
    await hub.submit("s1", STAFF, create())
    before = await hub.state("s1")
    log.fail = True
    actor = c.Actor.participant("t1", "therapist")
    decision = await hub.submit("s1", actor, c.Connect("t1", "T", "therapist", "j"))
    assert isinstance(decision, Rejected) and decision.code == "conflict"
    assert await hub.state("s1") == before
    assert isinstance(await hub.submit("s1", actor, c.Connect("t1", "T", "therapist", "j")),
                      Accepted), "the next attempt works"
    await hub.close()


async def test_a_restarted_hub_rebuilds_state_from_the_log_and_recovers() -> None:
    log = MemoryLog()
    hub = SessionHub(log, clock=lambda: T0)
    await hub.submit("s1", STAFF, create())
    await hub.submit("s1", c.Actor.participant("t1", "therapist"),
                     c.Connect("t1", "T", "therapist", "j"))
    live = await hub.state("s1")
    await hub.close()
    fresh = SessionHub(log, clock=lambda: T0 + timedelta(minutes=1))
    assert await fresh.state("s1") == live
    assert isinstance(await fresh.submit("s1", c.SYSTEM, c.Recover()), Accepted)
    assert (await fresh.state("s1")).participants["t1"].connected is False
    await fresh.close()


async def test_an_owner_whose_fence_is_stale_stops_writing_and_says_so() -> None:
    """Another node claimed the session (a newer fence): the command is refused, nothing is
    written, the actor goes away, and the node is told it was fenced out."""
    log = MemoryLog()
    fence = [await log.claim_fence("s1")]
    exits: list[tuple[str, bool]] = []
    hub = SessionHub(log, clock=lambda: T0, fence_of=lambda session_id: fence[0],
                     on_exit=lambda session_id, fenced: exits.append((session_id, fenced)))
    assert isinstance(await hub.submit("s1", STAFF, create()), Accepted)
    await log.claim_fence("s1")  # the other node
    actor = c.Actor.participant("t1", "therapist")
    decision = await hub.submit("s1", actor, c.Connect("t1", "T", "therapist", "j"))
    assert isinstance(decision, Rejected) and decision.code == "conflict"
    assert len(log.streams["s1"]) == 1
    for _ in range(100):
        if exits:
            break
        await asyncio.sleep(0.01)
    assert exits == [("s1", True)] and hub.live_sessions() == []
    await hub.close()


async def test_an_owner_whose_lease_ran_out_writes_nothing() -> None:
    log = MemoryLog()

    def lapsed(session_id: str) -> int | None:
        raise FencedOut(session_id)

    hub = SessionHub(log, clock=lambda: T0, fence_of=lapsed)
    decision = await hub.submit("s1", STAFF, create())
    assert isinstance(decision, Rejected) and decision.code == "conflict"
    assert log.streams == {}
    await hub.close()


async def test_the_owner_ticks_when_the_core_has_a_deadline() -> None:
    """The clock says the grace period is over: the owner submits Tick by itself."""
    log = MemoryLog()
    now = [T0]
    left = asyncio.Event()

    class Watch:
        async def session_changed(self, before: SessionState, after: SessionState,
                                  events: Sequence[Event]) -> None:
            if "t1" in after.participants and after.participants["t1"].status == "left":
                left.set()

    hub = SessionHub(log, clock=lambda: now[0], observers=[Watch()])
    await hub.submit("s1", STAFF, create(grace_s=1))
    actor = c.Actor.participant("t1", "therapist")
    await hub.submit("s1", actor, c.Connect("t1", "T", "therapist", "j"))
    now[0] = T0 + timedelta(hours=1)
    await hub.submit("s1", actor, c.Disconnect("t1"))
    now[0] += timedelta(seconds=2)
    # Any command wakes the owner, which then finds the deadline passed (no real waiting).
    await hub.submit("s1", actor, c.RaiseHand(False))
    await asyncio.wait_for(left.wait(), 5)
    types = [r["type"] for r in log.streams["s1"]]
    assert types[-1] == "grace_expired"
    await hub.close()


async def test_unknown_sessions_are_not_kept_in_memory() -> None:
    hub = SessionHub(MemoryLog(), clock=lambda: datetime.now(UTC))
    decision = await hub.submit("nope", c.Actor.participant("t1", "therapist"),
                                c.Connect("t1", "T", "therapist", "j"))
    assert isinstance(decision, Rejected) and decision.code == "not_found"
    await asyncio.sleep(0)
    assert hub.live_sessions() == []
