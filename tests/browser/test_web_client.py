"""The browser client end to end: Debian Chromium (fake camera/mic) against a real circle serve."""

from __future__ import annotations

import asyncio
import os
import shutil

import pytest

from tests.integration.media_fixtures import Counter, advance
from tests.integration.server_fixtures import Api, api, server  # noqa: F401

from .browser_fixtures import (  # noqa: F401
    ROOT,
    SHOTS,
    Browser,
    Person,
    chromium,
    eventually,
    handle_of,
    sees_video,
)

pytestmark = [pytest.mark.browser, pytest.mark.integration]

DOCS_SHOTS = ROOT / "docs" / "screenshots"


def publish_doc_shot(name: str) -> None:
    """Copy a screenshot into docs/screenshots (committed, referenced by the docs).

    Only with CIRCLE_UPDATE_DOC_SHOTS=1: a test run must not dirty the work tree; refresh
    the documented screens on purpose when they change.
    """
    if os.environ.get("CIRCLE_UPDATE_DOC_SHOTS") != "1":
        return
    DOCS_SHOTS.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(SHOTS / f"{name}.png", DOCS_SHOTS / f"{name}.png")


async def join_link(api: Api, sid: str, pid: str, name: str, role: str = "client") -> str:  # noqa: F811
    invite = await api.invite(sid, pid, name, role)
    assert invite["join_url"].endswith(invite["token"])
    return f"{api.server.url}/join?token={invite['token']}"


async def through_device_check(person: Person, shot: str | None = None,
                               audio_only: bool = False) -> None:
    page = person.page
    await page.get_by_role("heading", name="Check your camera and microphone").wait_for()
    if audio_only:
        await page.get_by_label("Join with audio only (camera off)").check()
        await page.locator("video.preview").wait_for(state="hidden")
        await page.get_by_role("button", name="Join", exact=True).click()
        return
    preview_js = "() => document.querySelector('video.preview')?.videoWidth > 0"
    await eventually(lambda: page.evaluate(preview_js), 10, "camera preview")
    assert "token=" not in page.url, "the join token is taken out of the address bar"
    if shot:
        await person.shot(shot)
    await page.get_by_role("button", name="Join", exact=True).click()


async def frames_decoded(person: Person, pid: str) -> int:
    stats = await person.debug("inbound()")
    return int(stats.get(pid, {}).get("video", 0))


def audio_packets(person: Person, pid: str) -> Counter:
    """Counter: audio packets `person` received from `pid` (a clock for negative checks)."""

    async def count() -> int:
        stats = await person.debug("inbound()")
        return int(stats.get(pid, {}).get("audio", 0))

    return count


