"""The relay forwards real aiortc media on loopback, by room and grant, without decoding."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator

import pytest
from aiortc import RTCRtpReceiver, RTCRtpSender

from tests.integration.media_fixtures import (
    SESSION,
    Harness,
    advance,
    grant,
    plan,
    wait_until,
)


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    h = Harness()
    yield h
    await h.close()


async def test_three_participants_see_and_hear_each_other(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: set[int] = set()
    original_receive = RTCRtpReceiver.receive
    original_send = RTCRtpSender.send

    async def receive(self: RTCRtpReceiver, parameters: object) -> None:
        started.add(id(self))
        await original_receive(self, parameters)  # type: ignore[arg-type]

    async def send(self: RTCRtpSender, parameters: object) -> None:
        started.add(id(self))
        await original_send(self, parameters)  # type: ignore[arg-type]

    monkeypatch.setattr(RTCRtpReceiver, "receive", receive)
    monkeypatch.setattr(RTCRtpSender, "send", send)

    await harness.relay.apply_plan(plan(grant("a"), grant("b"), grant("c")))
    for pid in ("a", "b", "c"):
        await harness.join(pid)
    await wait_until(harness.sees("a", "b", "c"))
    await wait_until(harness.sees("b", "a", "c"))
    await wait_until(harness.sees("c", "a", "b"))

    for viewer in ("a", "b", "c"):
        assert viewer not in await harness.stats(viewer)
    assert harness.published == {k: frozenset({"audio", "video"}) for k in "abc"}

    # The relay's own receivers and senders were never started: no decoder, no encoder.
    relay_objects: list[int] = []
    for pid in "abc":
        relay_peer = harness.relay.peer(SESSION, pid)
        assert relay_peer is not None and relay_peer.peer_connection is not None
        for t in relay_peer.peer_connection.getTransceivers():
            relay_objects += [id(t.receiver), id(t.sender)]
    assert relay_objects and not started.intersection(relay_objects)
    # ...while the clients' were (the check can see a decoder start).
    client_receivers = [
        id(t.receiver) for t in harness.peers["a"].peer_connection.getTransceivers()
    ]
    assert started.intersection(client_receivers)


async def test_late_joiner_gets_a_picture_within_a_second(harness: Harness) -> None:
    await harness.relay.apply_plan(plan(grant("a"), grant("b")))
    await harness.join("a")
    await harness.join("b")
    # Well past the publishers' initial keyframes: c must get a picture by asking for one.
    await wait_until(harness.sees("b", "a", frames=20))
    await wait_until(harness.sees("a", "b", frames=20))

    joined_at = time.monotonic()
    await harness.relay.apply_plan(plan(grant("a"), grant("b"), grant("c")))
    await harness.join("c")
    await wait_until(harness.sees("c", "a", "b", audio=False))
    stats = await harness.stats("c")
    for publisher in ("a", "b"):
        first = stats[publisher].first_video_frame_at
        assert first is not None
        assert first - joined_at < 1.0, f"first frame from {publisher} after {first - joined_at}"


async def test_video_mute_stops_forwarding_at_the_relay(harness: Harness) -> None:
    await harness.relay.apply_plan(plan(grant("a"), grant("b")))
    await harness.join("a")
    await harness.join("b")
    await wait_until(harness.sees("b", "a"))

    await harness.relay.apply_plan(plan(grant("a", video=False), grant("b")))
    relay_a = harness.relay.peer(SESSION, "a")
    relay_b = harness.relay.peer(SESSION, "b")
    assert relay_a is not None and relay_b is not None
    video_in = relay_a.ingresses["video"]
    video_out = relay_b.egresses[("a", "video")]
    audio_out = relay_b.egresses[("a", "audio")]
    sent_video, sent_audio, received = (
        video_out.packets_sent,
        audio_out.packets_sent,
        video_in.packets_received,
    )

    async def publisher_kept_sending() -> bool:
        return video_in.packets_received > received + 20

    await wait_until(publisher_kept_sending)
    assert video_out.packets_sent == sent_video
    assert audio_out.packets_sent > sent_audio

    # Unmuting brings the picture back (a new keyframe is requested).
    frames = (await harness.stats("b"))["a"].video_frames
    await harness.relay.apply_plan(plan(grant("a"), grant("b")))

    async def video_again() -> bool:
        return (await harness.stats("b"))["a"].video_frames > frames + 3

    await wait_until(video_again)


async def test_participant_absent_from_the_plan_receives_nothing(harness: Harness) -> None:
    await harness.relay.apply_plan(plan(grant("a"), grant("b")))
    with pytest.raises(ValueError):
        await harness.join("outsider")

    await harness.relay.apply_plan(plan(grant("a"), grant("b"), grant("c")))
    await harness.join("a")
    await harness.join("b")
    await harness.join("c")
    await wait_until(harness.sees("c", "a", "b"))

    await harness.relay.apply_plan(plan(grant("a"), grant("b")))
    assert harness.relay.peer(SESSION, "c") is None
    # The clock: what a and b, still in the plan, keep receiving from each other.
    still_flowing = harness.packets("b", "a"), harness.packets("a", "b")
    await advance(15, *still_flowing)  # packets already in flight drain
    before = await harness.stats("c")
    await advance(25, *still_flowing)  # ~0.5 s of audio
    after = await harness.stats("c")
    for publisher in ("a", "b"):
        assert after[publisher].video_packets == before[publisher].video_packets
        assert after[publisher].audio_packets == before[publisher].audio_packets


async def test_rooms_are_isolated(harness: Harness) -> None:
    await harness.relay.apply_plan(
        plan(grant("a", "r1"), grant("b", "r1"), grant("c", "r2"), grant("d", "r2"))
    )
    for pid in "abcd":
        await harness.join(pid)
    await wait_until(harness.sees("a", "b"))
    await wait_until(harness.sees("c", "d"))
    # ~0.3 s of each room's own audio: time for any cross-room track to have shown up.
    await advance(15, *(harness.packets(v, p) for v, p in ("ab", "ba", "cd", "dc")))
    assert set(await harness.stats("a")) == {"b"}
    assert set(await harness.stats("b")) == {"a"}
    assert set(await harness.stats("c")) == {"d"}
    assert set(await harness.stats("d")) == {"c"}
    relay_a = harness.relay.peer(SESSION, "a")
    assert relay_a is not None
    assert {k[0] for k in relay_a.egresses} == {"b"}

    # Moving c to r1: a sees c, d stops getting c at once.
    await harness.relay.apply_plan(
        plan(grant("a", "r1"), grant("b", "r1"), grant("c", "r1"), grant("d", "r2"))
    )
    relay_d = harness.relay.peer(SESSION, "d")
    assert relay_d is not None
    c_to_d = relay_d.egresses[("c", "video")]
    sent = c_to_d.packets_sent
    await wait_until(harness.sees("a", "b", "c"))
    assert c_to_d.packets_sent == sent


@pytest.mark.parametrize(
    "mangle",
    [
        lambda sdp: "not sdp at all",
        lambda sdp: sdp.replace("a=ice-ufrag", "a=x-ufrag"),
        lambda sdp: re.sub(r"a=fingerprint:sha-\d+", "a=fingerprint:md5", sdp),
        lambda sdp: sdp.replace("a=rtcp-mux\r\n", ""),
        lambda sdp: sdp.replace("m=audio", "m=audio x").replace("m=video", "m=video y"),
        lambda sdp: re.sub(r"(opus|G722|PCMU|PCMA)/", "nope/", sdp),
        lambda sdp: "\r\n".join(x for x in sdp.split("\r\n") if not x.startswith("m=")),
    ],
)
async def test_malformed_offer_is_refused_without_leaking(
    harness: Harness, mangle: object
) -> None:
    from client.media import MediaPeer

    await harness.relay.apply_plan(plan(grant("a")))
    peer = MediaPeer(loopback=True)
    harness.peers["a"] = peer
    good = await peer.create_offer()
    with pytest.raises(ValueError):
        await asyncio.wait_for(
            harness.relay.signal(SESSION, "a", "offer", mangle(good)),  # type: ignore[operator]
            timeout=5,
        )
    relay_a = harness.relay.peer(SESSION, "a")
    assert relay_a is not None and relay_a.peer_connection is None
    with pytest.raises(ValueError):
        await harness.relay.signal(SESSION, "a", "answer", good)
    # The same participant can still connect with a good offer.
    answer = await harness.relay.signal(SESSION, "a", "offer", good)
    assert answer is not None
    assert relay_a.peer_connection is not None
