"""The relay as worker processes, one per core: `signaling.ports.Relay` for the control plane.

Each live session is pinned to one worker (the one with the fewest sessions when its first
plan arrives) for as long as it has a media plan. Plans and closes are fire-and-forget
frames (the session's command path never waits on a worker); only a client's own SDP waits
for the worker's answer. A worker that dies is restarted in its slot; its sessions' plans
are sent to the new process and every participant of them is told to re-offer
(`media_reset`), so media resumes within seconds and nobody is re-admitted.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Protocol

from server.media.background import Background
from server.media.report import WorkerReport
from server.media.workers import messages as m
from server.media.workers.channel import Channel, ChannelClosed
from server.media.workers.settings import WorkerSettings
from signaling.ports import MediaKind, MediaPlan, RelayListener, SignalType

log = logging.getLogger("circle.media.pool")

START_TIMEOUT_S = 30.0
"""A worker imports aiortc and binds nothing until asked: a second or two, even loaded."""
STOP_TIMEOUT_S = 5.0
RESTART_BACKOFF_S = 1.0
"""The first restart is immediate; a worker that keeps dying within `CRASH_LOOP_S` of its
start waits 1 s, 2 s, 4 s ... (at most `MAX_BACKOFF_S`) before the next."""
CRASH_LOOP_S = 5.0
MAX_BACKOFF_S = 10.0


def restart_delay(quick_deaths: int) -> float:
    """Seconds to wait before relaunching a worker that died `quick_deaths` times in a row
    within `CRASH_LOOP_S` of its start: none the first time, then 1, 2, 4 ... 10 s."""
    if quick_deaths <= 1:
        return 0.0
    return float(min(RESTART_BACKOFF_S * 2.0 ** (quick_deaths - 2), MAX_BACKOFF_S))


class WorkerGone(ValueError):
    """The worker serving the session went away while an SDP operation was in flight."""


class MediaResetListener(RelayListener, Protocol):
    async def media_reset(self, session_id: str, participant_id: str) -> None:
        """Tell a participant its media path was lost: drop the peer connection, offer again."""
        ...


@dataclass
class _Slot:
    index: int
    process: asyncio.subprocess.Process | None = None
    channel: Channel[m.FromWorker] | None = None
    pid: int | None = None
    booted: asyncio.Event = field(default_factory=asyncio.Event)
    """The process said `Ready`."""
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    """Booted and holding its sessions' plans: SDP for them may be sent."""
    started_at: float = 0.0
    sessions: set[str] = field(default_factory=set)
    pending: dict[int, asyncio.Future[m.SignalReply]] = field(default_factory=dict)
    stats: m.Stats | None = None
    restarts: int = 0
    quick_deaths: int = 0
    """Consecutive deaths within CRASH_LOOP_S of a start."""


