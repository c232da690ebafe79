"""A Circle participant in Python: the v1 wire contract over python-socketio, plus media.

Used by the tests, the benchmarks and the command line (`python -m client`). It keeps the
latest `state` view, answers relay offers strictly in arrival order (python-socketio runs
each event in a task of its own, so order is restored here with one queue), and starts
media once the participant is admitted.

It also finds its way back by itself. Given several nodes (or one load balancer), a lost
connection (transport closed, server disconnect, or the server's `reconnect` request of a
draining node) is followed by attempts with backoff and jitter, rotating through the nodes
from the next one, with the same join token: within the reconnect grace the seat (status,
room, role, mutes) is kept, so there is no new admit. It also presents the resume secret of
its latest `seat`, so it takes its seat back at once even when the server has not noticed
the old connection drop yet (without it, that would be a second device, which waits for a
therapist: see `second_device`). Media starts over on the new connection as after a
`media_reset`.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import socketio
from pydantic import ValidationError

from client.reconnect import (
    DEFAULT_BACKOFF,
    Backoff,
    is_transient_refusal,
    merge_nodes,
    parse_nodes,
    reconnect_schedule,
    session_of,
    takes_turns,
    with_session,
)
from signaling.protocol import SERVER_EVENTS, ReconnectMessage

if TYPE_CHECKING:
    from client.media import MediaPeer

StatePredicate = Callable[[dict[str, Any]], bool]
LinkHook = Callable[[str, str], None]
_Loss = tuple[socketio.AsyncClient, bool]
"""A socket that went down, and whether the server closed it without announcing it."""
_FINAL_STATUSES = ("denied", "removed", "left")
_FINAL_NOTICES = {
    "continued_elsewhere": "replaced",
    "second_device_replaced": "replaced",
    "second_device_refused": "refused",
    "second_device_closed": "closed",
}
"""Notices after which the server closes this connection for good: the seat moved to the
participant's other device, or this waiting second device was turned away (the code its
`gave_up` carries)."""


CLOSE_STEP_TIMEOUT_S = 5.0
"""How long `close` waits for the socket, and then for the media, to shut down."""


class JoinRefused(Exception):
    """The server refused the connection; `code` and `message` say why.

    `code` is the server's (`forbidden`, `conflict`, ...), or `unreachable` when no node
    answered, or `replaced` when another connection with the same join link took the seat,
    or `refused` / `closed` when this connection waited as a second device and was turned
    away, or stopped waiting (it left, the seat left, or its invite was revoked).
    """

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
    relay_only: bool = False
    """Use only TURN-relayed candidates (iceTransportPolicy "relay"): checks the clinic's
    TURN server (CIRCLE_TURN_URLS), as a client behind a strict firewall would use it."""


class CircleClient:
    """One participant's connection to a Circle server (any of its nodes)."""

    def __init__(self, url: str | Sequence[str], token: str, media: MediaOptions | None = None,
                 *, backoff: Backoff = DEFAULT_BACKOFF, rng: random.Random | None = None,
                 e2ee_key: str | None = None) -> None:
        if e2ee_key is not None and media is not None:
            # aiortc has no hook on encoded frames: this client's media would go out in
            # the clear, and end-to-end encrypted sessions refuse a client without a key.
            raise ValueError("the Python client cannot encrypt media: an e2ee_key is for a "
                             "signaling-only client (media=None)")
        self._e2ee_key = e2ee_key
        """The public key presented at connect (`auth.e2ee_key`); None: no key, so an
        end-to-end encrypted session refuses this client with the reason."""
        self.media_keys: list[dict[str, Any]] = []
        """`e2ee_key` messages received (wrapped media keys of roommates)."""
        self._given = parse_nodes([url] if isinstance(url, str) else url)
        self.nodes = self._given
        """Where to connect: the URLs given (comma-separated or a sequence), then the
        server's `config.nodes` not among them."""
        self.url = self.nodes[0]
        """The node of the current (or last) connection."""
        self._token = token
        self.session_id = session_of(token)
        """From the token's claims; sent as `?session=` so nginx keeps a session on one node."""
        self._media_options = media
        self.backoff = backoff
        self._rng = rng or random.Random()  # noqa: S311 (reconnect jitter, not a secret)
        self.sio = self._new_socket()
        """The current socket: a new one for every connection attempt, so nothing of a lost
        connection (its URL, buffered packets, pending acks) leaks into the next."""
        self.state: dict[str, Any] | None = None
        self.config: dict[str, Any] = {"ice_servers": []}
        """The server's `config` (ICE servers); it arrives before the first state."""
        self.notices: list[dict[str, Any]] = []
        self.chats: list[dict[str, Any]] = []
        self.ended = asyncio.Event()
        self.media: MediaPeer | None = None
        self._stopping = False
        """A `stop` is queued: the view left `admitted` (sent back to waiting) while media
        ran; the relay has closed this peer connection, so it is closed here too."""
        self.media_resets = 0
        """`media_reset`s handled: each closed the peer connection and offered anew."""
        self.reconnects = 0
        """Connections opened by the client itself after losing one."""
        self.gave_up: JoinRefused | None = None
        self.resume: str | None = None
        """The secret of the latest `seat`: presented on the next connect (`auth.resume`),
        it proves this is the browser that held the seat, which it then takes back at once
        even if the server has not noticed the old connection drop yet."""
        """Why the client stopped reconnecting for good (refused, or replaced), if it did."""
        self.protocol_errors: list[str] = []
        """Server messages that did not fit `signaling.protocol` (tests assert it stays empty)."""
        self.on_state: list[Callable[[dict[str, Any]], None]] = []
        """Called with every new `state` view, in order (e.g. to print each change)."""
        self.on_message: list[Callable[[str, Any], None]] = []
        """Called with every server message (event, payload) as it arrives, before use."""
        self.on_link: list[LinkHook] = []
        """Called with ("lost", reason), ("connected", url) and ("gave_up", why)."""
        self._changed = asyncio.Condition()
        self._signals: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._signal_task: asyncio.Task[None] | None = None
        self._losses: asyncio.Queue[_Loss] = asyncio.Queue()
        self._supervisor: asyncio.Task[None] | None = None
        self._refusal: JoinRefused | None = None
        self._connected_at = 0.0
        self._announced = False
        """The server asked this connection to move (`reconnect`) before closing it."""
        self._opened_after_unannounced = False
        self._reopening_after_unannounced = False

    # -- lifecycle -----------------------------------------------------------------------

    async def connect(self, timeout: float = 10.0) -> None:
        """Connect with the join token, trying each node once in order.

        JoinRefused if a server says no (at once: all nodes share one database, so another
        node would say the same), or with code `unreachable` if no node answered.
        """
        unreachable: JoinRefused | None = None
        self._reopening_after_unannounced = False
        for url in self.nodes:
            try:
                await self._open(url, timeout)
                break
            except JoinRefused as refused:
                if refused.code != "unreachable":
                    raise
                unreachable = refused
        else:
            raise unreachable or JoinRefused("unreachable", "no node to try")
        if self._supervisor is None:
            self._supervisor = asyncio.create_task(self._supervise())

    async def close(self) -> None:
        """Disconnect, stop reconnecting and release media; safe to call twice."""
        supervisor, self._supervisor = self._supervisor, None
        if supervisor is not None:
            supervisor.cancel()
            await asyncio.wait({supervisor}, timeout=CLOSE_STEP_TIMEOUT_S)
        # Bounded: a transport or a peer connection stuck mid-teardown must not keep a
        # participant (or a test run) from leaving.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.sio.disconnect(), CLOSE_STEP_TIMEOUT_S)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop_media(), CLOSE_STEP_TIMEOUT_S)

    async def drop(self) -> None:
        """Lose the connection without saying goodbye (a network blip), and stay down.

        The server sees the transport close (a drop, with its grace period); this side
        counts it as its own disconnect, so it does not reconnect until `rejoin`.
        """
        await self._stop_media()
        await self.sio.eio.disconnect(abort=True)

    async def rejoin(self) -> None:
        """Come back after `drop` with the same token."""
        await self.connect()

    async def _open(self, url: str, timeout: float = 10.0) -> None:
        """One connection attempt to `url` on a fresh socket (it becomes `self.sio`)."""
        sio = self._new_socket()
        self.sio = sio
        self._refusal = None
        self._announced = False
        try:
            auth = {"token": self._token}
            if self.resume:
                auth["resume"] = self.resume
            if self._e2ee_key:
                auth["e2ee_key"] = self._e2ee_key
            await sio.connect(with_session(url, self.session_id), auth=auth,
                              transports=["websocket"], wait_timeout=timeout, retry=False)
        except socketio.exceptions.ConnectionError as exc:
            # Engine.IO keeps its HTTP session after a failed handshake: release it here,
            # reconnection makes many attempts.
            await sio.eio.disconnect()
            raise self._refusal or JoinRefused("unreachable", str(exc)) from None
        self.url = url
        self._opened_after_unannounced = self._reopening_after_unannounced
        for hook in self.on_link:
            hook("connected", url)

    async def _supervise(self) -> None:
        """After each loss of the current socket: reconnect, until refused for good."""
        while True:
            lost, unannounced = await self._losses.get()
            # Both the `reconnect` request and the disconnect after it report one loss.
            if lost is not self.sio or not self._wants_back():
                continue
            if not await self._reconnect(unannounced):
                return

    async def _reconnect(self, after_unannounced: bool) -> bool:
        """Attempts by the backoff schedule, from the node after the lost one; False when
        the client gave up (a refusal that will not pass)."""
        self._reopening_after_unannounced = after_unannounced
        current = self.nodes.index(self.url) if self.url in self.nodes else -1
        schedule = reconnect_schedule(len(self.nodes), current, self._rng, self.backoff)
        while True:
            attempt = next(schedule)
            await asyncio.sleep(attempt.delay_s)
            try:
                await self._open(self.nodes[attempt.node])
            except JoinRefused as refused:
                if is_transient_refusal(refused.code, refused.message):
                    continue
                await self._give_up(refused)
                return False
            self.reconnects += 1
            await self._notify()
            return True

    async def _give_up(self, why: JoinRefused) -> None:
        self.gave_up = why
        for hook in self.on_link:
            hook("gave_up", f"{why.message} ({why.code})")
        await self._notify()

    def _wants_back(self) -> bool:
        """False once the session is over for this participant: nothing to come back to."""
        if self.ended.is_set() or self.gave_up is not None or self.status in _FINAL_STATUSES:
            return False
        # Denied and removed participants get their notice before the view that says so.
        return not any(n["kind"] in ("denied", "removed", *_FINAL_NOTICES)
                       for n in self.notices)

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
            state = self.state
            if state is None:
                raise RuntimeError("wait_for: condition met without a state view")
            return state

    async def wait_notice(self, kind: str, timeout: float = 10.0) -> dict[str, Any]:
        """The first notice of `kind` (already received or still to come)."""
        await self.wait_until(lambda: any(n["kind"] == kind for n in self.notices), timeout)
        return next(n for n in self.notices if n["kind"] == kind)

    async def wait_chat(self, timeout: float = 10.0) -> dict[str, Any]:
        """The first chat message received."""
        await self.wait_until(lambda: bool(self.chats), timeout)
        return self.chats[0]

    async def wait_until(self, condition: Callable[[], bool], timeout: float = 10.0) -> None:
        """Wait until `condition` holds; re-checked on every server event and every change
        of connection (lost, reconnected, gave up)."""
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(condition), timeout)

    @property
    def connected(self) -> bool:
        """Connected right now (False while reconnecting: commands would fail)."""
        return bool(self.sio.connected)

    @property
    def second_device(self) -> bool:
        """This connection waits as the participant's second device: the participant is
        connected on another one, and a therapist decides whether this one takes the seat
        (it has no media, no roster, no chat meanwhile; it can only `leave`)."""
        return self.state is not None and self.state["you"].get("second_device") == "waiting"

    @property
    def status(self) -> str | None:
        return None if self.state is None else str(self.state["you"]["status"])

    # -- server events -------------------------------------------------------------------

    def _new_socket(self) -> socketio.AsyncClient:
        # Reconnection is ours (`_supervise`): python-socketio's own would retry the same
        # URL, and not at all after a server-side disconnect.
        sio = socketio.AsyncClient(reconnection=False)
        for event in SERVER_EVENTS:
            sio.on(event, self._handler(sio, event))
        sio.on("connect", self._connect_handler(sio))
        sio.on("connect_error", self._connect_error_handler(sio))
        sio.on("disconnect", self._disconnect_handler(sio))
        return sio

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    def _handler(self, sio: socketio.AsyncClient, event: str) -> Callable[[Any], Any]:
        model = SERVER_EVENTS[event]

        async def handle(data: Any = None) -> None:
            if sio is not self.sio:
                return  # a late message of a connection already replaced
            for listener in self.on_message:
                listener(event, data)
            try:
                message = model.model_validate(data)
            except ValidationError as exc:
                self.protocol_errors.append(f"{event}: {exc.errors(include_input=False)[:2]}")
                return
            if isinstance(message, ReconnectMessage):
                await self._move(sio, message.after_ms, message.reason)
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
                    self.nodes = merge_nodes(self._given, data.get("nodes"))
                elif event == "notice":
                    self.notices.append(data)
                elif event == "seat":
                    self.resume = data["resume"]
                elif event == "chat":
                    self.chats.append(data)
                elif event == "e2ee_key":
                    self.media_keys.append(data)
                elif event == "ended":
                    self.ended.set()
                self._changed.notify_all()

        return handle

    async def _move(self, sio: socketio.AsyncClient, after_ms: int, reason: str) -> None:
        """A draining node asks its clients to go: leave now rather than wait for it to
        close us, and come back (next node first) after the pause it asks for (spread by
        the node, so its clients do not all arrive at once)."""
        self._announced = True
        for hook in self.on_link:
            hook("lost", f"the node asked to move ({reason})")
        await sio.disconnect()
        await asyncio.sleep(max(after_ms, 0) / 1000)
        self._losses.put_nowait((sio, False))

    def _connect_handler(self, sio: socketio.AsyncClient) -> Callable[[], Any]:
        async def handle() -> None:
            if sio is not self.sio:
                return
            self._connected_at = time.monotonic()
            self._signal_task = asyncio.create_task(self._apply_signals(self._signals))
            await self._notify()

        return handle

    def _connect_error_handler(self, sio: socketio.AsyncClient) -> Callable[[Any], Any]:
        async def handle(data: Any = None) -> None:
            if sio is not self.sio or not isinstance(data, dict):
                return
            details = data.get("data")
            code = details.get("code") if isinstance(details, dict) else None
            self._refusal = JoinRefused(str(code or "refused"), str(data.get("message", "")))

        return handle

    def _disconnect_handler(self, sio: socketio.AsyncClient) -> Callable[[str], Any]:
        async def handle(reason: str = "") -> None:
            if sio is not self.sio:
                return
            uptime_s = time.monotonic() - self._connected_at
            # The relay has closed this connection's peer connection: media starts over.
            await self._stop_media()
            await self._notify()
            if reason == sio.reason.CLIENT_DISCONNECT or self._announced:
                return  # our own doing (close, drop), or the `reconnect` handler's to follow
            for hook in self.on_link:
                hook("lost", reason)
            final = next((n for n in self.notices if n["kind"] in _FINAL_NOTICES), None)
            if final is not None and self.gave_up is None:
                await self._give_up(JoinRefused(_FINAL_NOTICES[final["kind"]], final["text"]))
                return
            if not self._wants_back():
                return
            unannounced = reason == sio.reason.SERVER_DISCONNECT
            if unannounced and takes_turns(self._opened_after_unannounced, uptime_s):
                await self._give_up(JoinRefused(
                    "replaced", "this join link was opened elsewhere, which took this seat"))
                return
            self._losses.put_nowait((sio, unannounced))

        return handle

    # -- media ---------------------------------------------------------------------------

    def _maybe_start_media(self) -> None:
        if (self.media is not None and self.state is not None and not self._stopping
                and self.state["you"]["status"] != "admitted"):
            self._stopping = True
            self._signals.put_nowait({"type": "stop"})
            return
        if self._media_options is None or self.media is not None or self.state is None:
            return
        if self.state["you"]["status"] != "admitted" or self.state["session"]["ended"]:
            return
        if self.second_device:
            return
        from client.media import MediaPeer

        options = self._media_options
        self.media = MediaPeer(publish_audio=options.audio, publish_video=options.video,
                               loopback=options.loopback,
                               ice_servers=self.config.get("ice_servers", []),
                               video_codec=options.video_codec,
                               relay_only=options.relay_only)
        self._signals.put_nowait({"type": "start"})

    async def _apply_signals(self, signals: asyncio.Queue[dict[str, Any]]) -> None:
        """One connection's offers and answers, one at a time in arrival order."""
        while True:
            message = await signals.get()
            if message["type"] == "reset":
                self.media_resets += 1
                await self._close_media()
                self._maybe_start_media()
                continue
            if message["type"] == "stop":  # no media path any more (back in the waiting room)
                self._stopping = False
                await self._close_media()
                self._maybe_start_media()  # admitted again meanwhile: offer anew
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

    async def _stop_media(self) -> None:
        """End this connection's media: its signal queue (stale answers must not reach the
        next peer connection) and its peer connection."""
        task, self._signal_task = self._signal_task, None
        self._signals = asyncio.Queue()
        self._stopping = False
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._close_media()

    async def _close_media(self) -> None:
        media, self.media = self.media, None
        if media is not None:
            await media.close()

    async def received(self) -> dict[str, Any]:
        """Per publisher, by the id this participant knows it by (a therapist: the real id;
        a client: the handle): packets, frames decoded, first-frame time (empty without
        media). The relay names streams by handle; the latest view maps them back."""
        if self.media is None:
            return {}
        known = {p["handle"]: p["id"] for p in (self.state or {}).get("participants", [])}
        return {known.get(handle, handle): stats
                for handle, stats in (await self.media.stats()).items()}

    def handle_of(self, participant_id: str) -> str:
        """The handle clients know `participant_id` by, from this (therapist's) view."""
        view = self.state or {}
        for p in [*view.get("participants", []), *view.get("waiting", [])]:
            if p["id"] == participant_id:
                return str(p["handle"])
        raise KeyError(f"{participant_id} is not in this participant's view")

