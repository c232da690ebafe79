"""One seat per person across nodes: a second device connected to a node that does not own
the session waits, is told and closed, or takes the seat, from the owner; and a node that
takes the session over finds the waiting device where it was (census with devices)."""

from __future__ import annotations

from pathlib import Path

from client.participant import CircleClient
from client.reconnect import Backoff

from .clinic import Clinic, clinic
from .test_two_nodes import eventually_owned

FAST = Backoff(base_s=0.05, cap_s=0.5)


def seat_of(view: dict, pid: str) -> dict:  # type: ignore[type-arg]
    return next(p for p in view["participants"] if p["id"] == pid)


def waits(view: dict) -> bool:  # type: ignore[type-arg]
    return bool(view["you"].get("second_device") == "waiting")


async def client_on(place: Clinic, urls: list[str], token: str) -> CircleClient:
    client = CircleClient(urls, token, backoff=FAST)
    await client.connect()
    place.clients.append(client)
    return client


async def test_a_second_device_on_another_node_waits_and_the_seat_moves_there(
    tmp_path: Path,
) -> None:
    async with clinic(tmp_path) as place:
        a, b = place.nodes
        sid = await place.api(a).create_session()
        await eventually_owned(place, sid, b, by=a)
        t1 = await place.join(a, sid, "t1", "Dr Kim Park", "therapist")
        token = (await place.api(a).invite(sid, "c1", "Ann Lee"))["token"]
        ann = await client_on(place, [a.url], token)
        await t1.wait_for(lambda s: [w["id"] for w in s["waiting"]] == ["c1"])
        assert (await t1.call("admit", {"participant_id": "c1"}))["ok"]
        await ann.wait_for(lambda s: s["you"]["status"] == "admitted")

        # Node b holds the waiting device; a (the owner) delivers to it and closes it.
        second = await client_on(place, [b.url], token)
        await second.wait_for(waits)
        assert second.url == b.url
        await t1.wait_for(lambda s: [d["id"] for d in s["second_devices"]] == ["c1"])
        refused = await second.call("chat", {"text": "hi"})
        assert refused["error"]["code"] == "forbidden"
        assert (await t1.call("second_device", {"participant_id": "c1", "allow": False}))["ok"]
        await second.wait_notice("second_device_refused")
        await second.wait_until(lambda: second.gave_up is not None and not second.connected)
        assert ann.connected and (await ann.call("chat", {"text": "still mine"}))["ok"]

        third = await client_on(place, [b.url], token)
        await third.wait_for(waits)
        await t1.wait_for(lambda s: [d["id"] for d in s["second_devices"]] == ["c1"])
        assert (await t1.call("second_device", {"participant_id": "c1", "allow": True}))["ok"]
        await ann.wait_notice("continued_elsewhere")
        await ann.wait_until(lambda: ann.gave_up is not None and not ann.connected)
        seated = await third.wait_for(lambda s: not waits(s) and bool(s["participants"]))
        assert seated["you"]["status"] == "admitted"
        assert (await third.call("chat", {"text": "from node b"}))["ok"]
        await t1.wait_until(lambda: any(c["text"] == "from node b" for c in t1.chats))
        view = await t1.wait_for(lambda s: s["second_devices"] == [])
        assert view["waiting"] == [] and seat_of(view, "c1")["connected"]


async def test_a_takeover_finds_the_waiting_device_where_it_was(tmp_path: Path) -> None:
    async with clinic(tmp_path) as place:
        a, b = place.nodes
        sid = await place.api(a).create_session()
        await eventually_owned(place, sid, b, by=a)
        t1 = await place.join([b, a], sid, "t1", "Dr Kim Park", "therapist")
        token = (await place.api(a).invite(sid, "c1", "Ann Lee"))["token"]
        ann = await client_on(place, [b.url, a.url], token)
        await t1.wait_for(lambda s: [w["id"] for w in s["waiting"]] == ["c1"])
        assert (await t1.call("admit", {"participant_id": "c1"}))["ok"]
        await ann.wait_for(lambda s: s["you"]["status"] == "admitted")
        second = await client_on(place, [b.url, a.url], token)
        await second.wait_for(waits)
        await t1.wait_for(lambda s: [d["id"] for d in s["second_devices"]] == ["c1"])

        fresh: list[dict] = []  # type: ignore[type-arg]
        t1.on_state.append(fresh.append)
        a.kill()  # the owner dies; every socket is on b, which takes the session over
        await eventually_owned(place, sid, b, by=b, timeout=30)
        # The new owner pushes every view in full once it has placed the census's sockets.
        await t1.wait_until(lambda: bool(fresh), timeout=30)
        view = fresh[-1]
        assert [d["id"] for d in view["second_devices"]] == ["c1"], "still waiting"
        assert seat_of(view, "c1")["connected"] and view["waiting"] == []
        assert ann.connected and not ann.second_device and second.second_device
        assert (await t1.call("second_device", {"participant_id": "c1", "allow": True}))["ok"]
        await ann.wait_notice("continued_elsewhere")
        seated = await second.wait_for(lambda s: not waits(s) and bool(s["participants"]))
        assert seated["you"]["status"] == "admitted"
        after = await t1.wait_for(lambda s: s["second_devices"] == [])
        assert seat_of(after, "c1")["connected"] and after["waiting"] == []
