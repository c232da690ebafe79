"""The therapy room (issue 14) on two real nodes: help, an aside, a share and a send back to
waiting decided by the owner for people connected to either node, with real aiortc media
through the owner's relay, and the aside surviving the owner's death."""

from __future__ import annotations

from pathlib import Path

from tests.integration.media_fixtures import advance
from tests.integration.test_therapy_room_media import audio_from, frozen

from .clinic import clinic
from .test_two_nodes import AV, eventually_owned, group_across


async def test_help_aside_share_and_waiting_work_across_nodes_and_survive_a_failover(
    tmp_path: Path,
) -> None:
    async with clinic(tmp_path) as place:
        a, b = place.nodes
        sid = await place.api(a).create_session()
        people = await group_across(place, sid, a, b, media=AV)  # t1 and c2 on a, c1 on b
        t1, c1, c2 = people["t1"], people["c1"], people["c2"]
        dr, ann, bob = (t1.handle_of(p) for p in ("t1", "c1", "c2"))
        await advance(25, audio_from(c1, dr), audio_from(c2, ann), audio_from(t1, "c1"),
                      timeout=30)

        # Help from node b reaches the clinician on node a, and no other client.
        assert (await c1.call("help", {}))["ok"]
        notice = await t1.wait_notice("help")
        assert (notice["room"], notice["participant_id"]) == ("main", "c1")
        assert not any(n["kind"] == "help" for n in c2.notices)

        # The aside: the two hear each other across the nodes; Bob hears neither.
        assert (await t1.call("aside_open", {"participant_id": "c1"}))["ok"]
        await c1.wait_for(lambda s: s["you"].get("aside") is not None)
        grew = await frozen([audio_from(c2, ann), audio_from(c2, dr), audio_from(c1, bob)],
                            audio_from(c1, dr), audio_from(t1, "c1"))
        assert grew == [0, 0, 0], grew

        # The owner dies: the aside goes on on node b, without a new admit.
        await eventually_owned(place, sid, b, by=a)
        a.kill()
        for client in (t1, c2):
            await client.wait_until(lambda c=client: c.reconnects >= 1 and c.url == b.url,
                                    timeout=30)
        await c1.wait_for(lambda s: s["you"].get("aside") is not None
                          and s["you"]["status"] == "admitted", timeout=30)
        await eventually_owned(place, sid, b, by=b)
        await advance(25, audio_from(c1, dr), audio_from(t1, "c1"), timeout=30)
        assert (await t1.call("aside_close", {}))["ok"]
        await c1.wait_for(lambda s: "aside" not in s["you"] and s["you"]["room"] == "main")
        await advance(25, audio_from(c2, ann), audio_from(c1, bob), timeout=30)

        # A share, marked in everyone's view, stopped by the therapist.
        assert (await c1.call("share_start", {}))["error"]["code"] == "forbidden"
        assert (await t1.call("share_policy", {"clients_may_share": True}))["ok"]
        assert (await c1.call("share_start", {}))["ok"]
        view = await c2.wait_for(lambda s: s.get("share") is not None)
        assert view["share"]["id"] == ann and view["share"]["stream"] == f"{ann}-screen"
        assert (await t1.call("share_stop", {"participant_id": "c1"}))["ok"]
        await c2.wait_for(lambda s: s.get("share") is None)

        # Back to the waiting room and admitted again.
        assert (await t1.call("send_to_waiting", {"participant_id": "c2"}))["ok"]
        await c2.wait_notice("sent_to_waiting")
        await c2.wait_for(lambda s: s["you"]["status"] == "waiting" and not s["participants"])
        assert (await t1.call("admit", {"participant_id": "c2"}))["ok"]
        await c2.wait_for(lambda s: s["you"]["status"] == "admitted")
        await advance(25, audio_from(c2, dr), audio_from(t1, "c2"), timeout=30)

        for client in people.values():
            await client.close()
        status, data = await place.api(b).request(
            "GET", f"/api/v1/attendance?session={sid}&format=json")
        assert status == 200, data
        rooms = {r["participant_id"]: r["breakout_rooms"] for r in data["rows"]}
        assert rooms == {"t1": ["Aside"], "c1": ["Aside"], "c2": []}
