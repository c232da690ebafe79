"""One seat per person in the browser: the same join link opened in a second browser waits
calmly, the therapist's console asks "second device", and allowing it moves the seat; the
same browser coming back after a drop resumes at once with its resume secret."""

from __future__ import annotations

import pytest

from tests.integration.server_fixtures import Api, api, server  # noqa: F401
from tests.integration.test_one_seat import Proxy

from .browser_fixtures import Browser, Person, chromium, sees_video  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.integration]

ALREADY_HERE = "You are already in this session on another device"
ASKED = "The therapist has been asked to let this device take your place."


async def join_link(api: Api, sid: str, pid: str, name: str, role: str = "client") -> str:  # noqa: F811
    invite = await api.invite(sid, pid, name, role)
    return f"{api.server.url}/join?token={invite['token']}"


async def join(person: Person) -> None:
    page = person.page
    await page.get_by_role("heading", name="Check your camera and microphone").wait_for()
    await page.get_by_role("button", name="Join", exact=True).click()


async def test_a_second_browser_with_the_same_link_waits_and_allowing_it_moves_the_seat(
    api: Api, chromium: Browser  # noqa: F811
) -> None:
    sid = await api.create_session(title="Wednesday skills group")
    therapist = await chromium.open(
        "therapist", await join_link(api, sid, "t1", "Dr Kim Park", "therapist"))
    await join(therapist)
    link = await join_link(api, sid, "c1", "Ann Lee")
    first = await chromium.open("first", link)
    await join(first)
    tp = therapist.page
    await tp.get_by_role("button", name="Admit Ann Lee").click()
    await first.page.get_by_role("toolbar", name="Your controls").wait_for()

    # The same link in another browser (its own sessionStorage: no resume secret).
    second = await chromium.open("second", link)
    await join(second)
    sp = second.page
    await sp.get_by_role("heading", name=ALREADY_HERE).wait_for()
    await sp.get_by_text(ASKED).wait_for()
    assert await sp.get_by_role("toolbar", name="Your controls").count() == 0
    allow = tp.get_by_role("button", name="Let Ann Lee's second device take the place")
    await allow.wait_for()
    await tp.get_by_text("second device waiting").wait_for()
    await tp.get_by_role("button", name="Keep Ann Lee on the first device").wait_for()
    await second.shot("one-seat-second-device-waiting")
    await therapist.shot("one-seat-therapist-prompt")
    # The first keeps its seat meanwhile.
    assert await first.page.get_by_role("toolbar", name="Your controls").is_visible()

    await allow.click()
    moved = "This session continued on another device"
    await first.page.get_by_role("heading", name=moved).wait_for()
    await sp.get_by_role("toolbar", name="Your controls").wait_for()
    await sees_video(therapist, "c1")  # the picture now comes from the second browser
    await allow.wait_for(state="detached")
    assert await tp.get_by_role("button", name="Admit Ann Lee").count() == 0, "no re-admit"
    errors = chromium.console_errors()
    assert errors == {}, errors


async def test_a_browser_whose_connection_dropped_unnoticed_takes_its_seat_back_at_once(
    api: Api, chromium: Browser  # noqa: F811
) -> None:
    """The page keeps the resume secret of its connection (sessionStorage) and presents it
    when it reconnects: while the server still holds the old, silent connection, that is
    what tells this browser from a second device with the same link."""
    sid = await api.create_session()
    proxy = Proxy(api.server.port)
    await proxy.start()
    try:
        therapist = await chromium.open(
            "therapist", await join_link(api, sid, "t1", "Dr Kim Park", "therapist"))
        await join(therapist)
        invite = await api.invite(sid, "c1", "Ann Lee")
        ann = await chromium.open("ann", f"{proxy.url}/join?token={invite['token']}")
        await join(ann)
        tp = therapist.page
        await tp.get_by_role("button", name="Admit Ann Lee").click()
        await ann.page.get_by_role("toolbar", name="Your controls").wait_for()
        assert await ann.debug("connected()")
        links = list(proxy.links)
        # Watch both pages from now on: a second device would be on screen for the whole
        # ping timeout (20 s) before the old connection counted as gone.
        for page, text in ((ann.page, ALREADY_HERE), (tp, "second device waiting")):
            await page.evaluate("""(text) => { window.sawSecond = false; setInterval(() => {
                if (document.body.innerText.includes(text)) window.sawSecond = true; }, 25); }""",
                                text)

        for link in links:  # the page loses its socket; the server's side stays open, silent
            link.cut()
        await ann.page.wait_for_function("() => window.circleDebug.connected()", timeout=15_000)
        await ann.page.get_by_role("toolbar", name="Your controls").wait_for()
        await sees_video(therapist, "c1")
        assert not await ann.page.evaluate("window.sawSecond"), "it waited as a second device"
        assert not await tp.evaluate("window.sawSecond"), "the therapist was asked"
        assert await tp.get_by_role("button", name="Admit Ann Lee").count() == 0, "no re-admit"
        # Read before the proxy closes: the page's new socket may run through it too.
        status, data = await api.request("GET", api.attendance_query(sid, session=sid,
                                                                     format="json"))
        assert status == 200
        (row,) = [r for r in data["rows"] if r["participant_id"] == "c1"]
        assert row["disconnects"] == 0, "no drop was recorded: the seat was resumed"
    finally:
        await proxy.close()
