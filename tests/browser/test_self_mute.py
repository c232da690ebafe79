"""Browser: a client's own camera and mic buttons mute it at the server, and stop sending.

Real Debian Chromium (fake camera and microphone) against a real `circle serve`: the server
view shows the mute (the therapist's tile says camera off), the page's sender carries no
track, the relay forwards nothing (frames decoded at the therapist stop increasing), and a
second click brings it all back. A therapist's mute cannot be lifted from the client.
"""

from __future__ import annotations

import pytest

from tests.integration.media_fixtures import Counter, advance
from tests.integration.server_fixtures import Api, api, server  # noqa: F401

from .browser_fixtures import Browser, Person, chromium, eventually, handle_of, sees_video  # noqa: F401
from .test_web_client import audio_packets, frames_decoded, join_link, through_device_check

pytestmark = [pytest.mark.browser, pytest.mark.integration]


def video_frames(person: Person, pid: str) -> Counter:
    """Counter: video frames `person` decoded from `pid` (the clock while audio is off)."""

    async def count() -> int:
        return await frames_decoded(person, pid)

    return count


async def sending(person: Person) -> dict[str, bool]:
    return dict(await person.debug("sending()"))


async def sends(person: Person, expected: dict[str, bool], what: str = "senders") -> None:
    """Wait until the page's senders carry tracks as `expected` (replaceTrack is async)."""

    async def matches() -> bool:
        return await sending(person) == expected

    await eventually(matches, 5, f"{what}: {expected}")


async def test_camera_and_mic_buttons_mute_at_the_server_and_stop_sending(
    api: Api, chromium: Browser  # noqa: F811
) -> None:
    sid = await api.create_session(title="Tuesday DBT skills group")
    client = await chromium.open("client", await join_link(api, sid, "c1", "Ann Lee"))
    await through_device_check(client)
    therapist = await chromium.open("therapist",
                                    await join_link(api, sid, "t1", "Dr Kim Park", "therapist"))
    await through_device_check(therapist)
    tp, cp = therapist.page, client.page
    await tp.get_by_role("button", name="Admit Ann Lee").click()
    await cp.get_by_role("toolbar", name="Your controls").wait_for()
    await sees_video(therapist, "c1")
    await sends(client, {"audio": True, "video": True})
    ann_audio = audio_packets(therapist, "c1")

    # Camera off: the server's view, the page's sender, and the relay all agree.
    await cp.get_by_role("button", name="Turn camera off").click()
    await cp.get_by_role("button", name="Turn camera on").wait_for()
    await tp.locator('figure[data-pid="c1"][data-video-muted="true"]').wait_for()
    await tp.locator('figure[data-pid="c1"] .badge', has_text="Camera off").wait_for()
    assert (await client.debug("state()"))["you"]["muted_self"]["video"] is True
    await sends(client, {"audio": True, "video": False}, "no track: no packets")
    await advance(25, ann_audio, timeout=15, interval=0.1)  # frames in flight drain
    before = await frames_decoded(therapist, "c1")
    await advance(75, ann_audio, timeout=15, interval=0.1)  # ~1.5 s of Ann's audio
    assert before > 0 and await frames_decoded(therapist, "c1") == before

    # Camera on again: frames flow again.
    await cp.get_by_role("button", name="Turn camera on").click()
    await tp.locator('figure[data-pid="c1"][data-video-muted="false"]').wait_for()
    await sends(client, {"audio": True, "video": True})
    await advance(10, video_frames(therapist, "c1"), timeout=20, interval=0.1)

    # The microphone likewise: muted at the server, no audio packets reach the therapist
    # (the clock is Ann's video now).
    await cp.get_by_role("button", name="Mute microphone").click()
    await cp.get_by_role("button", name="Unmute microphone").wait_for()
    await tp.locator('figure[data-pid="c1"][data-audio-muted="true"]').wait_for()
    await sends(client, {"audio": False, "video": True})
    await advance(10, video_frames(therapist, "c1"), timeout=15, interval=0.1)
    heard = await ann_audio()
    await advance(20, video_frames(therapist, "c1"), timeout=15, interval=0.1)
    assert await ann_audio() == heard, "no audio forwarded while muted"
    await cp.get_by_role("button", name="Unmute microphone").click()
    await tp.locator('figure[data-pid="c1"][data-audio-muted="false"]').wait_for()
    await advance(25, ann_audio, timeout=15, interval=0.1)

    # A therapist's mute: the client's button says so and cannot lift it.
    await tp.get_by_role("button", name="Mute Ann Lee's microphone").click()
    mic = cp.get_by_role("button", name="Mic muted by therapist")
    await mic.wait_for()
    assert await mic.is_disabled()
    await eventually(lambda: _not_sending_audio(client), 10, "the page stops sending audio")
    await tp.get_by_role("button", name="Unmute Ann Lee's microphone").click()
    await cp.get_by_role("button", name="Mute microphone").wait_for()
    await sends(client, {"audio": True, "video": True})
    errors = chromium.console_errors()
    assert errors == {}, errors


async def _not_sending_audio(person: Person) -> bool:
    return not (await sending(person))["audio"]
