"""Breakouts through a real `circle serve`: open, move, visit, close, restart, isolation."""

from __future__ import annotations

import random

import pytest

from client.participant import CircleClient, MediaOptions

from .media_fixtures import Counter, advance
from .server_fixtures import Api, CircleServer, settle

pytestmark = pytest.mark.integration

PLAN = {
    "rooms": [
        {"name": "Sister", "participant_ids": ["c1", "c2"],
         "roles": {"c1": "protagonist", "c2": "antagonist"},
         "scenario": "Asking your sister to stop drinking around you"},
        {"name": "Boss", "participant_ids": ["c3", "c4"],
         "roles": {"c3": "protagonist", "c4": "observer"},
         "scenario": "DEAR MAN: asking for a schedule change"},
    ],
    "minutes": 1,
}


async def group(api: Api, sid: str, media: MediaOptions | None = None
                ) -> tuple[CircleClient, dict[str, CircleClient]]:
    therapist = await api.join(sid, "t1", "Dr Kim Park", role="therapist", media=media)
    clients = {pid: await api.join(sid, pid, f"Client {pid}", media=media)
               for pid in ("c1", "c2", "c3", "c4")}
    await therapist.wait_for(lambda s: len(s["waiting"]) == 4)
    assert (await therapist.call("admit_all"))["ok"]
    for c in clients.values():
        await c.wait_for(lambda s: s["you"]["status"] == "admitted")
    return therapist, clients


def in_room(room: str):  # type: ignore[no-untyped-def]
    return lambda s: s["you"]["room"] == room


async def test_open_move_visit_rotate_extend_and_close(api: Api) -> None:
    sid = await api.create_session()
    therapist, clients = await group(api, sid)
    c1, c2, c3, c4 = clients.values()
    try:
        assert (await therapist.call("breakouts_open", PLAN))["ok"]
        view = await c1.wait_for(in_room("r1"))
        assert view["you"]["breakout_role"] == "protagonist"
        (room,) = view["breakouts"]["rooms"]
        assert room["name"] == "Sister" and room["scenario"].startswith("Asking your sister")
        assert view["breakouts"]["open"] and view["breakouts"]["ends_at"]
        observer = await c4.wait_for(in_room("r2"))
        assert observer["you"]["breakout_role"] == "observer"
        warning = await c1.wait_notice("breakout_warning")
        assert "minute" in warning["text"]

        assert (await therapist.call("breakout_broadcast", {"text": "Two minutes left"}))["ok"]
        for c in (c1, c3):
            assert (await c.wait_notice("broadcast"))["text"] == "Two minutes left"
        assert (await c3.call("breakout_help"))["ok"]
        help_notice = await therapist.wait_notice("help")
        assert help_notice["room"] == "r2" and "Boss" in help_notice["text"]

        assert (await therapist.call("breakout_move", {"participant_id": "c2",
                                                       "room": "r2"}))["ok"]
        moved = await c2.wait_for(in_room("r2"))
        assert moved["breakouts"]["rooms"][0]["name"] == "Boss"
        assert (await therapist.call("breakout_visit", {"room": "r1"}))["ok"]
        await therapist.wait_for(in_room("r1"))
        assert (await therapist.call("breakout_rotate"))["ok"]
        await c3.wait_for(lambda s: s["you"]["breakout_role"] != "protagonist")
        before = therapist.state["breakouts"]["ends_at"]  # type: ignore[index]
        assert (await therapist.call("breakout_extend", {"minutes": 5}))["ok"]
        await therapist.wait_for(lambda s: s["breakouts"]["ends_at"] > before)

        refused = await c1.call("breakout_move", {"participant_id": "c2", "room": "r1"})
        assert refused["error"]["code"] == "forbidden"
        refused = await therapist.call("breakout_move", {"participant_id": "c2", "room": "r9"})
        assert refused["error"]["code"] == "not_found"

        assert (await therapist.call("breakouts_close", {"grace_s": 1}))["ok"]
        closing = await c1.wait_notice("breakouts_closing")
        assert closing["closes_at"]
        for c in (therapist, c1, c2, c3, c4):
            back = await c.wait_for(lambda s: not s["breakouts"]["open"], timeout=10)
            assert back["you"]["room"] == "main" and back["you"]["breakout_role"] is None
    finally:
        await settle(therapist, *clients.values())
    status, data = await api.request(
        "GET", api.attendance_query(sid, session=sid, format="json"))
    assert status == 200
    rows = {r["participant_id"]: r for r in data["rows"]}
    assert rows["c2"]["breakout_rooms"] == ["Sister", "Boss"]
    assert "observer" in rows["c4"]["breakout_roles"]


