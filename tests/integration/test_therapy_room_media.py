"""The therapy room with real aiortc peers through a real `circle serve`: a private aside,
an observer who only listens and watches, a client sent back to the waiting room."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from client.participant import CircleClient

from .media_fixtures import Counter, advance
from .server_fixtures import Api, CircleServer, module_server, settle
from .test_media_session import AV, eventually, sees

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module", params=["0", "2"], ids=["in-process relay", "2 media workers"])
def server(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[CircleServer]:
    yield from module_server(tmp_path_factory, CIRCLE_MEDIA_WORKERS=request.param)


def audio_from(viewer: CircleClient, publisher: str) -> Counter:
    """Audio packets `viewer` received from `publisher` (by the id the viewer knows it by)."""

    async def count() -> int:
        stats = (await viewer.received()).get(publisher)
        return int(stats.audio_packets) if stats is not None else 0

    return count


async def frozen(forbidden: list[Counter], *reference: Counter) -> list[int]:
    """What grew in `forbidden` while every `reference` flow advanced by ~1.5 s of audio
    (after a drain of what was in flight): all zeros when nothing got through."""
    await advance(25, *reference, timeout=15)
    before = [await c() for c in forbidden]
    await advance(75, *reference, timeout=15)
    return [await c() - b for c, b in zip(forbidden, before, strict=True)]


async def test_aside_the_two_hear_each_other_and_nobody_else(api: Api) -> None:
    sid = await api.create_session()
    therapist = await api.join(sid, "t1", "Dr Kim Park", role="therapist", media=AV)
    co = await api.join(sid, "t2", "Dr Lee Ray", role="co_therapist", media=AV)
    ann = await api.join(sid, "c1", "Ann Lee", media=AV)
    bob = await api.join(sid, "c2", "Bob Stone", media=AV)
    try:
        await therapist.wait_for(lambda s: len(s["waiting"]) == 2)
        assert (await therapist.call("admit_all"))["ok"]
        dr, lee, a, b = (therapist.handle_of(p) for p in ("t1", "t2", "c1", "c2"))
        await eventually(sees(bob, dr, lee, a, kind="audio"))
        await eventually(sees(ann, dr, lee, b, kind="audio"))

        assert (await therapist.call("aside_open", {"participant_id": "c1"}))["ok"]
        await ann.wait_for(lambda s: s["you"].get("aside") is not None)
        # The two hear each other; the group (Bob, and the co-therapist running it) does
        # not hear them, and they do not hear the group.
        grew = await frozen(
            [audio_from(bob, a), audio_from(bob, dr), audio_from(co, "c1"),
             audio_from(co, "t1"), audio_from(ann, lee), audio_from(ann, b),
             audio_from(therapist, "c2"), audio_from(therapist, "t2")],
            audio_from(ann, dr), audio_from(therapist, "c1"), audio_from(bob, lee),
            audio_from(co, "c2"))
        assert grew == [0] * 8, grew

        assert (await co.call("aside_close", {}))["ok"]  # any clinician may close it
        await ann.wait_for(lambda s: "aside" not in s["you"] and s["you"]["room"] == "main")
        await advance(25, audio_from(bob, a), audio_from(ann, b), audio_from(co, "t1"),
                      timeout=15)
    finally:
        await settle(therapist, co, ann, bob)
    status, data = await api.request("GET", api.attendance_query(sid, session=sid,
                                                                 format="json"))
    assert status == 200
    rooms = {r["participant_id"]: r["breakout_rooms"] for r in data["rows"]}
    assert rooms == {"t1": ["Aside"], "t2": [], "c1": ["Aside"], "c2": []}


async def test_an_observers_media_never_reaches_anyone(api: Api) -> None:
    sid = await api.create_session()
    therapist = await api.join(sid, "t1", "Dr Kim Park", role="therapist", media=AV)
    ann = await api.join(sid, "c1", "Ann Lee", media=AV)
    # This observer's client publishes audio and video anyway: the relay must drop it.
    sam = await api.join(sid, "o1", "Sam Trainee", role="observer", media=AV)
    try:
        await sam.wait_for(lambda s: s["you"]["status"] == "admitted")  # no admit needed
        await therapist.wait_for(lambda s: len(s["waiting"]) == 1)
        assert (await therapist.call("admit", {"participant_id": "c1"}))["ok"]
        dr, a, o = (therapist.handle_of(p) for p in ("t1", "c1", "o1"))
        await eventually(sees(sam, dr, a))  # listens and watches
        await eventually(sees(sam, dr, a, kind="audio"))
        assert sam.media is not None and "a=sendonly" in sam.media.peer_connection \
            .localDescription.sdp, "the observer's client did offer its own tracks"

        async def from_observer(viewer: CircleClient, ref: str) -> int:
            stats = (await viewer.received()).get(ref)
            return 0 if stats is None else int(stats.audio_packets + stats.video_packets)

        async def at_therapist() -> int:
            return await from_observer(therapist, "o1")

        async def at_ann() -> int:
            return await from_observer(ann, o)

        await advance(100, audio_from(therapist, "c1"), audio_from(ann, dr), timeout=15)
        assert (await at_therapist(), await at_ann()) == (0, 0)
        view = await ann.wait_for(lambda s: any(p["role"] == "observer"
                                                for p in s["participants"]))
        assert [p["name"] for p in view["participants"] if p["role"] == "observer"] == ["Sam"]
        refused = await sam.call("chat", {"text": "hello"})
        assert refused["error"]["code"] == "forbidden"
    finally:
        await settle(therapist, ann, sam)
    status, data = await api.request("GET", api.attendance_query(sid, session=sid,
                                                                 format="json"))
    assert status == 200
    sam_row = next(r for r in data["rows"] if r["participant_id"] == "o1")
    assert (sam_row["role"], sam_row["billable"]) == ("observer", False)


async def test_sent_back_to_waiting_loses_media_and_gets_it_back_when_admitted(
        api: Api) -> None:
    sid = await api.create_session()
    therapist = await api.join(sid, "t1", "Dr Kim Park", role="therapist", media=AV)
    ann = await api.join(sid, "c1", "Ann Lee", media=AV)
    try:
        await therapist.wait_for(lambda s: len(s["waiting"]) == 1)
        assert (await therapist.call("admit", {"participant_id": "c1"}))["ok"]
        await eventually(sees(therapist, "c1"))
        assert (await therapist.call("send_to_waiting", {"participant_id": "c1"}))["ok"]
        notice = await ann.wait_notice("sent_to_waiting")
        assert notice["text"] == ("The therapist has moved you back to the waiting room "
                                  "for a moment.")
        view = await ann.wait_for(lambda s: s["you"]["status"] == "waiting")
        assert view["participants"] == [] and view["session"]["title"] == ""

        async def no_media() -> bool:
            return ann.media is None  # the page closed its peer connection too

        await eventually(no_media)
        refused = await ann.call("signal", {"type": "offer", "sdp": "v=0\r\n"})
        assert refused["error"]["code"] == "forbidden"
        # Help from the waiting room reaches the therapist.
        assert (await ann.call("help", {}))["ok"]
        help_notice = await therapist.wait_notice("help")
        assert (help_notice["room"], help_notice["participant_id"]) == ("waiting", "c1")

        assert (await therapist.call("admit", {"participant_id": "c1"}))["ok"]
        await ann.wait_for(lambda s: s["you"]["status"] == "admitted")
        await eventually(sees(ann, therapist.handle_of("t1")))
        before = (await therapist.received()).get("c1")
        frames = before.video_frames if before is not None else 0
        await eventually(lambda: _more_frames(therapist, "c1", frames))
    finally:
        await settle(therapist, ann)
    status, data = await api.request("GET", api.attendance_query(sid, session=sid,
                                                                 format="json"))
    ann_row = next(r for r in data["rows"] if r["participant_id"] == "c1")
    # (How the minutes split is unit-tested: here the wait lasted a fraction of a second.)
    assert status == 200 and ann_row["status"] == "present" and ann_row["time_in"]


async def _more_frames(viewer: CircleClient, publisher: str, than: int) -> bool:
    stats = (await viewer.received()).get(publisher)
    return stats is not None and stats.video_frames > than
