"""One participant's peer connection on the relay, and the lane that negotiates it.

All SDP work on one connection happens under one lock, and at most one relay offer is in
flight: a change that arrives meanwhile only marks the peer dirty, and the next offer is
made when the answer comes back. Forwarded tracks are m-sections the relay adds
(sendonly, msid = the publisher's handle, never its id); a track that stops being wanted
is set inactive and stops forwarding at once, before the client has even seen the new
offer.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import weakref
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from aiortc import (
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpCodecCapability,
    RTCRtpSender,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from aiortc import sdp as aiortc_sdp
from aiortc.rtcconfiguration import RTCBundlePolicy
from aiortc.rtcrtpparameters import RTCRtpReceiveParameters, RTCRtpSendParameters

from server.media import aiortc_seam, ice
from server.media.forwarder import Egress, Ingress
from server.media.routing import TrackKey
from server.media.settings import RelaySettings
from signaling.ports import MediaKind, TrackKind

logger = logging.getLogger(__name__)

SendOffer = Callable[[str], Awaitable[None]]
OnFirstPacket = Callable[[str], None]
OnPublicationsChanged = Callable[[], None]

SENDING_DIRECTIONS = ("sendonly", "sendrecv")
SCREEN_CONTENT = "slides"
"""`a=content:slides` (RFC 4796) marks the video section of a client's offer that carries
its screen share; a client adds it to the offer text it sends (docs/media.md)."""
USABLE_FINGERPRINTS = ("sha-256", "sha-384", "sha-512")
_track_numbers = itertools.count(1)


_sdp_gates: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
    weakref.WeakKeyDictionary()
)


def _sdp_gate() -> asyncio.Lock:
    """One CPU-bound SDP step at a time per event loop, across all peers.

    Applying a description and creating an offer or answer are CPU-bound chunks of 5-25 ms
    each with a dozen participants (several times that on a loaded machine). When a dozen
    participants join at once, every peer's step is ready in the same loop iteration and
    the loop would run them back to back while packets (DTLS handshakes, first forwarded
    packets, PLIs) wait behind all of them. Taking turns leaves at most one chunk between
    two rounds of packet handling; the total work is the same. Steps that may wait on the
    network (candidate gathering in setLocalDescription) stay outside the gate.
    """
    loop = asyncio.get_running_loop()
    gate = _sdp_gates.get(loop)
    if gate is None:
        gate = _sdp_gates[loop] = asyncio.Lock()
    return gate


class SdpRejected(ValueError):
    """SDP the relay cannot use; the message is short and carries no SDP content."""


@dataclass
class _Slot:
    """A relay-added m-section carrying one forwarded track to this participant."""

    transceiver: RTCRtpTransceiver
    egress: Egress
    live: bool = False
    """The last answered offer had this m-section sendonly."""


class RelayPeer:
    """The relay's side of one participant: its publications and its forwarded tracks."""

    def __init__(
        self,
        settings: RelaySettings,
        send_offer: SendOffer,
        on_first_packet: OnFirstPacket,
        on_publications_changed: OnPublicationsChanged,
        label_of: Callable[[str], str] = lambda publisher: publisher,
    ) -> None:
        self._settings = settings
        self._label_of = label_of
        self._send_offer = send_offer
        self._on_first_packet = on_first_packet
        self._on_publications_changed = on_publications_changed
        self._pc: RTCPeerConnection | None = None
        self._remote_ufrag: str | None = None
        self._lock = asyncio.Lock()
        self._offer_in_flight = False
        self._dirty = False
        self._closed = False
        self._wanted: dict[TrackKey, Ingress] = {}
        self._slots: dict[TrackKey, _Slot] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.ingresses: dict[TrackKind, Ingress] = {}

    @property
    def published_kinds(self) -> frozenset[TrackKind]:
        return frozenset(self.ingresses)

    @property
    def media_ingresses(self) -> dict[MediaKind, Ingress]:
        """The microphone's and camera's ingresses (not the screen's): what attendance
        counts as audio and video."""
        return {kind: ingress for kind, ingress in self.ingresses.items()
                if kind != "screen"}

    @property
    def peer_connection(self) -> RTCPeerConnection | None:
        return self._pc

    @property
    def egresses(self) -> dict[TrackKey, Egress]:
        return {key: slot.egress for key, slot in self._slots.items()}

    def forwarded_packets(self) -> int:
        """Packets sent to this participant so far (its live forwarded tracks)."""
        return sum(slot.egress.packets_sent for slot in self._slots.values())

    def dropped_packets(self) -> int:
        """This participant's packets held back by its grant, plus failed sends to it."""
        return (sum(i.packets_dropped for i in self.ingresses.values())
                + sum(slot.egress.packets_failed for slot in self._slots.values()))

    # -- signaling ---------------------------------------------------------------

    async def accept_offer(self, sdp: str) -> str:
        """Apply the participant's offer and return the relay's answer."""
        async with self._lock:
            try:
                answer = await asyncio.wait_for(
                    self._accept_offer(sdp), self._settings.negotiation_timeout_s
                )
            except SdpRejected:
                raise
            except Exception as exc:
                logger.info("offer rejected (%s)", type(exc).__name__)
                await self._reset()
                self._on_publications_changed()
                raise SdpRejected(f"unusable offer ({type(exc).__name__})") from None
        self._on_publications_changed()
        self._schedule_negotiation()
        return answer

    async def accept_answer(self, sdp: str) -> None:
        """Apply the participant's answer to the relay's outstanding offer."""
        async with self._lock:
            pc = self._pc
            if pc is None or not self._offer_in_flight:
                raise SdpRejected("no relay offer is outstanding")
            filtered = ice.filter_remote_candidates(sdp, self._settings.allowed_networks)
            try:
                _rewritable(filtered)
                async with _sdp_gate():
                    await asyncio.wait_for(
                        pc.setRemoteDescription(
                            RTCSessionDescription(sdp=filtered, type="answer")
                        ),
                        self._settings.negotiation_timeout_s,
                    )
            except Exception as exc:
                logger.info("answer rejected (%s)", type(exc).__name__)
                await self._reset()
                self._on_publications_changed()
                raise SdpRejected(f"unusable answer ({type(exc).__name__})") from None
            self._offer_in_flight = False
            for key, slot in self._slots.items():
                slot.live = slot.transceiver.direction == "sendonly"
                self._start_if_ready(key)
        self._schedule_negotiation()

    async def _accept_offer(self, sdp: str) -> str:
        filtered = ice.filter_remote_candidates(sdp, self._settings.allowed_networks)
        parsed = _rewritable(filtered)
        media = [m for m in parsed.media if m.kind in ("audio", "video")]
        if not media:
            raise SdpRejected("offer has no audio or video section")
        if not _bundles_on_a_section(parsed):
            raise SdpRejected("offer bundles on an m-section it does not have")
        if not all(_has_usable_fingerprint(m) for m in parsed.media):
            raise SdpRejected("offer has no usable DTLS fingerprint")
        ufrag = media[0].ice.usernameFragment if media[0].ice is not None else None
        if self._pc is not None and ufrag != self._remote_ufrag:
            await self._reset()  # a fresh connection from the same participant
        if self._pc is None:
            self._pc = self._new_peer_connection()
        pc = self._pc
        if pc.signalingState != "stable":
            raise SdpRejected("a relay offer is outstanding; answer it first")
        async with _sdp_gate():
            await pc.setRemoteDescription(RTCSessionDescription(sdp=filtered, type="offer"))
            # No await between here and the hooks: aiortc's connect task must find them.
            directions = {m.rtp.muxId: m.direction for m in media}
            screens = _screen_mids(filtered)
            for transceiver in pc.getTransceivers():
                self._adopt(transceiver, directions, screens)
                aiortc_seam.guard_rtp_parsing(transceiver.receiver.transport)
            answer = await pc.createAnswer()
        # Outside the gate: the first setLocalDescription gathers candidates, which with
        # STUN/TURN servers waits on the network, and must not hold up other peers.
        await pc.setLocalDescription(answer)
        self._remote_ufrag = ufrag
        return str(pc.localDescription.sdp)

    def _new_peer_connection(self) -> RTCPeerConnection:
        pc = RTCPeerConnection(
            RTCConfiguration(
                iceServers=list(self._settings.ice_servers),
                bundlePolicy=RTCBundlePolicy.MAX_BUNDLE,
            )
        )

        def on_state_change() -> None:
            if pc.connectionState == "failed" and pc is self._pc:
                self._spawn(self._release_failed(pc))

        pc.on("connectionstatechange", on_state_change)
        return pc

    async def _release_failed(self, pc: RTCPeerConnection) -> None:
        """ICE or DTLS failed: free the connection; the participant may offer again."""
        async with self._lock:
            if pc is self._pc:
                await self._reset()
        self._on_publications_changed()

    def _adopt(self, transceiver: RTCRtpTransceiver, directions: dict[str, str | None],
               screens: frozenset[str] = frozenset()) -> None:
        """Put an Ingress where aiortc's decoder would go, for the first track of each kind
        (audio, camera video, and the screen: the video section marked `content:slides`)."""
        kind = transceiver.kind
        sending = directions.get(transceiver.mid or "") in SENDING_DIRECTIONS
        key: TrackKind = "audio" if kind == "audio" else "video"
        if kind == "video" and (transceiver.mid or "") in screens:
            key = "screen"
        if (
            sending
            and kind in ("audio", "video")
            and key not in self.ingresses
            and not self._is_slot(transceiver)
        ):
            ingress = Ingress(
                kind,
                rtcp_ssrc=aiortc_seam.sender_ssrc(transceiver.sender),
                # A screen is not the participant's video (attendance `modality`).
                on_first_packet=_ignore if key == "screen" else self._on_first_packet,
            )
            self.ingresses[key] = ingress
            receiver = transceiver.receiver

            async def bind(parameters: RTCRtpReceiveParameters) -> None:
                await ingress.bind(receiver.transport, parameters)

            aiortc_seam.hook_receiver(receiver, bind)
        aiortc_seam.disarm(transceiver)

    def _is_slot(self, transceiver: RTCRtpTransceiver) -> bool:
        return any(slot.transceiver is transceiver for slot in self._slots.values())

    # -- forwarding ----------------------------------------------------------------

    def set_wanted(self, wanted: dict[TrackKey, Ingress]) -> None:
        """Forward exactly these tracks: stops the others at once, negotiates additions."""
        self._wanted = dict(wanted)
        for key, slot in self._slots.items():
            target = wanted.get(key)
            if target is None:
                slot.egress.stop()
            else:
                self._start_if_ready(key)
        active = {k for k, s in self._slots.items() if s.transceiver.direction == "sendonly"}
        if active != set(wanted):
            self._dirty = True
            self._schedule_negotiation()

    def _start_if_ready(self, key: TrackKey) -> None:
        slot = self._slots.get(key)
        ingress = self._wanted.get(key)
        if slot is not None and ingress is not None and slot.live and slot.egress.bound:
            slot.egress.start(ingress)

    def _schedule_negotiation(self) -> None:
        if self._dirty and not self._closed:
            self._spawn(self._negotiate())

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _negotiate(self) -> None:
        async with self._lock:
            pc = self._pc
            if self._closed or pc is None or self._offer_in_flight or not self._dirty:
                return
            if pc.signalingState != "stable" or pc.remoteDescription is None:
                return
            try:
                async with _sdp_gate():
                    if self._closed or self._pc is not pc:
                        return
                    self._dirty = False
                    if not self._sync_slots(pc):
                        return
                    offer = await asyncio.wait_for(
                        aiortc_seam.create_offer(pc), self._settings.negotiation_timeout_s
                    )
                await asyncio.wait_for(  # may gather (new transports): not under the gate
                    pc.setLocalDescription(offer), self._settings.negotiation_timeout_s
                )
            except Exception as exc:
                logger.warning("relay offer failed (%s)", type(exc).__name__)
                await self._reset()
                self._on_publications_changed()
                return
            self._offer_in_flight = True
            sdp = str(pc.localDescription.sdp)
        try:
            await self._send_offer(sdp)
        except Exception as exc:
            logger.warning("delivering a relay offer failed (%s)", type(exc).__name__)

    def _sync_slots(self, pc: RTCPeerConnection) -> bool:
        """Make the m-sections match the wanted tracks; whether anything changed."""
        changed = False
        for key, ingress in self._wanted.items():
            slot = self._slots.get(key)
            if slot is None:
                self._slots[key] = self._add_slot(pc, key, ingress)
                changed = True
            elif slot.transceiver.direction != "sendonly":
                slot.transceiver.direction = "sendonly"
                changed = True
        for key, slot in self._slots.items():
            if key not in self._wanted and slot.transceiver.direction != "inactive":
                slot.transceiver.direction = "inactive"
                changed = True
        return changed

    def _add_slot(self, pc: RTCPeerConnection, key: TrackKey, ingress: Ingress) -> _Slot:
        publisher, kind = key
        media_kind = "audio" if kind == "audio" else "video"
        transceiver = pc.addTransceiver(media_kind, direction="sendonly")
        preferences = _codec_preferences(media_kind, ingress)
        if preferences:
            transceiver.setCodecPreferences(preferences)
        sender = transceiver.sender
        label = self._label_of(publisher)  # a handle: receivers never learn the id
        # A screen arrives as a stream of its own (`<handle>-screen`), beside the camera's.
        stream = f"{label}-screen" if kind == "screen" else label
        aiortc_seam.set_msid(sender, stream, f"{label}-{kind}-{next(_track_numbers)}")
        egress = Egress(ingress, aiortc_seam.sender_ssrc(sender))

        async def bind(parameters: RTCRtpSendParameters) -> None:
            await egress.bind(sender.transport, parameters)
            self._start_if_ready(key)

        aiortc_seam.hook_sender(sender, bind)
        aiortc_seam.disarm(transceiver)
        return _Slot(transceiver=transceiver, egress=egress)

    # -- teardown --------------------------------------------------------------------

    async def close(self) -> None:
        """Release the peer connection; no more offers are made."""
        self._closed = True
        for task in list(self._tasks):
            if task is not asyncio.current_task():
                task.cancel()
        await self._reset()

    async def _reset(self) -> None:
        """Drop the connection and everything bound to it (the participant may offer anew)."""
        for slot in self._slots.values():
            slot.egress.unbind()
        for ingress in self.ingresses.values():
            ingress.unbind()
        self._slots.clear()
        self.ingresses.clear()
        self._offer_in_flight = False
        self._dirty = bool(self._wanted)
        self._remote_ufrag = None
        pc, self._pc = self._pc, None
        if pc is not None:
            try:
                await asyncio.wait_for(pc.close(), self._settings.negotiation_timeout_s)
            except Exception as exc:  # aiortc's close can itself fail after a bad SDP
                logger.info("closing a peer connection failed (%s)", type(exc).__name__)