class WorkerPool:
    """N media worker processes behind the `Relay` seam."""

    def __init__(self, listener: MediaResetListener, settings: WorkerSettings, count: int,
                 signal_timeout_s: float | None = None) -> None:
        if count < 1:
            raise ValueError("a worker pool needs at least one worker")
        self._listener = listener
        self._settings = settings
        self._slots = [_Slot(i) for i in range(count)]
        self._plans: dict[str, MediaPlan] = {}
        self._pins: dict[str, _Slot] = {}
        self._requests = itertools.count(1)
        self._signal_timeout_s = signal_timeout_s or settings.negotiation_timeout_s + 5
        self._background = Background(log, "media pool task")
        self._closing = False

    async def start(self) -> None:
        """Start every worker and wait until each says it is ready."""
        await asyncio.gather(*(self._launch(slot) for slot in self._slots))
        await asyncio.gather(*(self._wait(slot.booted, slot) for slot in self._slots))
        for slot in self._slots:
            slot.ready.set()
        log.info("%d media worker(s) ready (pids %s)", len(self._slots),
                 ", ".join(str(s.pid) for s in self._slots))

    # -- Relay ------------------------------------------------------------------------------

    async def apply_plan(self, plan: MediaPlan) -> None:
        slot = self._pin(plan.session_id)
        self._plans[plan.session_id] = plan
        self._send(slot, m.ApplyPlan.of(plan))
        if not plan.grants:
            self._unpin(plan.session_id)

    async def signal(
        self, session_id: str, participant_id: str, kind: SignalType, sdp: str
    ) -> str | None:
        slot = self._pins.get(session_id)
        if slot is None:
            raise ValueError("no media path for this participant")
        await self._wait_ready(slot)
        request = next(self._requests)
        reply: asyncio.Future[m.SignalReply] = asyncio.get_running_loop().create_future()
        slot.pending[request] = reply
        try:
            self._send(slot, m.Signal(request=request, session_id=session_id,
                                      participant_id=participant_id, kind=kind, sdp=sdp))
            answer = await asyncio.wait_for(reply, self._signal_timeout_s)
        except TimeoutError:
            raise ValueError("the media relay did not answer in time") from None
        finally:
            slot.pending.pop(request, None)
        if answer.error is not None:
            raise ValueError(answer.error)
        return answer.answer

    async def close_session(self, session_id: str) -> None:
        slot = self._pins.get(session_id)
        if slot is not None:
            self._send(slot, m.CloseSession(session_id=session_id))
        self._unpin(session_id)

    async def close(self) -> None:
        """Stop every worker (server shutdown): close the channels, then wait or kill."""
        self._closing = True
        self._background.cancel()
        for slot in self._slots:
            if slot.channel is not None:
                slot.channel.close()
        await asyncio.gather(*(self._reap(slot) for slot in self._slots))

    # -- what /metrics and the tests see ----------------------------------------------------

    def reports(self) -> list[WorkerReport]:
        """Per worker: the pool's own book (sessions pinned, restarts) and its last stats."""
        return [
            WorkerReport(
                worker=str(slot.index), pid=slot.pid, up=slot.ready.is_set(),
                sessions=len(slot.sessions),
                peers=slot.stats.peers if slot.stats else 0,
                forwarded_packets=slot.stats.forwarded_packets if slot.stats else 0,
                dropped_packets=slot.stats.dropped_packets if slot.stats else 0,
                loop_lag_ms=slot.stats.loop_lag_ms if slot.stats else 0.0,
                restarts=slot.restarts,
            )
            for slot in self._slots
        ]

    # -- internals --------------------------------------------------------------------------

    def _pin(self, session_id: str) -> _Slot:
        slot = self._pins.get(session_id)
        if slot is None:
            slot = min(self._slots, key=lambda s: (not s.ready.is_set(), len(s.sessions),
                                                   s.index))
            self._pins[session_id] = slot
            slot.sessions.add(session_id)
        return slot

    def _unpin(self, session_id: str) -> None:
        slot = self._pins.pop(session_id, None)
        self._plans.pop(session_id, None)
        if slot is not None:
            slot.sessions.discard(session_id)

    def _send(self, slot: _Slot, message: m.ToWorker) -> None:
        """Queue a frame; a frame for a dead worker is dropped (its restart resends plans)."""
        if slot.channel is None:
            return
        with contextlib.suppress(ChannelClosed):
            slot.channel.send(message)

    async def _wait_ready(self, slot: _Slot) -> None:
        await self._wait(slot.ready, slot)

    async def _wait(self, event: asyncio.Event, slot: _Slot) -> None:
        try:
            await asyncio.wait_for(event.wait(), START_TIMEOUT_S)
        except TimeoutError:
            raise WorkerGone(f"media worker {slot.index} is not running") from None

    async def _launch(self, slot: _Slot) -> None:
        parent, child = socket.socketpair()
        try:
            slot.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "server.media.workers.process",
                "--fd", str(child.fileno()), "--index", str(slot.index),
                "--settings", self._settings.model_dump_json(),
                pass_fds=(child.fileno(),), stdin=subprocess.DEVNULL,
            )
        finally:
            child.close()
        slot.started_at = time.monotonic()
        slot.channel = await Channel.over(parent, m.FROM_WORKER)
        self._background.spawn(self._read(slot, slot.channel))

    async def _read(self, slot: _Slot, channel: Channel[m.FromWorker]) -> None:
        try:
            while True:
                self._handle(slot, await channel.receive())
        except ChannelClosed as exc:
            reason = str(exc)
        if self._closing or slot.channel is not channel:
            return
        await self._restart(slot, reason)

    def _handle(self, slot: _Slot, message: m.FromWorker) -> None:
        match message:
            case m.Ready():
                slot.pid = message.pid
                slot.booted.set()
            case m.SignalReply():
                future = slot.pending.get(message.request)
                if future is not None and not future.done():
                    future.set_result(message)
            case m.RelayOffer():
                self._background.spawn(self._listener.send_signal(
                    message.session_id, message.participant_id, "offer", message.sdp))
            case m.Published():
                kinds: frozenset[MediaKind] = frozenset(message.kinds)
                self._background.spawn(self._listener.media_published(
                    message.session_id, message.participant_id, kinds))
            case m.Flow():
                self._background.spawn(self._listener.media_flow(
                    message.session_id, message.participant_id, message.kind,
                    message.flowing, message.ago_s))
            case m.Talk():
                self._background.spawn(self._listener.talk_time(
                    message.session_id, dict(message.seconds)))
            case m.Stats():
                slot.stats = message

    async def _restart(self, slot: _Slot, reason: str) -> None:
        """Replace a dead worker and bring its sessions' media back without re-admission.

        Participants are told at once (`media_reset`), so their new peer connections are
        made while the new process starts; their offers wait until it holds the plans.
        """
        slot.ready.clear()
        slot.booted.clear()
        for future in slot.pending.values():
            if not future.done():
                future.set_exception(WorkerGone("the media relay restarted; offer again"))
        for session_id in sorted(slot.sessions):
            plan = self._plans.get(session_id)
            for participant_id in sorted(plan.grants) if plan else ():
                self._background.spawn(self._listener.media_reset(session_id, participant_id))
        returncode = await self._reap(slot)
        slot.restarts += 1
        log.warning("media worker %d (pid %s) stopped (%s, exit %s); restarting it for %d "
                    "session(s)", slot.index, slot.pid, reason, returncode, len(slot.sessions))
        quick = time.monotonic() - slot.started_at < CRASH_LOOP_S
        slot.quick_deaths = slot.quick_deaths + 1 if quick else 0
        delay = restart_delay(slot.quick_deaths)
        if delay:
            await asyncio.sleep(delay)
        slot.pid, slot.stats = None, None
        try:
            await self._launch(slot)
            await self._wait(slot.booted, slot)
        except (OSError, WorkerGone) as exc:
            log.error("media worker %d could not be restarted (%s)", slot.index,
                      type(exc).__name__)
            return
        for session_id in sorted(slot.sessions):
            plan = self._plans.get(session_id)
            if plan is not None:
                self._send(slot, m.ApplyPlan.of(plan))
        slot.ready.set()

    async def _reap(self, slot: _Slot) -> int | None:
        process = slot.process
        if process is None:
            return None
        try:
            return await asyncio.wait_for(process.wait(), STOP_TIMEOUT_S)
        except TimeoutError:
            process.kill()
            return await process.wait()
