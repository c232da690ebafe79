"""Browser: the check-in in the waiting room, what the therapist's waiting list shows of it,
and a session that requires it refusing to admit someone who has not checked in."""

from __future__ import annotations

import pytest

from tests.integration.server_fixtures import Api, api, server  # noqa: F401

from .browser_fixtures import SHOTS, Browser, chromium  # noqa: F401
from .test_web_client import join_link, publish_doc_shot, through_device_check

pytestmark = [pytest.mark.browser, pytest.mark.integration]

NOT_CHECKED_IN = "Not checked in: cannot be admitted until they do"


async def test_check_in_step_waiting_list_and_check_in_required(
    api: Api, chromium: Browser  # noqa: F811
) -> None:
    sid = await api.create_session(title="Tuesday DBT skills group", checkin_required=True)
    therapist = await chromium.open("therapist",
                                    await join_link(api, sid, "t1", "Dr Kim Park", "therapist"))
    await through_device_check(therapist, audio_only=True)
    tp = therapist.page
    await tp.get_by_role("toolbar", name="Your controls").wait_for()

    ann = await chromium.open("ann", await join_link(api, sid, "c1", "Ann Lee"),
                              width=480, height=980)
    await through_device_check(ann, audio_only=True)
    ap = ann.page
    # The check-in is the first thing in the waiting room, before the calm text.
    await ap.get_by_role("heading", name="You are in the waiting room").wait_for()
    await ap.get_by_role("heading", name="Check in", exact=True).wait_for()
    await ap.get_by_text("your therapist can let you in once you have").wait_for()
    await tp.get_by_role("button", name="Admit Ann Lee").wait_for()
    ann_row = tp.locator(".waiting-row", has_text="Ann Lee")
    await ann_row.get_by_text(NOT_CHECKED_IN).wait_for()

    bob = await chromium.open("bob", await join_link(api, sid, "c2", "Bob Stone"),
                              width=480, height=980)
    await through_device_check(bob, audio_only=True)
    await bob.page.get_by_role("heading", name="Check in", exact=True).wait_for()
    await tp.get_by_role("button", name="Admit Bob Stone").wait_for()

    # Not checked in: the server refuses the admission and the therapist reads why.
    await tp.get_by_role("button", name="Admit Ann Lee").click()
    await tp.get_by_text("Ann Lee has not checked in yet (location and consent)").wait_for()
    assert await ap.get_by_role("heading", name="You are in the waiting room").is_visible()
    assert (await ann.debug("state()"))["you"]["status"] == "waiting"

    # A code the server would refuse is caught on the page, in words.
    await ap.get_by_label("At home").check()
    region = ap.get_by_label("State or province you are in now")
    await region.fill("Calif")
    await ap.get_by_role("button", name="Check in", exact=True).click()
    await ap.get_by_text("Enter your state or province as a short code, such as CA or ON."
                         ).wait_for()
    await region.fill("ca")  # sent upper-cased
    await ap.get_by_label("I agree to receive care by video or phone").check()
    await ap.get_by_label("I will keep what others share in this group private").check()
    await ann.shot("15-checkin")
    publish_doc_shot("15-checkin")
    await ap.get_by_role("button", name="Check in", exact=True).click()

    # Submitted: the card folds to one line; the waiting room is all that is left.
    await ap.get_by_role("heading", name="You have checked in").wait_for()
    await ap.get_by_text("At home · CA · telehealth consent given · group pledge given").wait_for()
    await ap.get_by_text("You have waited").wait_for()
    await ap.get_by_role("button", name="Check in", exact=True).wait_for(state="detached")
    you = (await ann.debug("state()"))["you"]
    assert {k: you["checkin"][k] for k in ("location", "region", "consent", "pledge")} == {
        "location": "home", "region": "CA", "consent": True, "pledge": True}

    # The therapist's waiting list shows it (location, region, consent).
    await ann_row.get_by_text("Checked in: home, CA · telehealth consent · pledge").wait_for()
    assert await tp.locator(".waiting-row", has_text="Bob Stone").get_by_text(
        NOT_CHECKED_IN).is_visible()
    await tp.locator(".panel-waiting").screenshot(path=str(SHOTS / "16-therapist-checkin.png"))
    publish_doc_shot("16-therapist-checkin")

    # Admit all takes who checked in and says who is left waiting.
    await tp.get_by_role("button", name="Admit all (2)").click()
    await tp.get_by_text("Admitted 1; 1 still waiting: has not checked in yet").wait_for()
    await ap.get_by_role("toolbar", name="Your controls").wait_for()
    await tp.get_by_role("button", name="Admit Ann Lee").wait_for(state="detached")
    assert await tp.get_by_role("button", name="Admit Bob Stone").is_visible()
    person = tp.locator(".person-row", has_text="Ann Lee")
    await person.get_by_text("Checked in: home, CA · telehealth consent").wait_for()

    # Bob checks in "somewhere else" without consent; the therapist sees the "no".
    bp = bob.page
    await bp.get_by_label("Somewhere else").check()
    await bp.get_by_label("State or province you are in now").fill("US-NV")
    await bp.get_by_role("button", name="Check in", exact=True).click()
    await bp.get_by_text("Somewhere else · US-NV · no telehealth consent").wait_for()
    await tp.locator(".waiting-row", has_text="Bob Stone").get_by_text(
        "Checked in: elsewhere, US-NV · NO telehealth consent").wait_for()
    # "Change" reopens the form with the answers given; a new answer replaces them.
    await bp.get_by_role("button", name="Change your check-in").click()
    assert await bp.get_by_label("State or province you are in now").input_value() == "US-NV"
    await bp.get_by_label("I agree to receive care by video or phone").check()
    await bp.get_by_role("button", name="Check in", exact=True).click()
    await tp.locator(".waiting-row", has_text="Bob Stone").get_by_text(
        "Checked in: elsewhere, US-NV · telehealth consent").wait_for()
    await tp.get_by_role("button", name="Admit Bob Stone").click()
    await bp.get_by_role("toolbar", name="Your controls").wait_for()

    errors = chromium.console_errors()
    assert errors == {}, errors