def _ignore(kind: str) -> None:
    """A first-packet callback that reports nothing."""


def _screen_mids(sdp: str) -> frozenset[str]:
    """The mids of the offer's video sections marked `a=content:slides` (aiortc's parser
    drops the attribute, so it is read from the text)."""
    mids: set[str] = set()
    for section in sdp.split("\nm=")[1:]:
        lines = [line.strip() for line in section.splitlines()]
        if not lines[0].startswith("video") or f"a=content:{SCREEN_CONTENT}" not in lines:
            continue
        mids.update(line[len("a=mid:"):] for line in lines if line.startswith("a=mid:"))
    return frozenset(mids)


def _rewritable(sdp: str) -> aiortc_sdp.SessionDescription:
    """aiortc's parse of `sdp`, or ValueError where aiortc could not write it out again.

    aiortc re-serializes the remote description on every read of `remoteDescription` (in
    `_negotiate`, long after the SDP was taken): an address it parsed but cannot write
    (`c=IN IP4 999.999.999.999`) would raise there, in a task nobody awaits.
    """
    parsed = aiortc_sdp.SessionDescription.parse(sdp)
    str(parsed)
    return parsed


def _bundles_on_a_section(parsed: aiortc_sdp.SessionDescription) -> bool:
    """aiortc moves every bundled m-section onto the transport of the group's first mid;
    naming a mid the offer lacks leaves them with none, and aiortc's connect task fails."""
    bundle = next((g for g in parsed.group if g.semantic == "BUNDLE"), None)
    if bundle is None or not bundle.items:
        return True
    mids = {m.rtp.muxId for m in parsed.media if m.kind in ("audio", "video", "application")}
    return bundle.items[0] in mids


def _has_usable_fingerprint(media: aiortc_sdp.MediaDescription) -> bool:
    """aiortc checks fingerprints only after the DTLS handshake; refuse hopeless offers early."""
    if media.dtls is None:
        return False
    return any(f.algorithm.lower() in USABLE_FINGERPRINTS for f in media.dtls.fingerprints)


def _codec_preferences(kind: str, ingress: Ingress) -> list[RTCRtpCodecCapability]:
    """Offer the subscriber only the publisher's codec, so no payload needs transcoding."""
    codec = ingress.primary_codec
    if codec is None:
        return []
    capabilities = RTCRtpSender.getCapabilities(kind).codecs
    exact = [
        c
        for c in capabilities
        if c.mimeType.lower() == codec.mimeType.lower() and c.parameters == codec.parameters
    ]
    return exact or [c for c in capabilities if c.mimeType.lower() == codec.mimeType.lower()][:1]
