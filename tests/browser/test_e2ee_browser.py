"""Browser: end-to-end encrypted media (issue 16) in Chromium with fake devices.

Every page encrypts its frames in a worker (RTCRtpScriptTransform) and decrypts its
roommates'; the relay forwards what it cannot read. What is checked: members see and hear
each other and share one safety code; a page whose keys are withheld (the server's
`e2ee_key` messages dropped on its socket) decodes nothing; a removed participant never
gets the key used after its removal; a breakout room's keys are not the main room's.
Fingerprints (a hash of a key, never the key) come from the page's debug hook.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.integration.media_fixtures import advance
from tests.integration.server_fixtures import Api, api, server  # noqa: F401

from .browser_fixtures import (  # noqa: F401
    Browser,
    Person,
    chromium,
    eventually,
    handle_of,
    sees_video,
)
from .test_web_client import audio_packets, join_link, through_device_check

pytestmark = [pytest.mark.browser, pytest.mark.integration]


async def e2ee(person: Person) -> dict[str, Any]:
    return dict(await person.debug("e2ee()"))


async def admitted(therapist: Person, *clients: Person) -> None:
    tp = therapist.page
    await tp.get_by_role("button", name=f"Admit all ({len(clients)})").click()
    for person in clients:
        await person.page.get_by_role("toolbar", name="Your controls").wait_for()


async def group(api: Api, chromium: Browser, sid: str, *names: tuple[str, str],  # noqa: F811
                before: dict[str, Any] | None = None) -> list[Person]:
    """The therapist t1, then clients `names` ((pid, name)) through the device check and
    admitted; `before[pid]` runs on a client's page before it loads."""
    therapist = await chromium.open("therapist",
                                    await join_link(api, sid, "t1", "Dr Kim Park", "therapist"))
    await through_device_check(therapist)
    clients = []
    for pid, name in names:
        person = await chromium.open(pid, await join_link(api, sid, pid, name),
                                     before=(before or {}).get(pid))
        await through_device_check(person)
        clients.append(person)
    await therapist.page.get_by_role("button", name=f"Admit all ({len(clients)})").wait_for()
    await admitted(therapist, *clients)
    return [therapist, *clients]


async def decrypting(person: Person, handle: str) -> bool:
    """`person` holds a key of `handle` and its worker has decrypted frames."""
    state = await e2ee(person)
    return bool(state["received"].get(handle, {}).get("fingerprints")) and \
        state["counts"]["decrypted"] > 0


async def decrypts(person: Person, handle: str) -> None:
    await eventually(lambda: decrypting(person, handle), 15, f"{person.name} decrypts {handle}")


async def test_three_browsers_see_and_hear_each_other_and_share_one_safety_code(
    api: Api, chromium: Browser  # noqa: F811
) -> None:
    sid = await api.create_session(e2ee=True)
    kim, ann, bo = await group(api, chromium, sid, ("c1", "Ann Lee"), ("c2", "Bo Diaz"))
    ids = {"t1": await handle_of(kim, "t1"), "c1": await handle_of(kim, "c1"),
           "c2": await handle_of(kim, "c2")}
    for viewer, others in ((kim, ("c1", "c2")), (ann, ("t1", "c2")), (bo, ("t1", "c1"))):
        for other in others:
            seen = other if viewer is kim else ids[other]
            await sees_video(viewer, seen)
            await decrypts(viewer, ids[other])
    # Audio too, every pair (the worker decrypts it: counts below).
    for viewer, others in ((kim, ("c1", "c2")), (ann, ("t1", "c2")), (bo, ("t1", "c1"))):
        for other in others:
            heard = other if viewer is kim else ids[other]
            await advance(25, audio_packets(viewer, heard), timeout=15, interval=0.1)
    # The relay still reads what it needs: the audio level (talk time) is not encrypted.
    async def talk_counted() -> bool:
        talk = (await kim.debug("state()")).get("talk", {})
        return bool(talk.get("c1", 0) > 0 and talk.get("c2", 0) > 0)

    await eventually(talk_counted, 20, "talk time from encrypted audio")
    states = [await e2ee(p) for p in (kim, ann, bo)]
    assert all(s["on"] for s in states)
    assert all(s["counts"]["encrypted"] > 0 for s in states)
    codes = {s["safetyCode"] for s in states}
    assert len(codes) == 1 and re.fullmatch(r"\d{4} \d{4} \d{4}", codes.pop()), states
    for person in (kim, ann, bo):
        status = person.page.locator("#e2ee-status")
        assert "End-to-end encrypted" in (await status.text_content() or "")

    # Modality is read from what reached the relay, encrypted or not.
    status, data = await api.request("GET", api.attendance_query(sid, session=sid,
                                                                 format="json"))
    assert status == 200
    rows = {r["participant_id"]: r for r in data["rows"]}
    assert {rows[p]["modality"] for p in ("t1", "c1", "c2")} == {"audio-video"}, rows
    # A therapist's mute still holds at the relay: Bo's camera stops reaching Ann, his
    # audio goes on.
    await kim.page.get_by_role("button", name="Stop Bo Diaz's camera").click()
    await kim.page.get_by_role("button", name="Allow Bo Diaz's camera").wait_for()

    async def bo_video_at_ann() -> int:
        return int((await ann.debug("inbound()")).get(ids["c2"], {}).get("video", 0))

    bo_audio_at_ann = audio_packets(ann, ids["c2"])
    await advance(25, bo_audio_at_ann, timeout=15, interval=0.1)  # what was in flight
    frames = await bo_video_at_ann()
    await advance(75, bo_audio_at_ann, timeout=15, interval=0.1)
    assert await bo_video_at_ann() == frames, "muted video still reached Ann"
    assert chromium.console_errors() == {}


