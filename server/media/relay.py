"""The media relay (SFU): the data plane behind `signaling.ports.Relay`.

One `RelayPeer` per participant in the current plan; forwarding follows the plan's rooms
and grants (`routing.wanted_tracks`). Removals take effect before `apply_plan` returns
(packets stop at once); additions are negotiated with the participant by relay offers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from server.media import aiortc_seam
from server.media.background import Background
from server.media.flow import FlowChange, FlowSampler
from server.media.forwarder import Ingress
from server.media.ice import enable_loopback_gathering
from server.media.peer import RelayPeer, SdpRejected
from server.media.routing import grant_allows, wanted_tracks
from server.media.settings import RelaySettings
from signaling.ports import MediaKind, MediaPlan, RelayListener, SignalType

logger = logging.getLogger(__name__)

REASSERT_EVERY = 15
"""Samples between two repeats of every track's flow state (30 s at the default 2 s)."""

FlowKey = tuple[str, MediaKind]
"""(publisher's participant id, kind)."""

SPEECH_PACKET_S = 0.020
"""Audio per packet: Opus in 20 ms frames, as browsers and aiortc send it."""


def allowed_packets(ingress: Ingress) -> int:
    """Packets that passed the grant: what the flow sampler counts (no per-packet work)."""
    return ingress.packets_received - ingress.packets_dropped


@dataclass(frozen=True)
class RelayCounters:
    sessions: int
    peers: int
    forwarded_packets: int
    """RTP packets sent to subscribers."""
    dropped_packets: int
    """RTP packets not forwarded: kinds a grant does not allow (mutes, listen-only roles),
    and sends that failed because a subscriber's transport was gone."""


@dataclass
class _Session:
    plan: MediaPlan
    peers: dict[str, RelayPeer] = field(default_factory=dict)
    published: dict[str, set[MediaKind]] = field(default_factory=dict)
    """Kinds whose RTP has been seen, per participant, for `media_published`."""
    flows: FlowSampler[FlowKey, Ingress] = field(
        default_factory=lambda: FlowSampler(allowed_packets))
    """Whether each publication's allowed media flows, for `media_flow` (flow.py)."""
    talk: dict[str, tuple[Ingress, int]] = field(default_factory=dict)
    """Per participant: its audio ingress and that one's speech packets at the last
    `talk_time` report."""


