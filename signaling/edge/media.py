"""Media coordination: keeps each session's relay plan in step with its state, and carries
SDP between clients and the relay (in-process, or a pool of media workers).

A session's owner task never waits on the relay: `update` only queues the newest plan, and
one pump per session hands plans to the relay in order (a newer plan replaces one not yet
sent). A client's SDP waits for its session's queued plans first, so an offer made right
after admission always finds its media path.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from signaling.core import commands as c
from signaling.core.media_plan import plan_for
from signaling.core.model import SessionState
from signaling.edge.fanout import Fanout
from signaling.edge.runtime import SessionHub
from signaling.ports import MediaKind, MediaPlan, Relay, SignalType
from signaling.protocol import error, ok

log = logging.getLogger("circle.media")

CLOSE = None
"""Queued instead of a plan: release every peer connection of the session."""

MEDIA_RESET_REASON = "the media connection was lost; reconnecting media"
MEDIA_KINDS: tuple[MediaKind, ...] = ("audio", "video")


class MediaCoordinator:
    """The control plane's side of the data plane (and the relay's listener)."""

    def __init__(self, fanout: Fanout, hub: SessionHub, relay: Relay | None = None) -> None:
        self._fanout = fanout
        self._hub = hub
        self._relay = relay
        self._plans: dict[str, MediaPlan] = {}
        self._queued: dict[str, MediaPlan | None] = {}
        self._pumps: dict[str, asyncio.Task[None]] = {}
        # Per participant: orders the relay's answer before the relay's next offer.
        self._signal_locks: dict[tuple[str, str], asyncio.Lock] = {}

    def attach(self, relay: Relay) -> None:
        """Give the coordinator its relay (built after it: the relay needs it as listener)."""
        self._relay = relay

    def update(self, state: SessionState) -> None:
        """Queue the session's plan if it changed (never waits on the relay)."""
        if self._relay is None or state.info is None:
            return
        session_id = state.info.id
        if state.ended:
            self.forget(session_id)
            return
        plan = plan_for(state)
        if self._plans.get(session_id) == plan:
            return
        self._plans[session_id] = plan
        self._queue(session_id, plan)

    async def signal(self, session_id: str, participant_id: str,
                     command: c.Signal) -> dict[str, Any]:
        """A client's offer or answer, through the relay; the answer goes back as `signal`."""
        relay = self._relay
        if relay is None:
            return error("conflict", "media is not available on this server")
        async with self._lock(session_id, participant_id):
            await self._flushed(session_id)
            try:
                answer = await relay.signal(session_id, participant_id, command.type,
                                            command.sdp)
            except ValueError as exc:
                return error("invalid", f"signal: {exc}")
            if answer is not None:
                await self._fanout.to_participant(session_id, participant_id, "signal",
                                                  {"type": "answer", "sdp": answer})
        return ok()

    async def reset_all(self, state: SessionState) -> None:
        """This node's relay is new to the session (it took the session over): every
        participant with a media path must offer again, to this relay."""
        if self._relay is None or state.info is None:
            return
        for participant_id in plan_for(state).grants:
            await self.media_reset(state.info.id, participant_id)

    def forget(self, session_id: str) -> None:
        """The session moved to another node: release its peers here."""
        if self._plans.pop(session_id, None) is not None or session_id in self._queued:
            self._queue(session_id, CLOSE)
        for key in [k for k in self._signal_locks if k[0] == session_id]:
            del self._signal_locks[key]

    async def close(self) -> None:
        """Let queued plans reach the relay (server shutdown)."""
        await asyncio.gather(*self._pumps.values(), return_exceptions=True)

    # -- RelayListener ----------------------------------------------------------------------

    async def send_signal(
        self, session_id: str, participant_id: str, kind: SignalType, sdp: str
    ) -> None:
        # Never before the answer to the participant's own offer: a media worker's answer
        # and its next offer arrive together, and an offer that overtook the answer would
        # meet the client in have-local-offer (glare: the browser rolls back, then refuses
        # the late answer in "stable").
        async with self._lock(session_id, participant_id):
            await self._fanout.to_participant(session_id, participant_id, "signal",
                                              {"type": kind, "sdp": sdp})

    async def media_published(
        self, session_id: str, participant_id: str, kinds: frozenset[MediaKind]
    ) -> None:
        # This relay reports flows too (media_flow): attendance counts minutes from those.
        await self._hub.submit(session_id, c.SYSTEM,
                               c.ReportMedia(participant_id, kinds, flows=True))

    async def media_flow(
        self, session_id: str, participant_id: str, kind: MediaKind, flowing: bool,
        ago_s: float,
    ) -> None:
        await self._hub.submit(session_id, c.SYSTEM,
                               c.ReportMediaFlow(participant_id, kind, flowing, ago_s))

    async def talk_time(self, session_id: str, seconds: Mapping[str, float]) -> None:
        await self._hub.submit(session_id, c.SYSTEM, c.ReportTalk(dict(seconds)))

    async def media_reset(self, session_id: str, participant_id: str) -> None:
        await self._fanout.to_participant(session_id, participant_id, "media_reset",
                                          {"reason": MEDIA_RESET_REASON})
        # The relay that saw this participant's media is gone (a media worker restarted,
        # or this node took the session over): whatever flowed there has stopped.
        for kind in MEDIA_KINDS:
            await self.media_flow(session_id, participant_id, kind, False, 0.0)

    def _lock(self, session_id: str, participant_id: str) -> asyncio.Lock:
        key = (session_id, participant_id)
        lock = self._signal_locks.get(key)
        if lock is None:
            lock = self._signal_locks[key] = asyncio.Lock()
        return lock

    # -- the per-session pump ---------------------------------------------------------------

    def _queue(self, session_id: str, plan: MediaPlan | None) -> None:
        relay = self._relay
        if relay is None:  # no plan exists before `attach`: the callers have returned already
            return
        self._queued[session_id] = plan
        if session_id not in self._pumps:
            task = asyncio.get_running_loop().create_task(self._pump(relay, session_id))
            self._pumps[session_id] = task

    async def _pump(self, relay: Relay, session_id: str) -> None:
        try:
            while session_id in self._queued:
                plan = self._queued.pop(session_id)
                try:
                    if plan is CLOSE:
                        await relay.close_session(session_id)
                    else:
                        await relay.apply_plan(plan)
                except Exception as exc:
                    log.warning("relay refused a media plan (%s)", type(exc).__name__)
        finally:
            self._pumps.pop(session_id, None)

    async def _flushed(self, session_id: str) -> None:
        pump = self._pumps.get(session_id)
        if pump is not None:
            await asyncio.shield(pump)
