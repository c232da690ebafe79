"""Browser: the therapy room (issue 14): send back to waiting and admit again, help from a
client that opens a private aside in one click, and an observer disclosed as "observing"."""

from __future__ import annotations

import pytest

from tests.integration.server_fixtures import Api, api, server  # noqa: F401

from .browser_fixtures import (  # noqa: F401
    Browser,
    Person,
    chromium,
    eventually,
    handle_of,
    sees_video,
)
from .test_web_client import join_link, publish_doc_shot, through_device_check

pytestmark = [pytest.mark.browser, pytest.mark.integration]

BACK = "The therapist has moved you back to the waiting room for a moment."


async def test_send_back_to_waiting_and_admit_again(api: Api, chromium: Browser  # noqa: F811
                                                   ) -> None:
    sid = await api.create_session(title="Tuesday DBT skills group")
    ann = await chromium.open("ann", await join_link(api, sid, "c1", "Ann Lee"))
    await through_device_check(ann)
    ap = ann.page
    await ap.get_by_role("heading", name="You are in the waiting room").wait_for()
    therapist = await chromium.open("therapist",
                                    await join_link(api, sid, "t1", "Dr Kim Park", "therapist"))
    await through_device_check(therapist)
    tp = therapist.page
    await tp.get_by_role("button", name="Admit Ann Lee").click()
    await ap.get_by_role("toolbar", name="Your controls").wait_for()
    await sees_video(therapist, "c1")

    await tp.get_by_role("button", name="Send Ann Lee back to the waiting room").click()
    await ap.get_by_role("heading", name="You are in the waiting room").wait_for()
    await ap.get_by_text(BACK).wait_for()
    assert await ap.locator("figure").count() == 0, "no roster, no video in the waiting room"
    await eventually(lambda: _no_peer(ann), 10, "the page closed its media path")
    await tp.get_by_role("button", name="Admit Ann Lee").click()
    await ap.get_by_role("toolbar", name="Your controls").wait_for()
    dr = await handle_of(therapist, "t1")
    await sees_video(therapist, "c1")
    await sees_video(ann, dr)
    assert await ap.get_by_text(BACK).count() == 0
    assert chromium.console_errors() == {}


async def _no_peer(person: Person) -> bool:
    return await person.debug("pc()") is None


async def test_help_reaches_the_therapist_whose_aside_button_opens_a_private_aside(
    api: Api, chromium: Browser  # noqa: F811
) -> None:
    sid = await api.create_session(title="Process group")
    ann = await chromium.open("ann", await join_link(api, sid, "c1", "Ann Lee"))
    await through_device_check(ann)
    await ann.page.get_by_role("heading", name="You are in the waiting room").wait_for()
    bob = await chromium.open("bob", await join_link(api, sid, "c2", "Bob Stone"))
    await through_device_check(bob)
    await bob.page.get_by_role("heading", name="You are in the waiting room").wait_for()
    therapist = await chromium.open("therapist",
                                    await join_link(api, sid, "t1", "Dr Kim Park", "therapist"))
    await through_device_check(therapist)
    tp, ap, bp = therapist.page, ann.page, bob.page
    await tp.get_by_role("button", name="Admit all (2)").click()
    dr, a = await handle_of(therapist, "t1"), await handle_of(therapist, "c1")
    await sees_video(bob, a)
    await sees_video(bob, dr)

    # A discreet request: the client is told, the therapist is told, Bob sees nothing.
    await ap.get_by_role("button", name="Ask for help").click()
    await ap.locator(".help-sent").get_by_text("Your therapist has been told.").wait_for()
    notice = tp.locator(".notices li.n-help")
    await notice.wait_for()
    assert "Ann Lee asks for help in the main room." in (await notice.text_content() or "")
    assert await bp.locator(".notices li").count() == 0
    await notice.get_by_role("button", name="Aside with Ann Lee").click()

    banner = tp.get_by_role("region", name="Private aside")
    await banner.get_by_text("Aside with Ann Lee").wait_for()
    await ap.get_by_role("region", name="Private aside").get_by_text(
        "A private conversation with your therapist").wait_for()
    await sees_video(ann, dr)
    await sees_video(therapist, "c1")
    # The group: both stepped out (no tiles), not told why.
    await bp.locator(f'figure[data-pid="{a}"]').wait_for(state="detached")
    await bp.locator(f'figure[data-pid="{dr}"]').wait_for(state="detached")
    assert await bp.get_by_text("aside", exact=False).count() == 0
    await tp.locator('figure[data-pid="c2"]').wait_for(state="detached")
    # One aside at a time: the console offers no second one meanwhile.
    await tp.get_by_role("button", name="End the aside with Ann Lee").wait_for()
    assert await tp.get_by_role("button", name="Aside with Bob Stone").count() == 0
    await therapist.shot("17-aside-therapist")
    publish_doc_shot("17-aside-therapist")
    await ann.shot("18-aside-client")

    await banner.get_by_role("button", name="End aside").click()
    await banner.wait_for(state="hidden")
    await tp.get_by_role("button", name="Aside with Bob Stone").wait_for()
    await sees_video(bob, a)
    await sees_video(bob, dr)
    assert chromium.console_errors() == {}


async def test_an_observer_is_disclosed_and_never_publishes(api: Api, chromium: Browser  # noqa: F811
                                                            ) -> None:
    sid = await api.create_session(title="Supervised group")
    therapist = await chromium.open("therapist",
                                    await join_link(api, sid, "t1", "Dr Kim Park", "therapist"))
    await through_device_check(therapist)
    invite = await api.invite(sid, "o1", "Sam Trainee", "observer")
    assert "observe=1" in invite["join_url"]
    sam = await chromium.open("sam", f"{api.server.url}/join?observe=1&token={invite['token']}")
    sp = sam.page
    # No camera check: straight into the session (staff are admitted at once).
    await sp.get_by_role("toolbar", name="Your controls").wait_for()
    assert await sp.get_by_role("heading", name="Check your camera and microphone").count() == 0
    assert await sp.get_by_role("button", name="Mute microphone").count() == 0
    assert await sp.get_by_label("Message to the room").is_hidden(), "observers only read chat"
    assert await sp.get_by_role("button", name="Ask for help").count() == 0
    await sp.get_by_text("Sam Trainee · observing").wait_for()
    dr = await handle_of(therapist, "t1")
    await sees_video(sam, dr)  # watches
    tile = therapist.page.locator('figure[data-pid="o1"]')
    await tile.locator(".badge", has_text="Observing").wait_for()
    assert await sam.debug("sendingTracks()") == 0, "the observer's page sends nothing"
    assert await therapist.debug("sendingTracks()") == 2
    row = therapist.page.locator(".person-row", has_text="Sam Trainee")
    await row.get_by_text("observing").wait_for()
    assert await row.get_by_role("button", name="Mute Sam Trainee's microphone").count() == 0
    assert chromium.console_errors() == {}
