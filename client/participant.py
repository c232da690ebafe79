"""A Circle participant in Python: the v1 wire contract over python-socketio, plus media.

Used by the tests, the benchmarks and the command line (`python -m client`). It keeps the
latest `state` view, answers relay offers strictly in arrival order (python-socketio runs
each event in a task of its own, so order is restored here with one queue), and starts
media once the participant is admitted.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import socketio
from pydantic import ValidationError

from signaling.protocol import SERVER_EVENTS

if TYPE_CHECKING:
    from client.media import MediaPeer

StatePredicate = Callable[[dict[str, Any]], bool]


class JoinRefused(Exception):
    """The server refused the connection; `code` and `message` say why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True)
class MediaOptions:
    """What this participant publishes once admitted (None on the client: signaling only)."""

    audio: bool = True
    video: bool = True
    loopback: bool = True
    """Gather 127.0.0.1 candidates: the relay runs on this machine (tests, demos)."""
    video_codec: str = "VP8"
    """The only video codec offered (VP8 or H264)."""


class CircleClient:
    """One participant's connection to a Circle server."""

    def __init__(self, url: str, token: str, media: MediaOptions | None = None) -> None:
        self.url = url
        self._token = token
        self._media_options = media
        self.sio = socketio.AsyncClient(reconnection=True, reconnection_delay=0.2,
                                        reconnection_delay_max=1.0)
        self.state: dict[str, Any] | None = None
        self.config: dict[str, Any] = {"ice_servers": []}
        """The server's `config` (ICE servers); it arrives before the first state."""
        self.notices: list[dict[str, Any]] = []
        self.chats: list[dict[str, Any]] = []
        self.ended = asyncio.Event()
        self.media: MediaPeer | None = None
        self.media_resets = 0
        """`media_reset`s handled: each closed the peer connection and offered anew."""
        self.protocol_errors: list[str] = []
        """Server messages that did not fit `signaling.protocol` (tests assert it stays empty)."""
        self.on_state: list[Callable[[dict[str, Any]], None]] = []
        """Called with every new `state` view, in order (e.g. to print each change)."""
        self._changed = asyncio.Condition()
        self._signals: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._signal_task: asyncio.Task[None] | None = None
        self._refusal: JoinRefused | None = None
        for event in SERVER_EVENTS:
            self.sio.on(event, self._handler(event))
        self.sio.on("connect", self._on_connect)
        self.sio.on("connect_error", self._on_connect_error)

    # -- lifecycle -----------------------------------------------------------------------

    async def connect(self, timeout: float = 10.0) -> None:
        """Connect with the join token; JoinRefused if the server says no."""
        try:
            await self.sio.connect(self.url, auth={"token": self._token},
                                   transports=["websocket"], wait_timeout=timeout,
                                   retry=False)
        except socketio.exceptions.ConnectionError as exc:
            if self._refusal is not None:
                raise self._refusal from None
            raise JoinRefused("unreachable", str(exc)) from None
        self._signal_task = asyncio.create_task(self._apply_signals())

    async def close(self) -> None:
        """Disconnect and release media; safe to call twice."""
        if self._signal_task is not None:
            self._signal_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._signal_task
            self._signal_task = None
        await self._close_media()
        with contextlib.suppress(Exception):
            await self.sio.disconnect()

    async def drop(self) -> None:
        """Lose the connection without saying goodbye (a network blip), and stay down."""
        self.sio.reconnection = False
        await self._close_media()
        await self.sio.eio.disconnect(abort=True)

    async def rejoin(self) -> None:
        """Come back after `drop` with the same token."""
        self.sio.reconnection = True
        await self.connect()

    # -- commands ------------------------------------------------------------------------

    async def call(self, event: str, data: Any = None, timeout: float = 10.0) -> dict[str, Any]:
        """Emit a client event and return its ack (`{"ok": ...}`)."""
        reply = await self.sio.call(event, {} if data is None else data, timeout=timeout)
        if not isinstance(reply, dict):
            raise RuntimeError("server sent a malformed ack")
        return reply

    async def wait_for(self, predicate: StatePredicate, timeout: float = 10.0) -> dict[str, Any]:
        """The first state view (current or future) for which `predicate` holds."""
        async with self._changed:
            await asyncio.wait_for(
                self._changed.wait_for(lambda: self.state is not None and predicate(self.state)),
                timeout,
            )
            assert self.state is not None
            return self.state

    async def wait_notice(self, kind: str, timeout: float = 10.0) -> dict[str, Any]:
        """The first notice of `kind` (already received or still to come)."""
        await self.wait_until(lambda: any(n["kind"] == kind for n in self.notices), timeout)
        return next(n for n in self.notices if n["kind"] == kind)

    async def wait_chat(self, timeout: float = 10.0) -> dict[str, Any]:
        """The first chat message received."""
        await self.wait_until(lambda: bool(self.chats), timeout)
        return self.chats[0]

    async def wait_until(self, condition: Callable[[], bool], timeout: float = 10.0) -> None:
        """Wait until `condition` holds; it is re-checked whenever a server event arrives."""
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(condition), timeout)

    @property
    def status(self) -> str | None:
        return None if self.state is None else str(self.state["you"]["status"])

    # -- server events -------------------------------------------------------------------

    def _handler(self, event: str) -> Callable[[Any], Any]:
        model = SERVER_EVENTS[event]

        async def handle(data: Any = None) -> None:
            try:
                model.model_validate(data)
            except ValidationError as exc:
                self.protocol_errors.append(f"{event}: {exc.errors(include_input=False)[:2]}")
                return
            if event in ("signal", "media_reset"):
                # A reset is ordered with the signals: answers in flight for the old peer
                # connection are applied (or dropped) before the new one offers.
                await self._signals.put({"type": "reset"} if event == "media_reset" else data)
                return
            async with self._changed:
                if event == "state":
                    if self.state is None or data["rev"] >= self.state["rev"]:
                        self.state = data
                        for hook in self.on_state:
                            hook(data)
                        self._maybe_start_media()
                elif event == "config":
                    self.config = data
                elif event == "notice":
                    self.notices.append(data)
                elif event == "chat":
                    self.chats.append(data)
                elif event == "ended":
                    self.ended.set()
                self._changed.notify_all()

        return handle

    async def _on_connect(self) -> None:
        # A reconnect means the relay closed our old peer connection: start over.
        await self._close_media()

    async def _on_connect_error(self, data: Any) -> None:
        if isinstance(data, dict):
            details = data.get("data")
            code = details.get("code") if isinstance(details, dict) else None
            self._refusal = JoinRefused(str(code or "refused"), str(data.get("message", "")))

    # -- media ---------------------------------------------------------------------------

    def _maybe_start_media(self) -> None:
        if self._media_options is None or self.media is not None or self.state is None:
            return
        if self.state["you"]["status"] != "admitted" or self.state["session"]["ended"]:
            return
        from client.media import MediaPeer

        options = self._media_options
        self.media = MediaPeer(publish_audio=options.audio, publish_video=options.video,
                               loopback=options.loopback,
                               ice_servers=self.config.get("ice_servers", []),
                               video_codec=options.video_codec)
        self._signals.put_nowait({"type": "start"})

    async def _apply_signals(self) -> None:
        """Offers and answers, one at a time in arrival order (see FACTS.md)."""
        while True:
            message = await self._signals.get()
            if message["type"] == "reset":
                self.media_resets += 1
                await self._close_media()
                self._maybe_start_media()
                continue
            media = self.media
            if media is None:
                continue
            try:
                if message["type"] == "start":
                    offer = await media.create_offer()
                    await self.call("signal", {"type": "offer", "sdp": offer})
                elif message["type"] == "answer":
                    await media.apply_answer(message["sdp"])
                elif message["type"] == "offer":
                    answer = await media.handle_offer(message["sdp"])
                    await self.call("signal", {"type": "answer", "sdp": answer})
            except Exception as exc:  # a failed negotiation must not stop later ones
                self.notices.append({"kind": "media_error", "text": type(exc).__name__})

    async def _close_media(self) -> None:
        media, self.media = self.media, None
        if media is not None:
            await media.close()

    async def received(self) -> dict[str, Any]:
        """Per publisher: packets, frames decoded, first-frame time (empty without media)."""
        return {} if self.media is None else dict(await self.media.stats())