async def test_saved_plan_over_http_opens_with_one_command(api: Api) -> None:
    sid = await api.create_session()
    for pid in ("c1", "c2"):
        await api.invite(sid, pid, f"Client {pid}")
    status, saved = await api.request(
        "PUT", f"/api/v1/sessions/{sid}/breakout-plan",
        json={"auto": {"count": 2, "strategy": "balanced"}, "minutes": 15,
              "scenario": "Saying no to a drink at a party"})
    assert (status, saved) == (200, {"saved": True})
    status, bad = await api.request("PUT", f"/api/v1/sessions/{sid}/breakout-plan",
                                    json={"minutes": 15})
    assert status == 400 and bad["error"]["code"] == "invalid"
    therapist, clients = await group(api, sid)
    try:
        assert therapist.state["breakouts"]["saved"]["auto"]["count"] == 2  # type: ignore[index]
        assert (await therapist.call("breakouts_open", {"use_saved": True}))["ok"]
        rooms = await therapist.wait_for(lambda s: s["breakouts"]["open"])
        assert len(rooms["breakouts"]["rooms"]) == 2
        assert all(r["scenario"] == "Saying no to a drink at a party"
                   for r in rooms["breakouts"]["rooms"])
    finally:
        await settle(therapist, *clients.values())


async def test_restart_while_open_keeps_rooms_roles_and_timer(
    own_server: tuple[CircleServer, Api],
) -> None:
    srv, api = own_server
    sid = await api.create_session()
    therapist, clients = await group(api, sid)
    assert (await therapist.call("breakouts_open", {**PLAN, "minutes": 30}))["ok"]
    opened = await clients["c3"].wait_for(in_room("r2"))
    tokens = {pid: c._token for pid, c in clients.items()}
    for c in (therapist, *clients.values()):
        c.sio.reconnection = False
    srv.kill()
    await settle(therapist, *clients.values())
    srv.start()
    back = {pid: CircleClient(srv.url, token) for pid, token in tokens.items()}
    try:
        for c in back.values():
            await c.connect()
        view = await back["c3"].wait_for(in_room("r2"))
        assert view["you"]["breakout_role"] == "protagonist"
        assert view["breakouts"]["ends_at"] == opened["breakouts"]["ends_at"]
        assert (await back["c1"].wait_for(in_room("r1")))["you"]["breakout_role"] == (
            "protagonist")
    finally:
        await settle(*back.values())


async def test_no_participant_receives_media_from_another_room(api: Api) -> None:
    sid = await api.create_session()
    audio = MediaOptions(audio=True, video=False)
    therapist, clients = await group(api, sid, media=audio)
    everyone = {"t1": therapist, **clients}
    rng = random.Random(20261125)

    # Clients know their peers by handle: read every count by participant id.
    ids = {therapist.handle_of(pid): pid for pid in everyone}

    async def counts() -> dict[str, dict[str, int]]:
        return {pid: {ids.get(src, src): st.audio_packets
                      for src, st in (await c.received()).items()}
                for pid, c in everyone.items()}

    def same_room_clock(where: dict[str, str], since: dict[str, dict[str, int]]) -> Counter:
        """Packets the fastest same-room flow has carried since `since`: the window's clock.

        Some pair always shares a room throughout a step (opening keeps c1 with c2; later
        one person moves and the four others share three rooms), so it keeps flowing.
        """

        async def read() -> int:
            now = await counts()
            return max((n - since[v].get(s, 0) for v, sources in now.items()
                        for s, n in sources.items() if where[s] == where[v]), default=0)

        return read

    try:
        assert (await therapist.call("breakouts_open", {**PLAN, "minutes": 30}))["ok"]
        rooms = ["main", "r1", "r2"]
        same_room_flows = 0
        for step in range(6):
            if step:
                pid = rng.choice(list(clients))
                target = rng.choice(rooms)
                assert (await therapist.call("breakout_move", {"participant_id": pid,
                                                               "room": target}))["ok"]
            where = {p["id"]: p["room"]
                     for p in (await therapist.wait_for(lambda s: True))["participants"]}
            # Packets already on the wire when the move landed arrive (loopback: ms).
            await advance(3, same_room_clock(where, await counts()))
            before = await counts()
            await advance(35, same_room_clock(where, before))  # ~0.7 s of audio
            after = await counts()
            for viewer, sources in after.items():
                for source, packets in sources.items():
                    grew = packets > before[viewer].get(source, 0)
                    if grew:
                        same_room_flows += 1
                        assert where[source] == where[viewer], (
                            f"step {step}: {viewer} in {where[viewer]} got media from "
                            f"{source} in {where[source]}"
                        )
        assert same_room_flows >= 6, "media flowed within rooms: the check is not vacuous"
    finally:
        await settle(*everyone.values())