async def test_a_plain_session_says_it_is_not_end_to_end_encrypted(
    api: Api, chromium: Browser  # noqa: F811
) -> None:
    sid = await api.create_session()
    kim, ann = await group(api, chromium, sid, ("c1", "Ann Lee"))
    await sees_video(kim, "c1")
    status = ann.page.locator("#e2ee-status")
    assert (await status.text_content() or "").strip().startswith("Not end-to-end encrypted")
    assert not (await e2ee(ann))["on"]


async def withhold_keys(page: Any) -> None:
    """Drop every `e2ee_key` the server sends this page: what a page without the key sees."""

    def route(ws: Any) -> None:
        upstream = ws.connect_to_server()
        ws.on_message(lambda message: upstream.send(message))
        upstream.on_message(lambda message: None if str(message).startswith('42["e2ee_key"')
                          else ws.send(message))

    await page.route_web_socket(re.compile(r".*/socket\.io/.*"), route)


async def test_a_receiver_without_the_key_decodes_nothing(
    api: Api, chromium: Browser  # noqa: F811
) -> None:
    sid = await api.create_session(e2ee=True)
    kim, ann, eve = await group(api, chromium, sid, ("c1", "Ann Lee"), ("c2", "Eve Roe"),
                                before={"c2": withhold_keys})
    dr, a = await handle_of(kim, "t1"), await handle_of(kim, "c1")
    await sees_video(ann, dr)
    await eventually(lambda: decrypting(ann, dr), 15, "Ann decrypts the therapist")

    async def packets_arrive() -> bool:
        inbound = await eve.debug("inbound()")
        return bool(inbound.get(a, {}).get("audio", 0) > 50)

    await eventually(packets_arrive, 15, "the relay forwards Ann's media to Eve")
    seen = await e2ee(eve)
    inbound = await eve.debug("inbound()")
    assert inbound[a]["video"] == 0 and inbound.get(dr, {}).get("video", 0) == 0, inbound
    assert seen["received"] == {} and seen["counts"]["decrypted"] == 0, seen
    assert seen["counts"]["dropped"] > 0, seen


async def test_a_removed_participant_never_gets_the_key_sent_after_its_removal(
    api: Api, chromium: Browser  # noqa: F811
) -> None:
    sid = await api.create_session(e2ee=True)
    kim, ann, bo = await group(api, chromium, sid, ("c1", "Ann Lee"), ("c2", "Bo Diaz"))
    dr = await handle_of(kim, "t1")
    await eventually(lambda: decrypting(bo, dr), 15, "Bo decrypts the therapist")
    before = await e2ee(kim)
    bo_knew = set((await e2ee(bo))["received"][dr]["fingerprints"])
    assert before["sendFingerprint"] in bo_knew

    await kim.page.get_by_role("button", name="Remove Bo Diaz").click()
    await kim.page.get_by_role("button", name="Confirm: remove Bo Diaz").click()

    async def rekeyed() -> dict[str, Any] | None:
        now = await e2ee(kim)
        return now if now["sendFingerprint"] != before["sendFingerprint"] else None

    after = await eventually(rekeyed, 15, "the therapist takes a new key")
    assert after["sendFingerprint"] not in bo_knew
    assert after["epoch"] != before["epoch"]
    ann_knows = set((await e2ee(ann))["received"][dr]["fingerprints"])
    await eventually(lambda: _knows(ann, dr, after["sendFingerprint"]), 15,
                     "Ann gets the new key")
    assert before["sendFingerprint"] in ann_knows, "Ann held the key from before the removal"
    await sees_video(ann, dr)
    bo_now = await e2ee(bo)
    assert after["sendFingerprint"] not in set(
        bo_now.get("received", {}).get(dr, {}).get("fingerprints", []))


async def _knows(person: Person, handle: str, fingerprint: str) -> bool:
    known = (await e2ee(person))["received"].get(handle, {}).get("fingerprints", [])
    return fingerprint in known


async def test_a_breakout_room_uses_keys_the_main_room_never_gets(
    api: Api, chromium: Browser  # noqa: F811
) -> None:
    sid = await api.create_session(e2ee=True)
    kim, ann, bo = await group(api, chromium, sid, ("c1", "Ann Lee"), ("c2", "Bo Diaz"))
    a, b = await handle_of(kim, "c1"), await handle_of(kim, "c2")
    await eventually(lambda: decrypting(kim, a), 15, "the therapist decrypts Ann")
    main_code = (await e2ee(ann))["safetyCode"]

    planner = kim.page.locator(".panel-breakouts")
    await planner.get_by_label("Automatic").check()
    await planner.get_by_label("Number of rooms").fill("1")
    await planner.get_by_label("Minutes", exact=True).fill("5")
    await planner.get_by_role("button", name="Open breakouts").click()
    for person in (ann, bo):
        await person.page.get_by_role("region", name="Your breakout room").wait_for()

    async def room_keyed() -> bool:
        ann_now, bo_now = await e2ee(ann), await e2ee(bo)
        return ann_now["sendFingerprint"] in bo_now["received"].get(a, {}).get(
            "fingerprints", []) and ann_now["safetyCode"] == bo_now["safetyCode"]

    await eventually(room_keyed, 15, "Ann and Bo share their room's keys")
    await sees_video(bo, a)
    await sees_video(ann, b)
    in_room = await e2ee(ann)
    assert in_room["safetyCode"] != main_code, "the code names the room's members"
    therapist_knows = (await e2ee(kim))["received"].get(a, {}).get("fingerprints", [])
    assert in_room["sendFingerprint"] not in therapist_knows