class MediaRelay:
    """Forwards encoded media between the participants of each session's rooms."""

    def __init__(self, listener: RelayListener, settings: RelaySettings | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        aiortc_seam.check_seam()
        aiortc_seam.defer_bitrate_estimators()
        self._listener = listener
        self._settings = settings or RelaySettings()
        self._clock = clock
        self._sessions: dict[str, _Session] = {}
        self._background = Background(logger, "relay task")
        self._sampler: asyncio.Task[None] | None = None
        self.flow_samples = 0
        """Rounds of flow sampling so far (tests wait on it)."""
        self._talker: asyncio.Task[None] | None = None
        self._retired_forwarded = 0
        self._retired_dropped = 0
        if self._settings.gather_loopback:
            enable_loopback_gathering()

    def peer(self, session_id: str, participant_id: str) -> RelayPeer | None:
        """The relay side of one participant (for tests and metrics)."""
        session = self._sessions.get(session_id)
        return None if session is None else session.peers.get(participant_id)

    async def apply_plan(self, plan: MediaPlan) -> None:
        if self._sampler is None:
            self._sampler = asyncio.get_running_loop().create_task(self._sample_flows())
        if self._talker is None:
            self._talker = asyncio.get_running_loop().create_task(self._report_talk())
        session = self._sessions.get(plan.session_id)
        if session is None:
            session = self._sessions[plan.session_id] = _Session(plan=plan)
        session.plan = plan
        if any(pid not in plan.grants for pid in session.peers):
            self._talk_report(session)  # what those leaving said since the last report
        gone = [session.peers.pop(pid) for pid in list(session.peers) if pid not in plan.grants]
        for pid in plan.grants:
            if pid not in session.peers:
                session.peers[pid] = self._new_peer(session, pid)
        self._route(session)
        # Forwarding to and from `gone` stopped in `_route`; closing their connections
        # (DTLS close, ICE teardown) can take a while and must not delay the next plan.
        for peer in gone:
            self._release(peer)
        if not plan.grants:
            self._sessions.pop(plan.session_id, None)

    async def signal(
        self, session_id: str, participant_id: str, kind: SignalType, sdp: str
    ) -> str | None:
        peer = self.peer(session_id, participant_id)
        if peer is None:
            raise ValueError("no media path for this participant")
        if not isinstance(sdp, str) or not sdp:
            raise ValueError("empty SDP")
        try:
            if kind == "offer":
                return await peer.accept_offer(sdp)
            if kind == "answer":
                await peer.accept_answer(sdp)
                return None
        except SdpRejected as exc:
            raise ValueError(str(exc)) from None
        raise ValueError("signal type must be offer or answer")

    async def close_session(self, session_id: str) -> None:
        session = self._sessions.pop(session_id, None)
        if session is not None:
            self._talk_report(session)
            await asyncio.gather(*(self._close_peer(peer) for peer in session.peers.values()))

    def counters(self) -> RelayCounters:
        """Totals since start, for /metrics (live peers plus those already closed)."""
        forwarded, dropped = self._retired_forwarded, self._retired_dropped
        peers = 0
        for session in self._sessions.values():
            for peer in session.peers.values():
                peers += 1
                forwarded += peer.forwarded_packets()
                dropped += peer.dropped_packets()
        return RelayCounters(len(self._sessions), peers, forwarded, dropped)

    async def close(self) -> None:
        """Release every session (server shutdown), and wait for background closes."""
        for task in (self._sampler, self._talker):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        for session_id in list(self._sessions):
            await self.close_session(session_id)
        await self._background.wait()

    def _release(self, peer: RelayPeer) -> None:
        self._background.spawn(self._close_peer(peer))

    async def _close_peer(self, peer: RelayPeer) -> None:
        self._retired_forwarded += peer.forwarded_packets()
        self._retired_dropped += peer.dropped_packets()
        await peer.close()

    def _new_peer(self, session: _Session, participant_id: str) -> RelayPeer:
        session_id = session.plan.session_id

        async def send_offer(sdp: str) -> None:
            await self._listener.send_signal(session_id, participant_id, "offer", sdp)

        def on_first_packet(kind: str) -> None:
            seen = session.published.setdefault(participant_id, set())
            seen.add("audio" if kind == "audio" else "video")
            self._background.spawn(
                self._listener.media_published(session_id, participant_id, frozenset(seen))
            )

        def label_of(publisher: str) -> str:
            grant = session.plan.grants.get(publisher)
            return grant.label if grant is not None else publisher

        return RelayPeer(
            self._settings,
            label_of=label_of,
            send_offer=send_offer,
            on_first_packet=on_first_packet,
            on_publications_changed=lambda: self._route(session),
        )

    def _route(self, session: _Session) -> None:
        """Apply grants and rooms to every ingress and every subscriber, synchronously."""
        plan = session.plan
        published = {pid: peer.published_kinds for pid, peer in session.peers.items()}
        now = self._clock()
        for pid, peer in session.peers.items():
            grant = plan.grants.get(pid)
            for track, ingress in peer.ingresses.items():
                allowed = grant is not None and grant_allows(grant, track)
                if ingress.allowed and not allowed and track != "screen":
                    # a mute ends the flow at once
                    self._report(session, session.flows.stop((pid, track), now))
                ingress.allowed = allowed
        self._keep_flows(session, now)
        for pid, peer in session.peers.items():
            peer.set_wanted(
                {
                    key: session.peers[key[0]].ingresses[key[1]]
                    for key in wanted_tracks(plan, pid, published)
                }
            )

    # -- media flow (attendance minutes) ------------------------------------------------

    async def _sample_flows(self) -> None:
        """Every `flow_sample_s`: which publications' allowed packets still arrive."""
        while True:
            await asyncio.sleep(self._settings.flow_sample_s)
            self.flow_samples += 1
            now = self._clock()
            for session in list(self._sessions.values()):
                self._keep_flows(session, now)
                for pid, peer in session.peers.items():
                    for kind, ingress in peer.media_ingresses.items():
                        self._report(session, session.flows.sample((pid, kind), ingress, now))
                if self.flow_samples % REASSERT_EVERY == 0:
                    for change in session.flows.reassert(now):
                        self._report(session, change)

    def _keep_flows(self, session: _Session, now: float) -> None:
        """Flows of publications gone or replaced (a connection closed, reset, renewed)
        end at once."""
        live = {(pid, kind): ingress for pid, peer in session.peers.items()
                for kind, ingress in peer.media_ingresses.items()}
        for change in session.flows.keep(live, now):
            self._report(session, change)

    # -- talk time ------------------------------------------------------------------------

    async def _report_talk(self) -> None:
        """Every `talk_report_s`: how long each participant spoke since the last report."""
        while True:
            await asyncio.sleep(self._settings.talk_report_s)
            for session in list(self._sessions.values()):
                self._talk_report(session)

    def _talk_report(self, session: _Session) -> None:
        """Report the speech packets counted since the last report, as seconds (only
        participants who spoke). A new ingress (a new connection) counts from 0."""
        spoke: dict[str, float] = {}
        counts: dict[str, tuple[Ingress, int]] = {}
        for pid, peer in session.peers.items():
            ingress = peer.ingresses.get("audio")
            if ingress is None:
                continue
            last_ingress, last = session.talk.get(pid, (ingress, 0))
            delta = ingress.speech_packets - (last if last_ingress is ingress else 0)
            counts[pid] = (ingress, ingress.speech_packets)
            if delta > 0:
                spoke[pid] = round(delta * SPEECH_PACKET_S, 2)
        session.talk = counts
        if spoke:
            self._background.spawn(self._listener.talk_time(session.plan.session_id, spoke))

    def _report(self, session: _Session, change: FlowChange[FlowKey] | None) -> None:
        if change is None:
            return
        participant_id, kind = change.key
        ago_s = max(0.0, self._clock() - change.at)
        self._background.spawn(self._listener.media_flow(
            session.plan.session_id, participant_id, kind, change.flowing, round(ago_s, 3)))
