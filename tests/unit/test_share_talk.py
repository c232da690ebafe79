"""Issue 14, parts 1 and 7: screen share (core rules, views, grants, relay keys) and talk
time (the relay's audio-level count, the core's `TalkTime`, views and the export)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

from aiortc.rtcrtpparameters import (
    RTCRtpCodecParameters,
    RTCRtpHeaderExtensionParameters,
    RTCRtpParameters,
    RTCRtpReceiveParameters,
)
from aiortc.rtp import HeaderExtensions, HeaderExtensionsMap, RtpPacket

from server.attendance import project
from server.attendance.formats import row_to_json, to_csv
from server.media.forwarder import SPEECH_LEVEL, Ingress
from server.media.peer import _screen_mids
from server.media.rewrite import RtpParser
from server.media.routing import wanted_tracks
from server.media.workers import messages as m
from signaling.core import commands as c
from signaling.core import events as e
from signaling.core.media_plan import plan_for
from signaling.core.model import BreakoutPlan, PlannedRoom
from signaling.core.session import replay
from signaling.core.translate import command_for
from signaling.core.views import view_for
from signaling.ports import MediaGrant, MediaPlan, TrackKind
from signaling.protocol import parse_client_event

from .core_helpers import T0, Session, client, therapist


def group(*clients: str) -> Session:
    s = Session.created()
    s.join("t1", "therapist", "Dr Kim Park")
    for pid in clients:
        s.join(pid, "client", f"Name {pid}")
        s.ok(therapist(), c.Admit(pid))
    return s


# -- screen share: rules ------------------------------------------------------------------


def test_a_therapist_shares_and_the_grant_forwards_the_screen() -> None:
    s = group("c1")
    assert not plan_for(s.state).grants["t1"].send_screen
    [started] = s.ok(therapist(), c.StartShare())
    assert started == e.ShareStarted(at=T0, participant_id="t1", room="main")
    assert plan_for(s.state).grants["t1"].send_screen
    assert not plan_for(s.state).grants["c1"].send_screen
    # A camera mute does not stop a share: they are two tracks.
    s.ok(therapist(), c.Mute("t1", "video", True))
    assert plan_for(s.state).grants["t1"].send_screen


def test_clients_share_only_once_a_clinician_allows_it() -> None:
    s = group("c1")
    assert s.refused(client("c1"), c.StartShare()).code == "forbidden"
    assert s.refused(client("c1"), c.SetSharePolicy(True)).code == "forbidden"
    s.ok(therapist(), c.SetSharePolicy(True))
    assert s.ok(therapist(), c.SetSharePolicy(True)) == ()
    s.ok(client("c1"), c.StartShare())
    assert plan_for(s.state).grants["c1"].send_screen
    # Withdrawing the permission does not cut a share in progress; the therapist stops it.
    s.ok(therapist(), c.SetSharePolicy(False))
    assert s.state.participants["c1"].sharing


def test_one_share_per_room_and_who_may_stop_it() -> None:
    s = group("c1", "c2")
    s.ok(therapist(), c.SetSharePolicy(True))
    s.ok(client("c1"), c.StartShare())
    assert s.ok(client("c1"), c.StartShare()) == ()  # again: nothing new
    assert s.refused(client("c2"), c.StartShare()).code == "conflict"
    assert s.refused(therapist(), c.StartShare()).code == "conflict"
    assert s.refused(client("c2"), c.StopShare("c1")).code == "forbidden"
    assert s.refused(therapist(), c.StopShare("c2")).code == "not_found"
    [stopped] = s.ok(therapist(), c.StopShare("c1"))
    assert stopped == e.ShareStopped(at=T0, participant_id="c1", by="t1")
    assert not plan_for(s.state).grants["c1"].send_screen
    s.ok(client("c2"), c.StartShare())
    assert s.ok(client("c2"), c.StopShare()) != ()  # a sharer stops its own
    assert s.ok(client("c2"), c.StopShare("c2")) == ()  # not sharing: nothing to do


def test_a_share_ends_when_its_sharer_moves_drops_or_leaves_and_does_not_come_back() -> None:
    s = group("c1", "c2")
    s.ok(therapist(), c.SetSharePolicy(True))
    s.ok(client("c1"), c.StartShare())
    s.ok(therapist(), c.OpenBreakouts(BreakoutPlan(minutes=20, rooms=(
        PlannedRoom("Room 1", "", ("c1",), {}),
        PlannedRoom("Room 2", "", ("c2",), {}),
    )), seed=1))
    assert not s.state.participants["c1"].sharing
    assert s.state.participants["c1"].sharing_room is None
    s.ok(therapist(), c.CloseBreakouts(0))
    assert s.state.participants["c1"].room == "main"
    assert not s.state.participants["c1"].sharing, "back in main: the share does not resume"
    s.ok(client("c1"), c.StartShare())
    s.ok(client("c1"), c.Disconnect("c1"))
    assert not s.state.participants["c1"].sharing
    assert "c1" not in plan_for(s.state).grants
    # The room is free again for someone else.
    s.ok(client("c2"), c.StartShare())


def test_share_state_survives_replay() -> None:
    s = group("c1")
    s.ok(therapist(), c.SetSharePolicy(True))
    s.ok(client("c1"), c.StartShare())
    assert replay(s.events) == s.state


# -- screen share: views ----------------------------------------------------------------------


def test_views_mark_the_share_for_everyone_in_the_room() -> None:
    s = group("c1", "c2")
    s.ok(therapist(), c.StartShare())
    for viewer in ("c1", "c2"):
        view = view_for(s.state, viewer)
        handle = s.state.participants["t1"].handle
        assert view["share"] == {"id": handle, "handle": handle, "stream": f"{handle}-screen"}
        assert [p["sharing"] for p in view["participants"]] == [True, False, False]
        assert view["you"]["sharing"] is False and view["you"]["may_share"] is False
        assert view["session"]["clients_may_share"] is False
    mine = view_for(s.state, "t1")
    assert mine["share"]["id"] == "t1" and mine["you"]["sharing"] is True
    assert mine["you"]["may_share"] is True
    s.ok(therapist(), c.SetSharePolicy(True))
    assert view_for(s.state, "c1")["you"]["may_share"] is True
    s.ok(therapist(), c.StopShare())
    assert view_for(s.state, "c1")["share"] is None


def test_the_wire_events_become_share_commands() -> None:
    assert command_for(parse_client_event("share_start", {}), 0) == c.StartShare()
    assert command_for(parse_client_event("share_stop", {}), 0) == c.StopShare(None)
    assert command_for(parse_client_event("share_stop", {"participant_id": "c1"}), 0) == (
        c.StopShare("c1"))
    assert command_for(parse_client_event("share_policy", {"clients_may_share": True}), 0) == (
        c.SetSharePolicy(True))


# -- screen share: the relay ------------------------------------------------------------------


def test_the_screen_is_a_track_of_its_own_forwarded_only_while_granted() -> None:
    published: dict[str, frozenset[TrackKind]] = {
        "a": frozenset({"audio", "video", "screen"}), "b": frozenset({"audio", "video"})}

    def plan(screen: bool) -> MediaPlan:
        return MediaPlan("s", {"a": MediaGrant("a", "main", True, False, send_screen=screen),
                               "b": MediaGrant("b", "main", True, True)})

    assert wanted_tracks(plan(False), "b", published) == {("a", "audio")}
    assert wanted_tracks(plan(True), "b", published) == {("a", "audio"), ("a", "screen")}
    assert wanted_tracks(plan(True), "a", published) == {("b", "audio"), ("b", "video")}


def test_the_worker_channel_carries_the_screen_grant_and_talk_reports() -> None:
    plan = MediaPlan("s", {"a": MediaGrant("a", "main", True, True, "p1", send_screen=True)})
    assert m.ApplyPlan.of(plan).plan() == plan
    talk = m.FROM_WORKER.validate_json(m.Talk(session_id="s", seconds={"a": 1.5})
                                       .model_dump_json())
    assert talk == m.Talk(session_id="s", seconds={"a": 1.5})


def test_the_screen_section_is_the_one_marked_content_slides() -> None:
    sdp = "\r\n".join([
        "v=0", "o=- 1 1 IN IP4 0.0.0.0", "s=-", "t=0 0",
        "m=audio 9 UDP/TLS/RTP/SAVPF 111", "a=mid:0", "a=sendonly",
        "m=video 9 UDP/TLS/RTP/SAVPF 96", "a=mid:1", "a=sendonly",
        "m=video 9 UDP/TLS/RTP/SAVPF 96", "a=mid:2", "a=sendonly", "a=content:slides",
        "m=audio 9 UDP/TLS/RTP/SAVPF 111", "a=mid:3", "a=content:slides", "",
    ])
    assert _screen_mids(sdp) == {"2"}
    assert _screen_mids(sdp.replace("a=content:slides", "a=content:main")) == frozenset()


# -- talk time: the relay -----------------------------------------------------------------------

OPUS = RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, channels=2,
                             payloadType=111)
LEVEL = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"


class _Transport:
    _rtp_header_extensions_map = HeaderExtensionsMap()

    def _register_rtp_receiver(self, *args: Any) -> None: ...
    def _unregister_rtp_receiver(self, *args: Any) -> None: ...


def test_the_parser_reads_the_audio_level_and_the_voice_bit() -> None:
    extensions = HeaderExtensionsMap()
    extensions.configure(RTCRtpParameters(headerExtensions=[
        RTCRtpHeaderExtensionParameters(id=1, uri="urn:ietf:params:rtp-hdrext:sdes:mid"),
        RTCRtpHeaderExtensionParameters(id=4, uri=LEVEL)]))
    for vad, level in ((False, 127), (True, 30), (False, 0)):
        packet = RtpPacket(payload_type=111, sequence_number=1, timestamp=960, ssrc=5,
                           payload=bytes(40))
        packet.extensions = HeaderExtensions(mid="0", audio_level=(vad, level))
        assert RtpParser(extensions).parse(packet.serialize(extensions)).extensions \
            .audio_level == (vad, level)


async def test_ingress_counts_allowed_speech_level_packets_only() -> None:
    ingress = Ingress("audio", rtcp_ssrc=1, on_first_packet=lambda kind: None)
    await ingress.bind(_Transport(), RTCRtpReceiveParameters(codecs=[OPUS]))  # type: ignore[arg-type]

    async def send(seq: int, level: int | None) -> None:
        packet = RtpPacket(payload_type=111, sequence_number=seq, timestamp=seq * 960, ssrc=5,
                           payload=bytes(40))
        if level is not None:
            packet.extensions = HeaderExtensions(audio_level=(False, level))
        await ingress._handle_rtp_packet(packet, 0)

    levels = [SPEECH_LEVEL, SPEECH_LEVEL + 1, 10, 127, None, 0]
    for seq, level in enumerate(levels):
        await send(seq, level)
    assert ingress.speech_packets == 3  # -50, -10 and 0 dBov
    ingress.allowed = False  # muted: not heard, so not talk time
    await send(10, 10)
    assert ingress.speech_packets == 3


# -- talk time: the core, views and the export --------------------------------------------------


def test_talk_reports_become_events_views_for_clinicians_and_minutes_in_the_export() -> None:
    s = group("c1", "c2")
    assert s.refused(client("c1"), c.ReportTalk({"c1": 5.0})).code == "forbidden"
    assert s.ok(c.SYSTEM, c.ReportTalk({"c1": 0.0, "ghost": 3.0})) == ()
    s.at(5)
    [talk] = s.ok(c.SYSTEM, c.ReportTalk({"c1": 4.8, "t1": 1.0}))
    assert talk == e.TalkTime(at=s.now, seconds={"c1": 4.8, "t1": 1.0})
    s.at(10)
    s.ok(c.SYSTEM, c.ReportTalk({"c1": 55.2}))
    assert s.state.talk == {"c1": 60.0, "t1": 1.0}
    assert view_for(s.state, "t1")["talk"] == {"c1": 60.0, "t1": 1.0}
    assert "talk" not in view_for(s.state, "c1")
    assert "talk" not in view_for(s.state, "c2")
    s.at(30)
    s.ok(therapist(), c.End())
    rows = {r.participant_id: r for r in project(s.events, as_of=T0 + timedelta(hours=2))}
    assert rows["c1"].minutes_speaking == Decimal("1.00")
    assert rows["t1"].minutes_speaking == Decimal("0.02")
    assert rows["c2"].minutes_speaking == Decimal("0.00")
    assert row_to_json(rows["c1"])["minutes_speaking"] == 1.0
    header = to_csv([rows["c1"]]).splitlines()[0].split(",")
    assert header.index("minutes_speaking") > header.index("minutes_audio")


def test_the_relays_last_report_after_the_end_still_counts() -> None:
    """The relay reports every few seconds and once more when it closes the session, which
    happens after `SessionEnded`: the final seconds of speech are in the export."""
    s = group("c1")
    s.at(30)
    s.ok(therapist(), c.End())
    [talk] = s.ok(c.SYSTEM, c.ReportTalk({"c1": 3.0}))
    assert talk == e.TalkTime(at=s.now, seconds={"c1": 3.0})
    rows = {r.participant_id: r for r in project(s.events, as_of=T0 + timedelta(hours=2))}
    assert rows["c1"].minutes_speaking == Decimal("0.05")
