"""Browser: screen share (getDisplayMedia with Chromium's fake capture) shown large for the
room, allowed for clients by the therapist and stopped by the therapist; the therapist's
talk-time panel (issue 14, parts 1 and 7)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.integration.server_fixtures import Api, api, server  # noqa: F401

from .browser_fixtures import Browser, Person, chromium, eventually, handle_of  # noqa: F401
from .test_web_client import join_link, publish_doc_shot, through_device_check

pytestmark = [pytest.mark.browser, pytest.mark.integration]

STAGE_JS = """async () => {
  const stage = document.querySelector('figure.share-stage');
  const v = stage?.querySelector('video');
  if (!stage || stage.hidden || !v || !v.srcObject) return {ok: false, why: 'no share'};
  const t0 = v.currentTime;
  await new Promise((resolve) => setTimeout(resolve, 400));
  return {ok: v.videoWidth > 0 && v.currentTime > t0, width: v.videoWidth,
          sharer: stage.dataset.sharer};
}"""


TONE_JS = """(gain) => {
  const original = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
  navigator.mediaDevices.getUserMedia = async (constraints) => {
    const stream = await original(constraints);
    if (!constraints || !constraints.audio) return stream;
    const ctx = new AudioContext();
    const tone = ctx.createOscillator();
    const level = ctx.createGain();
    const out = ctx.createMediaStreamDestination();
    tone.frequency.value = 440;
    level.gain.value = gain;
    tone.connect(level).connect(out);
    tone.start();
    for (const t of stream.getAudioTracks()) { stream.removeTrack(t); t.stop(); }
    stream.addTrack(out.stream.getAudioTracks()[0]);
    return stream;
  };
}"""


async def with_tone(person: Person, gain: float) -> None:
    """The page's microphone becomes a steady 440 Hz tone at `gain` (0.5: about -9 dBov, a
    voice; 0.0001: about -83 dBov, a silent room). Chromium's own fake microphone beeps for
    a few milliseconds a second, and its audio processing changes that level: a tone from
    Web Audio is sent as it is, so the measure can be checked against the time it ran."""
    await person.page.add_init_script(f"({TONE_JS})({gain})")
    await person.page.reload()


async def sees_share(person: Person, timeout: float = 20.0) -> dict[str, Any]:
    """`person`'s share stage is up and its video plays."""

    async def check() -> Any:
        result = await person.page.evaluate(STAGE_JS)
        return result if result["ok"] else None

    return dict(await eventually(check, timeout, f"{person.name} sees the shared screen"))


async def test_share_is_shown_large_clients_share_when_allowed_therapist_stops_it_talk_time(
    api: Api, chromium: Browser  # noqa: F811
) -> None:
    sid = await api.create_session(title="Psychoeducation: sleep")
    ann = await chromium.open("ann", await join_link(api, sid, "c1", "Ann Lee"))
    await with_tone(ann, 0.5)
    await through_device_check(ann)
    await ann.page.get_by_role("heading", name="You are in the waiting room").wait_for()
    therapist = await chromium.open("therapist",
                                    await join_link(api, sid, "t1", "Dr Kim Park", "therapist"))
    await with_tone(therapist, 0.0001)
    await through_device_check(therapist)
    tp, ap = therapist.page, ann.page
    await tp.get_by_role("button", name="Admit Ann Lee").click()
    await ap.get_by_role("toolbar", name="Your controls").wait_for()
    admitted = time.monotonic()
    dr = await handle_of(therapist, "t1")

    # A client may not share until the therapist lets clients share.
    await ap.get_by_role("button", name="Share screen").wait_for(state="hidden")
    await tp.get_by_role("button", name="Share screen").click()
    shown = await sees_share(ann)
    assert shown["sharer"] == dr and shown["width"] > 0, shown
    await ap.get_by_text("Dr is sharing the screen").wait_for()
    await tp.get_by_text("You are sharing the screen").wait_for()
    await ann.shot("20-screen-share")
    publish_doc_shot("20-screen-share")
    await tp.get_by_role("button", name="Stop sharing").first.click()
    await ap.locator("figure.share-stage").wait_for(state="hidden")

    await tp.get_by_role("button", name="Let clients share").click()
    await ap.get_by_role("button", name="Share screen").click()
    shown = await sees_share(therapist)
    assert shown["sharer"] == "c1", shown
    await tp.get_by_text("Ann Lee is sharing the screen").wait_for()
    # One share at a time in a room: the therapist's own button waits.
    assert await tp.get_by_role("button", name="Share screen").is_disabled()
    await tp.get_by_role("button", name="Stop Ann Lee's share").click()
    await tp.locator("figure.share-stage").wait_for(state="hidden")
    await ap.locator("figure.share-stage").wait_for(state="hidden")
    # Ann's page stopped capturing when the server said her share was over.
    await ap.get_by_role("button", name="Share screen").wait_for()
    assert await ann.page.evaluate("() => window.circleDebug.state().you.sharing") is False

    # Talk time: Ann's tone is at a voice's level, the therapist's near silence. The relay
    # counts Ann's packets as speech and none of the therapist's; the therapist's panel
    # shows each person's share of the group's talk time.
    async def ann_spoke() -> Any:
        rows = await tp.locator(".talk-row").evaluate_all(
            "rows => rows.map(r => [r.dataset.key, Number(r.dataset.seconds),"
            " Number(r.dataset.share)])")
        spoke = {key: (seconds, share) for key, seconds, share in rows}
        return spoke if set(spoke) == {"t1", "c1"} and spoke["c1"][0] >= 8 else None

    spoke = await eventually(ann_spoke, 40, "Ann's talk time")
    elapsed = time.monotonic() - admitted
    assert spoke["c1"][0] <= elapsed + 1, (spoke, elapsed)  # never more than she was there
    assert spoke["c1"][1] == 100 and spoke["t1"] == (0, 0), spoke
    await tp.get_by_text("Dr Kim Park").last.wait_for()
    await tp.locator(".panel-talk").scroll_into_view_if_needed()
    await therapist.shot("21-talk-time")
    publish_doc_shot("21-talk-time")
    assert "talk" not in await ann.debug("state()")
    assert chromium.console_errors() == {}
