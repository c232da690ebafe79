"""A media worker process: one `MediaRelay` on its own event loop, driven over a channel.

Started by `server.media.workers.pool` as `python -m server.media.workers.process`, with one
end of a Unix socket pair as `--fd`. It exits when the channel closes (the control plane
stopped or died), so an orphaned worker never keeps media sockets open.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import socket
import sys
import time
from collections.abc import Mapping

from server.media.background import Background
from server.media.relay import MediaRelay
from server.media.settings import RelaySettings
from server.media.workers import messages as m
from server.media.workers.channel import Channel, ChannelClosed
from server.media.workers.settings import WorkerSettings
from signaling.ports import MediaKind, SignalType

log = logging.getLogger("circle.media.worker")

STATS_INTERVAL_S = 1.0
LAG_PROBE_S = 0.1


class _ChannelListener:
    """The relay's listener in a worker: what it says goes back over the channel."""

    def __init__(self, channel: Channel[m.ToWorker]) -> None:
        self._channel = channel

    async def send_signal(
        self, session_id: str, participant_id: str, kind: SignalType, sdp: str
    ) -> None:
        self._channel.send(m.RelayOffer(session_id=session_id, participant_id=participant_id,
                                        sdp=sdp))

    async def media_published(
        self, session_id: str, participant_id: str, kinds: frozenset[MediaKind]
    ) -> None:
        self._channel.send(m.Published(session_id=session_id, participant_id=participant_id,
                                       kinds=tuple(sorted(kinds))))

    async def media_flow(
        self, session_id: str, participant_id: str, kind: MediaKind, flowing: bool,
        ago_s: float,
    ) -> None:
        self._channel.send(m.Flow(session_id=session_id, participant_id=participant_id,
                                  kind=kind, flowing=flowing, ago_s=ago_s))

    async def talk_time(self, session_id: str, seconds: Mapping[str, float]) -> None:
        self._channel.send(m.Talk(session_id=session_id, seconds=dict(seconds)))


class Worker:
    """Dispatches the control plane's messages to the relay, in arrival order.

    Plans and closes are applied at once in order (the relay reconciles synchronously and
    releases peers in the background), so a signal that follows a plan always finds the
    plan's peers; each SDP operation runs in a task of its own, so one slow negotiation
    never holds up another session's messages.
    """

    def __init__(self, channel: Channel[m.ToWorker], settings: RelaySettings) -> None:
        self._channel = channel
        self.relay = MediaRelay(_ChannelListener(channel), settings)
        self._background = Background(log, "media worker task")
        self.loop_lag_ms = 0.0

    async def run(self) -> None:
        self._channel.send(m.Ready(pid=os.getpid()))
        self._background.spawn(self._report_stats())
        self._background.spawn(self._probe_lag())
        try:
            while True:
                await self._dispatch(await self._channel.receive())
        except ChannelClosed:
            log.info("channel closed; media worker %d stops", os.getpid())
        finally:
            self._background.cancel()
            await self.relay.close()

    async def _dispatch(self, message: m.ToWorker) -> None:
        match message:
            case m.ApplyPlan():
                await self.relay.apply_plan(message.plan())
            case m.CloseSession():
                await self.relay.close_session(message.session_id)
            case m.Signal():
                self._background.spawn(self._signal(message))

    async def _signal(self, message: m.Signal) -> None:
        try:
            answer = await self.relay.signal(message.session_id, message.participant_id,
                                             message.kind, message.sdp)
            reply = m.SignalReply(request=message.request, answer=answer)
        except ValueError as exc:
            reply = m.SignalReply(request=message.request, error=str(exc))
        with contextlib.suppress(ChannelClosed):
            self._channel.send(reply)

    async def _report_stats(self) -> None:
        while True:
            counters = self.relay.counters()
            with contextlib.suppress(ChannelClosed):
                self._channel.send(m.Stats(
                    sessions=counters.sessions, peers=counters.peers,
                    forwarded_packets=counters.forwarded_packets,
                    dropped_packets=counters.dropped_packets,
                    loop_lag_ms=round(self.loop_lag_ms, 3)))
            await asyncio.sleep(STATS_INTERVAL_S)

    async def _probe_lag(self) -> None:
        """How late the loop wakes up: the queueing delay every packet of this worker sees."""
        worst = 0.0
        started = time.monotonic()
        while True:
            due = time.monotonic() + LAG_PROBE_S
            await asyncio.sleep(LAG_PROBE_S)
            worst = max(worst, (time.monotonic() - due) * 1000)
            if time.monotonic() - started >= STATS_INTERVAL_S:
                self.loop_lag_ms, worst, started = worst, 0.0, time.monotonic()


async def _main(fd: int, settings: WorkerSettings) -> None:
    sock = socket.socket(fileno=fd)
    channel: Channel[m.ToWorker] = await Channel.over(sock, m.TO_WORKER)
    await Worker(channel, settings.relay_settings()).run()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m server.media.workers.process")
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--index", type=int, required=True)
    parser.add_argument("--settings", required=True, help="WorkerSettings as JSON")
    args = parser.parse_args(argv)
    settings = WorkerSettings.model_validate_json(args.settings)
    logging.basicConfig(
        level=settings.log_level.upper(), stream=sys.stderr,
        format=f"%(asctime)s %(levelname)s %(name)s[worker {args.index}]: %(message)s",
    )
    logging.getLogger("aioice").setLevel(logging.WARNING)
    logging.getLogger("aiortc").setLevel(logging.WARNING)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main(args.fd, settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
