"""One task per live session that owns its state: the only place commands are applied.

python-socketio runs each event in a task of its own, so two therapists (or one client's
quick double click) could otherwise interleave. Here every command of a session goes
through one queue: decide, append durably to the ledger, apply, then tell the observers.
The same loop sleeps until the core's next deadline (grace periods, timers) and ticks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from signaling.core import commands as c
from signaling.core.events import Event, from_record, to_record
from signaling.core.model import SessionState
from signaling.core.policy import Rejected
from signaling.core.session import Accepted, Decision, apply, decide, next_deadline, replay
from signaling.ports import EventLog, FencedOut, LedgerConflict

log = logging.getLogger("circle.sessions")

Clock = Callable[[], datetime]
FenceOf = Callable[[str], int | None]
"""The fence to append a session's events with; raises FencedOut once this node's lease
on it has lapsed. One node without leases answers None."""


class SessionObserver(Protocol):
    """Told of every change, in order, after it is durable. Must not block for long."""

    async def session_changed(
        self, before: SessionState, after: SessionState, events: Sequence[Event]
    ) -> None: ...


@dataclass
class _Job:
    actor: c.Actor
    command: c.Command
    reply: asyncio.Future[Decision] | None


class SessionActor:
    """Owns one session's state; processes its commands one at a time."""

    def __init__(
        self,
        session_id: str,
        event_log: EventLog,
        clock: Clock,
        observers: Sequence[SessionObserver],
        on_exit: Callable[[SessionActor], None],
        fence_of: FenceOf = lambda session_id: None,
    ) -> None:
        self.session_id = session_id
        self.state = SessionState()
        self.fenced = False
        """True once another node took the session over: this actor stops writing."""
        self._fence_of = fence_of
        self._log = event_log
        self._clock = clock
        self._observers = observers
        self._on_exit = on_exit
        self._queue: asyncio.Queue[_Job] = asyncio.Queue()
        self._current: _Job | None = None
        self._loaded = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name=f"session-{session_id}")

    async def submit(self, actor: c.Actor, command: c.Command) -> Decision:
        reply: asyncio.Future[Decision] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Job(actor, command, reply))
        return await reply

    async def snapshot(self) -> SessionState:
        await self._loaded.wait()
        return self.state

    async def stop(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _run(self) -> None:
        try:
            await self._load()
            while not self._finished() and not self.fenced:
                self._current = await self._next_job()
                await self._handle(self._current)
                self._current = None
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("session actor failed; it will be reloaded on next use")
        finally:
            why = Rejected("conflict", "the session is restarting, try again")
            job = self._current
            if job is not None and job.reply is not None and not job.reply.done():
                job.reply.set_result(why)  # stopped mid-command: its caller still hears
            self._drain(why)
            self._on_exit(self)

    async def _load(self) -> None:
        records = await self._log.load(self.session_id)
        self.state = replay(from_record(r) for r in records)
        self._loaded.set()

    async def _next_job(self) -> _Job:
        deadline = next_deadline(self.state)
        if deadline is None:
            return await self._queue.get()
        timeout = max(0.0, (deadline - self._clock()).total_seconds())
        try:
            return await asyncio.wait_for(self._queue.get(), timeout)
        except TimeoutError:
            return _Job(c.SYSTEM, c.Tick(), None)

    async def _handle(self, job: _Job) -> None:
        decision = decide(self.state, job.command, job.actor, self._clock())
        if isinstance(decision, Accepted) and decision.events:
            try:
                await self._commit(decision.events)
            except FencedOut:
                log.warning("session lease lost: this node stops writing to the session")
                self.fenced = True
                decision = Rejected("conflict", "the session moved to another server, try again")
            except LedgerConflict:
                log.error("ledger conflict: another writer owns this session; reloading")
                await self._load()
                decision = Rejected("conflict", "session changed elsewhere, try again")
            except Exception:
                log.exception("ledger append failed; command refused, state unchanged")
                decision = Rejected("conflict", "could not record the change, try again")
        if job.reply is not None and not job.reply.done():
            job.reply.set_result(decision)

    async def _commit(self, events: Sequence[Event]) -> None:
        before = self.state
        fence = self._fence_of(self.session_id)
        await self._log.append(self.session_id, before.seq + 1, [to_record(e) for e in events],
                               fence=fence)
        after = before
        for event in events:
            after = apply(after, event)
        self.state = after
        for observer in self._observers:
            try:
                await observer.session_changed(before, after, events)
            except Exception:
                log.exception("observer %s failed", type(observer).__name__)

    def _finished(self) -> bool:
        """Ended or never-created sessions need no live owner once their queue is empty."""
        return (self.state.ended or not self.state.exists) and self._queue.empty()

    def _drain(self, why: Rejected) -> None:
        while not self._queue.empty():
            job = self._queue.get_nowait()
            if job.reply is not None and not job.reply.done():
                job.reply.set_result(why)


class SessionHub:
    """Finds or starts the actor of a session; the gateway and the HTTP API talk to this."""

    def __init__(
        self,
        event_log: EventLog,
        clock: Clock,
        observers: Sequence[SessionObserver] = (),
        *,
        fence_of: FenceOf = lambda session_id: None,
        on_exit: Callable[[str, bool], None] = lambda session_id, fenced: None,
    ) -> None:
        self._log = event_log
        self._clock = clock
        self._observers = list(observers)
        self._fence_of = fence_of
        self._on_exit = on_exit
        self._actors: dict[str, SessionActor] = {}

    def add_observer(self, observer: SessionObserver) -> None:
        self._observers.append(observer)

    async def submit(self, session_id: str, actor: c.Actor, command: c.Command) -> Decision:
        """Run `command` on the session's owner and return what the core decided."""
        return await self._actor(session_id).submit(actor, command)

    async def state(self, session_id: str) -> SessionState:
        """The session's current state (a fresh one, `exists` False, for unknown ids)."""
        return await self._actor(session_id).snapshot()

    def live_sessions(self) -> list[str]:
        return sorted(self._actors)

    async def evict(self, session_id: str) -> None:
        """Stop the session's actor (this node no longer owns it); queued commands are
        answered with a retryable error."""
        actor = self._actors.pop(session_id, None)
        if actor is not None:
            await actor.stop()

    async def close(self) -> None:
        for actor in list(self._actors.values()):
            await actor.stop()
        self._actors.clear()

    def _actor(self, session_id: str) -> SessionActor:
        actor = self._actors.get(session_id)
        if actor is None:
            actor = SessionActor(
                session_id, self._log, self._clock, self._observers, self._forget,
                self._fence_of,
            )
            self._actors[session_id] = actor
        return actor

    def _forget(self, actor: SessionActor) -> None:
        if self._actors.get(actor.session_id) is actor:
            del self._actors[actor.session_id]
        self._on_exit(actor.session_id, actor.fenced)
