"""True modality with real aiortc peers through a real `circle serve` (both relay modes).

`minutes_video` / `minutes_audio` count only media that reached the relay allowed: a
client that turns its camera off at once (its Python client keeps sending video packets
regardless) is `audio-only` with no minutes of video, and a therapist's mute stops the
minutes of video at the mute. Minutes are Decimal fractions, so the checks are relations
between them, over a few seconds of media.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from client.participant import MediaOptions

from .media_fixtures import advance
from .server_fixtures import Api, CircleServer, module_server, settle
from .test_media_session import admitted_group, eventually, sees

pytestmark = pytest.mark.integration

AV = MediaOptions(audio=True, video=True)
SAMPLE_S = 0.5
"""The relay's flow sampling interval on these servers (CIRCLE_MEDIA_FLOW_SAMPLE_S)."""
AUDIO_PER_S = 50
"""Opus packets a second: Ann's audio at the therapist is the tests' clock."""


@pytest.fixture(scope="module", params=["0", "2"], ids=["in-process relay", "2 media workers"])
def server(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[CircleServer]:
    yield from module_server(tmp_path_factory, CIRCLE_MEDIA_WORKERS=request.param,
                             CIRCLE_MEDIA_FLOW_SAMPLE_S=str(SAMPLE_S))


async def rows(api: Api, sid: str) -> dict[str, dict[str, Any]]:
    status, data = await api.request("GET", api.attendance_query(sid, session=sid,
                                                                 format="json"))
    assert status == 200, data
    return {r["participant_id"]: r for r in data["rows"]}


def minutes(row: dict[str, Any], column: str) -> Decimal:
    return Decimal(str(row[column]))


async def test_camera_off_from_the_first_minute_is_audio_only(api: Api) -> None:
    sid = await api.create_session()
    therapist, (ann,) = await admitted_group(api, sid, [("c1", "Ann Lee", AV)])
    try:
        await ann.wait_for(lambda s: s["you"]["status"] == "admitted")
        admitted_at = time.monotonic()
        ack = await ann.call("mute", {"participant_id": "c1", "kind": "video", "muted": True})
        assert ack["ok"], ack
        await eventually(sees(therapist, "c1", kind="audio"))
        lag_s = time.monotonic() - admitted_at  # admission to Ann's audio at the therapist

        async def ann_audio() -> int:
            return int((await therapist.received())["c1"].audio_packets)

        await advance(6 * AUDIO_PER_S, ann_audio, timeout=30)  # ~6 s of Ann's audio
        peer_video = (await therapist.received())["c1"].video_packets
        assert peer_video == 0, "the relay forwarded none of Ann's muted video"
        assert ann.media is not None  # ...which Ann's client sent all along
        assert (await therapist.call("end"))["ok"]
    finally:
        await settle(therapist, ann)
    row = (await rows(api, sid))["c1"]
    present, audio = minutes(row, "minutes_present"), minutes(row, "minutes_audio")
    assert row["modality"] == "audio-only", row
    assert minutes(row, "minutes_video") == 0, row
    assert 0 < audio <= present
    # Audio counted from the first sample that saw it to the end: all of the presence but
    # the time Ann's media took to start, and one sampling interval.
    allowed_gap = Decimal(str(round((lag_s + SAMPLE_S + 1.0) / 60, 2))) + Decimal("0.01")
    assert present - audio <= allowed_gap, (present, audio, lag_s)
    assert (await rows(api, sid))["t1"]["modality"] == "audio-video"


async def test_a_therapists_video_mute_stops_the_minutes_of_video(api: Api) -> None:
    sid = await api.create_session()
    therapist, (ann,) = await admitted_group(api, sid, [("c1", "Ann Lee", AV)])
    try:
        await eventually(sees(therapist, "c1"))

        async def video_flowed() -> bool:
            return minutes((await rows(api, sid))["c1"], "minutes_video") > 0

        await eventually(video_flowed)
        ack = await therapist.call("mute", {"participant_id": "c1", "kind": "video",
                                            "muted": True})
        assert ack["ok"], ack

        async def ann_audio() -> int:
            return int((await therapist.received())["c1"].audio_packets)

        before = (await rows(api, sid))["c1"]
        await advance(2 * AUDIO_PER_S, ann_audio, timeout=15)  # ~2 s more of Ann's audio
        after = (await rows(api, sid))["c1"]
        assert minutes(after, "minutes_video") == minutes(before, "minutes_video"), (
            "the mute ended the video at once; Ann's client still sends it")
        assert minutes(after, "minutes_present") > minutes(before, "minutes_present")
        assert minutes(after, "minutes_audio") > minutes(before, "minutes_audio")

        # Enough muted time that video flowed for less than half the presence.
        video = minutes(before, "minutes_video")
        short_s = float(Decimal("2.5") * video - minutes(after, "minutes_present")) * 60
        if short_s > 0:
            await advance(int(short_s * AUDIO_PER_S) + AUDIO_PER_S, ann_audio, timeout=60)
        assert (await therapist.call("end"))["ok"]
    finally:
        await settle(therapist, ann)
    row = (await rows(api, sid))["c1"]
    assert minutes(row, "minutes_video") == video
    assert minutes(row, "minutes_present") >= 2 * video
    assert row["modality"] == "audio-only", row
