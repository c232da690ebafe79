"""Real aiortc participants through a real `circle serve`: the gateway drives the relay."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator

import pytest

from client.participant import CircleClient, MediaOptions

from .media_fixtures import advance, wait_until
from .server_fixtures import Api, CircleServer, module_server, settle

pytestmark = pytest.mark.integration

AV = MediaOptions(audio=True, video=True)


@pytest.fixture(scope="module", params=["0", "2"], ids=["in-process relay", "2 media workers"])
def server(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[CircleServer]:
    """Every media test runs against both relay modes (CIRCLE_MEDIA_WORKERS=0 and 2).

    The relay samples media flows every half second (default 2 s), so that the minutes of
    media behind `modality` add up within the few seconds a test lasts."""
    yield from module_server(tmp_path_factory, CIRCLE_MEDIA_WORKERS=request.param,
                             CIRCLE_MEDIA_FLOW_SAMPLE_S="0.5")


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 15.0) -> None:
    """Poll a media condition (stats have no event to wait on) until it holds."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


def sees(
    viewer: CircleClient, *publishers: str, kind: str = "video"
) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        stats = await viewer.received()
        return all(
            p in stats and getattr(stats[p], f"{kind}_frames") > 0 for p in publishers
        )

    return check


async def modalities(api: Api, sid: str) -> dict[str, str]:
    status, data = await api.request(
        "GET", api.attendance_query(sid, session=sid, format="json")
    )
    assert status == 200
    return {r["participant_id"]: r["modality"] for r in data["rows"]}


async def recorded_as(api: Api, sid: str, expected: dict[str, str]) -> None:
    """Wait until the live session's export says `expected`: modality follows the minutes
    of media, which take a moment to outweigh the time before the media started. Ending
    the session then keeps it (media and presence end together)."""

    async def check() -> bool:
        return await modalities(api, sid) == expected

    await wait_until(check, timeout=20, interval=0.25)


def handles(therapist: CircleClient, *participant_ids: str) -> list[str]:
    """What clients call these participants (and the relay names their streams)."""
    return [therapist.handle_of(pid) for pid in participant_ids]


async def admitted_group(api: Api, sid: str, clients: list[tuple[str, str, MediaOptions]]
                         ) -> tuple[CircleClient, list[CircleClient]]:
    therapist = await api.join(sid, "t1", "Dr Kim Park", role="therapist", media=AV)
    joined = [await api.join(sid, pid, name, media=opts) for pid, name, opts in clients]
    await therapist.wait_for(lambda s: len(s["waiting"]) == len(clients))
    assert (await therapist.call("admit_all"))["ok"]
    return therapist, joined


async def test_three_participants_see_and_hear_each_other(api: Api) -> None:
    sid = await api.create_session()
    therapist, (ann, bob) = await admitted_group(
        api, sid, [("c1", "Ann Lee", AV), ("c2", "Bob Stone", AV)]
    )
    try:
        await eventually(sees(therapist, "c1", "c2"))
        await eventually(sees(ann, *handles(therapist, "t1", "c2")))
        await eventually(sees(bob, *handles(therapist, "t1", "c1")))
        await eventually(sees(ann, *handles(therapist, "t1", "c2"), kind="audio"))
        heard = set(await ann.received())
        assert heard == set(handles(therapist, "t1", "c2")), "nobody receives themself"
        assert not heard & {"t1", "c1", "c2"}, "a client knows peers by handle, never by id"
        everyone = {"t1": "audio-video", "c1": "audio-video", "c2": "audio-video"}
        await recorded_as(api, sid, everyone)
        assert (await therapist.call("end"))["ok"]
    finally:
        await settle(therapist, ann, bob)
    assert await modalities(api, sid) == everyone


async def test_h264_publisher_is_forwarded_without_transcoding(api: Api) -> None:
    """A client that offers only H.264: the others decode its frames, through the relay."""
    sid = await api.create_session()
    h264 = MediaOptions(audio=True, video=True, video_codec="H264")
    therapist, (ann,) = await admitted_group(api, sid, [("c1", "Ann Lee", h264)])
    try:
        await eventually(sees(therapist, "c1"))
        await eventually(sees(ann, therapist.handle_of("t1")))
        assert ann.media is not None
        local = ann.media.peer_connection.localDescription.sdp
        (sending,) = [m for m in local.split("\r\nm=")
                      if m.startswith("video") and "a=sendonly" in m]
        assert "H264/90000" in sending and "VP8/90000" not in sending, (
            "Ann sends H.264 only, so the frames the therapist decoded were H.264 end to end "
            "(the relay never encodes: test_relay_forwarding checks no encoder starts)"
        )
    finally:
        await settle(therapist, ann)


