"""Two real nodes on one PostgreSQL and one Redis: any node serves any session, its owner
decides, and a dead or draining owner's sessions go on elsewhere without a new admit."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from client.participant import CircleClient, MediaOptions
from tests.integration.media_fixtures import wait_until
from tests.integration.server_fixtures import CircleServer, stop_process

from .clinic import LEASE_TTL_S, Clinic, clinic

AV = MediaOptions(audio=True, video=True)
ROLES = {
    "rooms": [{"name": "Sister", "participant_ids": ["c1", "c2"],
               "roles": {"c1": "protagonist", "c2": "antagonist"},
               "scenario": "Asking your sister to stop drinking around you"}],
    "minutes": 30,
}


def node_id(node: CircleServer) -> str:
    return f"127.0.0.1:{node.port}"


async def owner_of(place: Clinic, session_id: str, via: CircleServer) -> str:
    status, data = await place.api(via).request("GET", "/api/v1/nodes")
    assert status == 200, data
    owners = [n["node_id"] for n in data["nodes"] if session_id in n["session_ids"]]
    assert len(owners) <= 1, f"two owners: {owners}"
    return owners[0] if owners else ""


async def eventually_owned(place: Clinic, session_id: str, via: CircleServer,
                           by: CircleServer, timeout: float = 20.0) -> None:
    """The directory is refreshed by heartbeats: wait for `by` to be listed as the owner."""
    deadline = time.monotonic() + timeout
    while (owner := await owner_of(place, session_id, via)) != node_id(by):
        assert time.monotonic() < deadline, f"owner is {owner!r}, not {node_id(by)}"
        await asyncio.sleep(0.1)


async def group_across(place: Clinic, sid: str, a: CircleServer, b: CircleServer,
                       media: MediaOptions | None = None) -> dict[str, CircleClient]:
    """A therapist on node a, c1 on b, c2 on a: each may fall back to the other node."""
    people = {
        "t1": await place.join([a, b], sid, "t1", "Dr Kim Park", "therapist", media),
        "c1": await place.join([b, a], sid, "c1", "Ann Lee", media=media),
        "c2": await place.join([a, b], sid, "c2", "Bob Stone", media=media),
    }
    await people["t1"].wait_for(lambda s: len(s["waiting"]) == 2)
    assert (await people["t1"].call("admit_all"))["ok"]
    for pid in ("c1", "c2"):
        await people[pid].wait_for(lambda s: s["you"]["status"] == "admitted")
    return people


def seat(view: dict[str, Any]) -> tuple[Any, ...]:
    you = view["you"]
    return (you["status"], you["room"], you["breakout_role"], you["muted"]["audio"],
            you["muted"]["video"])


async def test_every_node_serves_the_whole_api_and_lists_the_clinic(tmp_path: Path) -> None:
    async with clinic(tmp_path) as place:
        a, b = place.nodes
        sid = await place.api(a).create_session()
        status, session = await place.api(b).request("GET", f"/api/v1/sessions/{sid}")
        assert status == 200 and session["id"] == sid
        invite = await place.api(b).invite(sid, "c1", "Ann Lee")  # a key made on a, used on b
        assert invite["token"]
        for node in (a, b):
            status, health = await place.api(node).request("GET", "/healthz", headers={})
            assert status == 200
            assert health["database"] is True and health["redis"] is True
            assert health["node"] == node_id(node)
        status, listing = await place.api(b).request("GET", "/api/v1/nodes")
        assert status == 200
        assert {n["node_id"] for n in listing["nodes"]} == {node_id(a), node_id(b)}
        await eventually_owned(place, sid, b, by=a)  # the node that created it
        staff = CircleServer(a.data_dir, env=a.env).create_key(role="staff", name="desk")
        status, refused = await place.api(a).request(
            "GET", "/api/v1/nodes", headers={"Authorization": f"Bearer {staff}"})
        assert status == 403 and refused["error"]["code"] == "forbidden"


async def test_state_chat_and_notices_reach_participants_on_either_node(tmp_path: Path) -> None:
    async with clinic(tmp_path) as place:
        a, b = place.nodes
        sid = await place.api(a).create_session()
        people = await group_across(place, sid, a, b)
        t1, c1, c2 = people["t1"], people["c1"], people["c2"]
        assert c1.url == b.url and t1.url == a.url
        assert c1.config["nodes"] == [b.url, a.url], "where to go if this node goes away"
        view = await c1.wait_for(lambda s: len(s["participants"]) == 3)
        assert {p["name"] for p in view["participants"]} == {"Dr", "Ann", "Bob"}
        assert (await c1.call("chat", {"text": "hello from node b"}))["ok"]
        assert (await t1.wait_chat())["text"] == "hello from node b"
        assert (await c2.wait_chat())["text"] == "hello from node b"
        assert (await t1.call("mute", {"participant_id": "c1", "kind": "audio",
                                       "muted": True}))["ok"]
        await c1.wait_for(lambda s: s["you"]["muted"]["audio"])
        late = await place.join(b, sid, "c3", "Cal Diaz")
        await t1.wait_for(lambda s: len(s["waiting"]) == 1)
        assert (await t1.call("waiting_message", {"text": "Starting in five minutes"}))["ok"]
        assert (await late.wait_notice("message"))["text"] == "Starting in five minutes"
        assert (await c1.call("hand", {"raised": True}))["ok"]
        await t1.wait_for(lambda s: any(p["hand"] for p in s["participants"]))


async def test_media_of_a_participant_on_the_other_node_goes_through_the_owner(
    tmp_path: Path,
) -> None:
    async with clinic(tmp_path) as place:
        a, b = place.nodes
        sid = await place.api(a).create_session()
        people = await group_across(place, sid, a, b, media=AV)

        def sees(viewer: CircleClient, *publishers: str) -> Any:
            async def check() -> bool:
                stats = await viewer.received()
                return all(p in stats and stats[p].video_frames > 0 for p in publishers)
            return check

        await wait_until(sees(people["c1"], *(people["t1"].handle_of(p) for p in ("t1", "c2"))),
                         timeout=30)
        await wait_until(sees(people["t1"], "c1", "c2"), timeout=30)

        async def peers(node: CircleServer) -> float:
            return sum((await place.api(node).metric("circle_media_worker_peers")).values())

        async def all_on_the_owner() -> bool:  # workers report once a second
            return await peers(a) == 3

        await wait_until(all_on_the_owner, timeout=10)
        assert await peers(b) == 0, "every peer connection is on the owner's relay"


async def test_killing_the_owner_moves_the_session_without_a_new_admit(tmp_path: Path) -> None:
    async with clinic(tmp_path) as place:
        a, b = place.nodes
        sid = await place.api(a).create_session()
        people = await group_across(place, sid, a, b)
        t1 = people["t1"]
        assert (await t1.call("mute", {"participant_id": "c2", "kind": "video",
                                       "muted": True}))["ok"]
        assert (await t1.call("breakouts_open", ROLES))["ok"]
        opened = await people["c1"].wait_for(lambda s: s["you"]["room"] == "r1")
        await people["c2"].wait_for(lambda s: s["you"]["muted"]["video"])
        before = {pid: seat(c.state or {}) for pid, c in people.items()}
        await eventually_owned(place, sid, b, by=a)

        killed_at = time.monotonic()
        a.kill()
        for client in (t1, people["c2"]):
            await client.wait_until(lambda c=client: c.reconnects >= 1 and c.url == b.url,
                                    timeout=30)
        for pid, client in people.items():
            view = await client.wait_for(lambda s, pid=pid: seat(s) == before[pid], timeout=30)
            assert view["breakouts"]["ends_at"] == opened["breakouts"]["ends_at"]
        took = time.monotonic() - killed_at
        await eventually_owned(place, sid, b, by=b)
        assert took < LEASE_TTL_S + 10, f"failover took {took:.1f} s"
        # The survivor decides now: a command goes through and everyone hears of it.
        assert (await t1.call("hand", {"raised": True}))["ok"]
        await people["c1"].wait_for(lambda s: any(p["hand"] for p in s["participants"]))
        status, data = await place.api(b).request("GET", f"/api/v1/sessions/{sid}")
        assert status == 200 and data["counts"]["admitted"] == 3


async def test_a_draining_node_hands_its_sessions_over_and_sends_its_clients_on(
    tmp_path: Path,
) -> None:
    async with clinic(tmp_path) as place:
        a, b = place.nodes
        sid = await place.api(a).create_session()
        people = await group_across(place, sid, a, b)
        before = {pid: seat(c.state or {}) for pid, c in people.items()}
        await eventually_owned(place, sid, b, by=a)

        await asyncio.to_thread(stop_process, a.process)  # SIGTERM
        assert a.process is not None and a.process.returncode == 0
        await eventually_owned(place, sid, b, by=b, timeout=5)  # handed over
        for pid, client in people.items():
            await client.wait_for(lambda s, pid=pid: seat(s) == before[pid], timeout=20)
            await client.wait_until(lambda c=client: c.url == b.url, timeout=20)
        assert (await people["t1"].call("lock", {"locked": True}))["ok"]
        await people["c1"].wait_for(lambda s: s["session"]["locked"])
        log = a.log_text()
        assert "Traceback" not in log


async def test_a_redis_restart_during_admits_and_moves_loses_no_command_silently(
    tmp_path: Path,
) -> None:
    """Across a Redis restart every command is either applied or answered with an error,
    and the group agrees on the end state once Redis is back."""
    async with clinic(tmp_path) as place:
        a, b = place.nodes
        sid = await place.api(a).create_session()
        people = await group_across(place, sid, a, b)
        t1 = people["t1"]
        assert (await t1.call("breakouts_open", ROLES))["ok"]
        await people["c2"].wait_for(lambda s: s["you"]["room"] == "r1")
        latecomers = [await place.join([b, a] if i % 2 else [a, b], sid, f"c{i}", f"Late {i}")
                      for i in range(3, 7)]
        outcomes: list[str] = []
        moved_to: list[str] = []
        admitted: list[str] = []

        async def call(event: str, data: dict[str, Any]) -> bool:
            try:
                ack = await t1.call(event, data, timeout=15)
            except Exception as exc:  # a lost socket: the client reconnects by itself
                outcomes.append(type(exc).__name__)
                await asyncio.sleep(0.2)
                return False
            outcomes.append("ok" if ack.get("ok") else ack["error"]["code"])
            return bool(ack.get("ok"))

        async def work() -> None:
            for i in range(40):
                room = "main" if i % 2 == 0 else "r1"
                if await call("breakout_move", {"participant_id": "c2", "room": room}):
                    moved_to.append(room)
                if i % 10 == 5:
                    pid = f"c{3 + len(admitted)}"
                    if await call("admit", {"participant_id": pid}):
                        admitted.append(pid)
                await asyncio.sleep(0.05)

        running = asyncio.ensure_future(work())
        await asyncio.sleep(0.5)
        await place.redis.restart()
        await running
        assert moved_to and admitted, f"nothing got through: {outcomes}"
        assert set(outcomes) <= {"ok", "conflict", "TimeoutError"}, outcomes
        await people["c2"].wait_for(lambda s: s["you"]["room"] == moved_to[-1], timeout=30)
        for client in latecomers:
            pid = client.state["you"]["id"] if client.state else ""
            if pid in admitted:
                await client.wait_for(lambda s: s["you"]["status"] == "admitted", timeout=30)
        ack = await t1.call("admit_all")
        assert ack["ok"], ack
        for client in latecomers:
            await client.wait_for(lambda s: s["you"]["status"] == "admitted", timeout=30)
        status, health = await place.api(b).request("GET", "/healthz", headers={})
        assert status == 200 and health["redis"] is True