async def test_waiting_admit_see_each_other_mute_chat_late_joiner_reconnect(
    api: Api, chromium: Browser  # noqa: F811
) -> None:
    sid = await api.create_session(title="Tuesday DBT skills group")
    client = await chromium.open("client", await join_link(api, sid, "c1", "Ann Lee"))
    await through_device_check(client, "01-device-check")
    await client.page.get_by_role("heading", name="You are in the waiting room").wait_for()
    await client.page.get_by_text("You have waited 0:0").wait_for()
    await client.shot("02-waiting-room")
    publish_doc_shot("02-waiting-room")

    therapist = await chromium.open("therapist",
                                    await join_link(api, sid, "t1", "Dr Kim Park", "therapist"))
    await through_device_check(therapist)
    tp = therapist.page
    await tp.get_by_role("button", name="Admit Ann Lee").wait_for()
    await tp.get_by_text("waiting 0:").first.wait_for()
    await tp.get_by_text("Nobody is waiting").wait_for(state="detached")
    await therapist.shot("03-therapist-waiting-list")
    await tp.get_by_role("button", name="Admit Ann Lee").click()

    cp = client.page
    await cp.get_by_role("toolbar", name="Your controls").wait_for()
    dr = await handle_of(therapist, "t1")  # clients know peers by handle, never by id
    shown = await asyncio.gather(sees_video(therapist, "c1"), sees_video(client, dr))
    assert all(s["width"] > 0 for s in shown), shown
    # And hear each other: the therapist's audio (renumbered by the relay's first offer,
    # Chrome's opus 111 becomes 96) reaches the client as Ann's reaches the therapist.
    await asyncio.gather(advance(25, audio_packets(client, dr), timeout=15, interval=0.1),
                         advance(25, audio_packets(therapist, "c1"), timeout=15, interval=0.1))
    # Peers see first names only; the therapist sees the full name.
    assert await cp.locator(f'figure[data-pid="{dr}"] .name').text_content() == "Dr"
    assert await cp.locator('figure[data-pid="t1"]').count() == 0
    assert await tp.locator('figure[data-pid="c1"] .name').text_content() == "Ann Lee"

    # Chat is plain text: markup arrives as literal characters, never as elements.
    await cp.get_by_label("Message to the room").fill("<b>x</b>")
    await cp.get_by_role("button", name="Send").click()
    line = tp.locator(".chat-log li .text").last
    await line.wait_for()
    assert await line.text_content() == "<b>x</b>"
    assert await tp.locator(".chat-log b").count() == 0
    await cp.get_by_role("button", name="Raise hand").click()
    await tp.locator('figure[data-pid="c1"][data-hand="true"]').wait_for()

    # A late joiner gets a picture, and everyone gets theirs.
    late = await chromium.open("late", await join_link(api, sid, "c2", "Bob Stone"))
    await through_device_check(late)
    await tp.get_by_role("button", name="Admit Bob Stone").click()
    ann, bob = await handle_of(therapist, "c1"), await handle_of(therapist, "c2")
    await asyncio.gather(sees_video(late, dr), sees_video(late, ann),
                         sees_video(therapist, "c2"), sees_video(client, bob))
    await asyncio.gather(*(advance(25, audio_packets(viewer, publisher), timeout=15, interval=0.1)
                           for viewer, publisher in ((late, dr), (late, ann),
                                                     (therapist, "c2"), (client, bob))))
    await therapist.shot("04-session-therapist")
    await client.shot("05-session-client")
    publish_doc_shot("04-session-therapist")

    # The therapist stops the client's camera: the client's controls say so, and the relay
    # stops forwarding (frames decoded for c1 at the therapist stop increasing).
    await tp.get_by_role("button", name="Stop Ann Lee's camera").click()
    await cp.get_by_role("button", name="Camera off by therapist").wait_for()
    await cp.locator('figure[data-pid="c1"][data-video-muted="true"]').wait_for()
    await tp.locator('figure[data-pid="c1"][data-video-muted="true"]').wait_for()
    # The clock is Ann's microphone at the therapist (~50 packets/s), still on. The drain
    # covers frames in flight and in the jitter buffer, and the relay applying the mute just
    # after the views went out.
    ann_audio = audio_packets(therapist, "c1")
    await advance(25, ann_audio, timeout=15, interval=0.1)
    before = await frames_decoded(therapist, "c1")
    await advance(75, ann_audio, timeout=15, interval=0.1)  # ~1.5 s of audio
    after = await frames_decoded(therapist, "c1")
    assert before > 0 and after == before, (before, after)
    assert await frames_decoded(therapist, "c2") > 0
    await tp.get_by_role("button", name="Mute Ann Lee's microphone").click()
    await cp.get_by_role("button", name="Mic muted by therapist").wait_for()

    # A network drop: "reconnecting" shows, then the client is back in the room (no new
    # admit) with a new peer connection and the therapist's picture.
    await late.debug("drop()")
    await late.page.get_by_text("Connection lost: reconnecting").wait_for()
    await late.page.get_by_text("Connection lost: reconnecting").wait_for(state="hidden")
    await sees_video(late, dr)
    await sees_video(therapist, "c2")

    await late.page.get_by_role("button", name="Leave").click()
    await late.page.get_by_role("heading", name="You left the session").wait_for()
    await tp.get_by_role("button", name="End session").click()
    await tp.get_by_role("button", name="Confirm: end for everyone").click()
    await cp.get_by_role("heading", name="The session has ended").wait_for()
    await client.shot("06-ended")
    assert chromium.console_errors() == {}


async def test_denied_client_sees_the_reason_and_locked_session_refuses(
    api: Api, chromium: Browser  # noqa: F811
) -> None:
    sid = await api.create_session(title="Thursday process group")
    therapist = await chromium.open("therapist",
                                    await join_link(api, sid, "t1", "Dr Kim Park", "therapist"))
    await through_device_check(therapist)
    client = await chromium.open("client", await join_link(api, sid, "c9", "Cal Reed"),
                                 width=375, height=760)
    await through_device_check(client)
    await client.page.get_by_role("heading", name="You are in the waiting room").wait_for()
    tp = therapist.page
    await tp.get_by_role("button", name="Deny Cal Reed with a reason").click()
    reason = "This group is for enrolled members <i>only</i>."
    await tp.get_by_label("Reason for Cal Reed").fill(reason)
    await tp.get_by_role("button", name="Deny Cal Reed", exact=True).click()
    await client.page.get_by_role("heading", name="You were not admitted").wait_for()
    assert await client.page.locator(".end-text").text_content() == reason
    await client.shot("07-denied-375px")

    await tp.get_by_role("button", name="Lock session").click()
    await tp.get_by_role("button", name="Unlock session").wait_for()
    locked = await chromium.open("locked", await join_link(api, sid, "c8", "Dee Fox"))
    await through_device_check(locked)
    await locked.page.get_by_role("heading", name="The session is locked").wait_for()
    await locked.shot("08-locked")
    errors = chromium.console_errors()
    assert errors == {}, errors