async def test_audio_only_client_is_recorded_as_audio_only(api: Api) -> None:
    sid = await api.create_session()
    therapist, (ann,) = await admitted_group(
        api, sid, [("c1", "Ann Lee", MediaOptions(audio=True, video=False))]
    )
    try:
        await eventually(sees(therapist, "c1", kind="audio"))
        await eventually(sees(ann, therapist.handle_of("t1")))
        await recorded_as(api, sid, {"t1": "audio-video", "c1": "audio-only"})
        assert (await therapist.call("end"))["ok"]
    finally:
        await settle(therapist, ann)
    assert await modalities(api, sid) == {"t1": "audio-video", "c1": "audio-only"}


async def test_therapist_mute_is_enforced_at_the_relay(api: Api) -> None:
    sid = await api.create_session()
    therapist, (ann, bob) = await admitted_group(
        api, sid, [("c1", "Ann Lee", AV), ("c2", "Bob Stone", AV)]
    )
    try:
        ann_at_bob = therapist.handle_of("c1")
        await eventually(sees(bob, ann_at_bob))
        await eventually(sees(bob, ann_at_bob, kind="audio"))
        ack = await therapist.call("mute", {"participant_id": "c1", "kind": "video",
                                            "muted": True})
        assert ack["ok"]
        # Ann's client keeps sending video (it ignores the mute); the relay must drop it.
        # The window is Ann's audio reaching Bob (~50 packets/s), which must keep flowing.
        async def ann_audio_at_bob() -> int:
            return int((await bob.received())[ann_at_bob].audio_packets)

        await advance(15, ann_audio_at_bob, timeout=15)  # packets in flight drain
        before = (await bob.received())[ann_at_bob]
        await advance(50, ann_audio_at_bob, timeout=15)  # ~1 s of audio
        after = (await bob.received())[ann_at_bob]
        assert after.video_packets == before.video_packets, "muted video still forwarded"
        assert after.audio_packets > before.audio_packets, "audio must keep flowing"
    finally:
        await settle(therapist, ann, bob)


async def test_waiting_client_has_no_media_path(api: Api) -> None:
    sid = await api.create_session()
    therapist = await api.join(sid, "t1", "Dr Kim Park", role="therapist", media=AV)
    waiting = await api.join(sid, "c1", "Ann Lee", media=AV)
    try:
        await waiting.wait_for(lambda s: s["you"]["status"] == "waiting")
        refused = await waiting.call("signal", {"type": "offer", "sdp": "v=0\r\n"})
        assert refused["error"]["code"] == "forbidden"
        assert waiting.media is None and await waiting.received() == {}
    finally:
        await settle(therapist, waiting)


async def test_late_joiner_gets_a_picture_within_a_second(api: Api) -> None:
    sid = await api.create_session()
    therapist, (ann,) = await admitted_group(api, sid, [("c1", "Ann Lee", AV)])
    late = None
    try:
        await eventually(sees(ann, therapist.handle_of("t1")))
        late = await api.join(sid, "c2", "Bob Stone", media=AV)
        await therapist.wait_for(lambda s: len(s["waiting"]) == 1)
        assert (await therapist.call("admit", {"participant_id": "c2"}))["ok"]
        await late.wait_for(lambda s: s["you"]["status"] == "admitted")
        admitted_at = time.monotonic()
        await eventually(sees(late, *handles(therapist, "t1", "c1")), timeout=10)
        stats = await late.received()
        first = max(s.first_video_frame_at or 0 for s in stats.values())
        assert first - admitted_at < 1.0, f"first picture after {first - admitted_at:.2f}s"
    finally:
        await settle(therapist, ann, late)


async def test_malformed_sdp_gets_an_invalid_ack(api: Api) -> None:
    sid = await api.create_session()
    therapist = await api.join(sid, "t1", "Dr Kim Park", role="therapist")
    try:
        await therapist.wait_for(lambda s: s["you"]["status"] == "admitted")
        for sdp in ["garbage", "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n", "v=0\r\n" * 50]:
            ack = await therapist.call("signal", {"type": "offer", "sdp": sdp})
            assert ack["ok"] is False and ack["error"]["code"] == "invalid"
        status, health = await api.request("GET", "/healthz")
        assert status == 200 and health["ok"]
    finally:
        await settle(therapist)