async def test_therapist_plans_and_opens_breakouts_client_sees_role_scenario_countdown(
    api: Api, chromium: Browser  # noqa: F811
) -> None:
    sid = await api.create_session(title="Role-play practice")
    client = await chromium.open("client", await join_link(api, sid, "c1", "Ann Lee"),
                                 width=375, height=800)
    await through_device_check(client, audio_only=True)
    therapist = await chromium.open("therapist",
                                    await join_link(api, sid, "t1", "Dr Kim Park", "therapist"))
    await through_device_check(therapist)
    tp = therapist.page
    await tp.get_by_role("button", name="Admit all (1)").click()
    await client.page.get_by_role("toolbar", name="Your controls").wait_for()
    dr = await handle_of(therapist, "t1")
    await sees_video(client, dr)

    async def hears_c1() -> bool:
        stats = await therapist.debug("inbound()")
        return bool(stats.get("c1", {}).get("audio", 0) > 0 and stats["c1"]["video"] == 0)

    await eventually(hears_c1, 15, "therapist hears the audio-only client")
    await tp.locator('figure[data-pid="c1"].video-off').wait_for()
    await client.page.get_by_role("button", name="Audio only").wait_for()

    planner = tp.locator(".panel-breakouts")
    room = planner.locator("fieldset.plan-room").first
    await room.get_by_label("Room name").fill("Kitchen table")
    scenario = "Asking your sister to stop drinking around you"
    await room.get_by_label("Scenario").fill(scenario)
    await tp.get_by_label("Role of Ann Lee in room 1").select_option("protagonist")
    await planner.locator("fieldset.plan-room").nth(1).get_by_role(
        "button", name="Remove room 2 from the plan").click()
    await planner.get_by_label("Minutes").fill("7")
    await planner.get_by_role("button", name="Save plan").click()
    await planner.get_by_text("A saved plan is ready.").wait_for()
    await planner.scroll_into_view_if_needed()
    await therapist.shot("09-breakout-planner")
    publish_doc_shot("09-breakout-planner")
    await planner.get_by_role("button", name="Open breakouts").click()

    cp = client.page
    banner = cp.get_by_role("region", name="Your breakout room")
    await banner.wait_for()
    assert await banner.locator(".room-name").text_content() == "Kitchen table"
    assert await banner.locator(".role-name").text_content() == "Protagonist"
    assert await banner.locator(".scenario-text").text_content() == scenario
    countdown = await banner.locator(".countdown").text_content()
    assert countdown is not None and countdown.startswith(("Ends in 7:0", "Ends in 6:5")), countdown
    await cp.get_by_role("button", name="Ask for help").wait_for()
    await client.shot("10-breakout-client-375px")

    # The therapist visits the room (and sees and hears it there), then goes back.
    await planner.get_by_role("button", name="Visit Kitchen table").click()
    await tp.get_by_role("region", name="Your breakout room").wait_for()
    await sees_video(client, dr)
    await planner.get_by_role("button", name="Back to the main room").click()
    await tp.get_by_role("region", name="Your breakout room").wait_for(state="hidden")
    await cp.locator(f'figure[data-pid="{dr}"]').wait_for(state="detached")

    await planner.get_by_label("Broadcast to all rooms").fill("Two minutes left")
    await planner.get_by_role("button", name="Broadcast", exact=True).click()
    await cp.locator(".notices").get_by_text("Two minutes left").wait_for()
    await cp.get_by_role("button", name="Ask for help").click()
    await tp.locator(".notices li.n-help").wait_for()
    await therapist.shot("11-breakouts-open-therapist")
    await planner.get_by_label("Grace period in seconds").fill("0")
    await planner.get_by_role("button", name="Close breakouts").click()
    await banner.wait_for(state="hidden", timeout=15000)
    errors = chromium.console_errors()
    assert errors == {}, errors
