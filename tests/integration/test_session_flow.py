"""A group session end to end against a real `circle serve`, with python-socketio clients."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import pytest

from client.participant import CircleClient, JoinRefused

from .clock import iso, now
from .server_fixtures import Api, settle

pytestmark = pytest.mark.integration


def names(state: dict) -> set[str]:  # type: ignore[type-arg]
    return {p["name"] for p in state["participants"]}


async def test_waiting_room_admit_and_privacy(api: Api) -> None:
    sid = await api.create_session()
    ann = await api.join(sid, "c-ann", "Ann Lee")
    bob = await api.join(sid, "c-bob", "Bob Stone")
    therapist = None
    try:
        waiting = await ann.wait_for(lambda s: s["you"]["status"] == "waiting")
        assert waiting["participants"] == [] and "waiting" not in waiting
        assert waiting["session"]["title"] == "", "a waiting client learns nothing of the group"
        therapist = await api.join(sid, "t-kim", "Dr Kim Park", role="therapist")
        view = await therapist.wait_for(lambda s: len(s.get("waiting", [])) == 2)
        assert [w["id"] for w in view["waiting"]] == ["c-ann", "c-bob"]
        assert view["waiting"][0]["name"] == "Ann Lee" and view["waiting"][0]["since"]
        assert view["you"]["status"] == "admitted" and view["you"]["room"] == "main"

        assert await therapist.call("admit", {"participant_id": "c-ann"}) == {"ok": True}
        admitted = await ann.wait_for(lambda s: s["you"]["status"] == "admitted")
        assert admitted["you"]["room"] == "main"
        assert names(admitted) == {"Ann", "Dr"}, "peers see first names only"
        full = await therapist.wait_for(lambda s: len(s["participants"]) == 2)
        assert names(full) == {"Ann Lee", "Dr Kim Park"}, "therapists see full names"
        bob_view = bob.state
        assert bob_view is not None and bob_view["participants"] == []

        assert (await therapist.call("admit_all"))["ok"]
        await bob.wait_for(lambda s: s["you"]["status"] == "admitted")
        revs = [ann.state["rev"]]  # type: ignore[index]
        await therapist.call("hand", {"raised": True})
        await ann.wait_for(lambda s: any(p["hand"] for p in s["participants"]))
        assert ann.state["rev"] > revs[0]  # type: ignore[index]
    finally:
        await settle(ann, bob, therapist)


async def test_chat_reaches_the_room_only_and_is_not_stored(api: Api) -> None:
    sid = await api.create_session()
    therapist = await api.join(sid, "t1", "Dr Kim Park", role="therapist")
    ann = await api.join(sid, "c1", "Ann Lee")
    waiting = await api.join(sid, "c2", "Cal Diaz")
    try:
        await therapist.wait_for(lambda s: len(s["waiting"]) == 2)
        await therapist.call("admit", {"participant_id": "c1"})
        await ann.wait_for(lambda s: s["you"]["status"] == "admitted")
        assert (await ann.call("chat", {"text": "hello group"}))["ok"]
        received = await therapist.wait_chat()
        assert received["text"] == "hello group" and received["room"] == "main"
        assert therapist.chats[0]["name"] == "Ann Lee" and therapist.chats[0]["from"] == "c1"
        assert waiting.chats == []
        refused = await waiting.call("chat", {"text": "let me in"})
        assert refused["error"]["code"] == "forbidden"
    finally:
        await settle(therapist, ann, waiting)
    status, csv = await api.request("GET", api.attendance_query(sid, session=sid))
    assert status == 200 and "hello group" not in csv


async def test_mute_lock_deny_remove_end(api: Api) -> None:
    sid = await api.create_session()
    therapist = await api.join(sid, "t1", "Dr Kim Park", role="therapist")
    ann = await api.join(sid, "c1", "Ann Lee")
    bob = await api.join(sid, "c2", "Bob Stone")
    try:
        await therapist.wait_for(lambda s: len(s["waiting"]) == 2)
        await therapist.call("admit", {"participant_id": "c1"})
        ack = await therapist.call("mute", {"participant_id": "c1", "kind": "audio",
                                            "muted": True})
        assert ack == {"ok": True}
        muted = await ann.wait_for(lambda s: s["you"]["muted"]["audio"])
        assert muted["you"]["muted"] == {"audio": True, "video": False}

        assert (await therapist.call("deny", {"participant_id": "c2",
                                              "reason": "please join Thursday"}))["ok"]
        notice = await bob.wait_notice("denied")
        assert notice["text"] == "please join Thursday"
        with pytest.raises(JoinRefused) as denied_again:
            await api.join(sid, "c2", "Bob Stone")
        assert denied_again.value.code == "forbidden"

        assert (await therapist.call("lock", {"locked": True}))["ok"]
        with pytest.raises(JoinRefused) as locked:
            await api.join(sid, "c3", "Cal Diaz")
        assert locked.value.code == "conflict" and "locked" in locked.value.message
        assert (await therapist.call("lock", {"locked": False}))["ok"]

        assert (await therapist.call("remove", {"participant_id": "c1"}))["ok"]
        await ann.wait_notice("removed")
        rejoin = type(ann)(api.server.url, ann._token)
        with pytest.raises(JoinRefused) as removed:
            await rejoin.connect()
        assert removed.value.code == "forbidden" and "removed" in removed.value.message

        late = await api.join(sid, "c4", "Dee Fox")
        after_end = await api.invite(sid, "c5", "Eve Moss")
        assert (await therapist.call("end"))["ok"]
        await late.ended.wait()
        with pytest.raises(JoinRefused) as ended:
            await type(ann)(api.server.url, after_end["token"]).connect()
        assert ended.value.code == "conflict"
        assert ended.value.message.startswith(f"session {sid} ended at ")
        status, summary = await api.request("GET", f"/api/v1/sessions/{sid}")
        assert status == 200 and summary["ended"] is True
        status, refused = await api.request(
            "POST", f"/api/v1/sessions/{sid}/invites",
            json={"participant_id": "c6", "display_name": "Fay Lu", "role": "client"})
        assert status == 409 and refused["error"]["code"] == "conflict"
        message = refused["error"]["message"]
        assert message.startswith(f"session {sid} ended at ")
        assert "the therapist ended it" in message
    finally:
        await settle(therapist, ann, bob)


async def test_a_session_whose_end_has_passed_is_refused_at_creation(api: Api) -> None:
    """A stale schedule is refused with a readable reason, not accepted and then unusable."""
    past = {"title": "Last week's group", "kind": "group", "program": "IOP",
            "starts_at": iso(now() - timedelta(days=7)), "minutes": 90}
    status, refused = await api.request("POST", "/api/v1/sessions", json=past)
    assert status == 400 and refused["error"]["code"] == "invalid"
    assert "which has passed" in refused["error"]["message"]
    assert refused["error"]["message"].startswith("starts_at: this session would end at ")
    running = {**past, "starts_at": iso(now() - timedelta(minutes=80))}
    status, created = await api.request("POST", "/api/v1/sessions", json=running)
    assert status == 201, "a session still within its scheduled time is accepted"
    therapist = await api.join(created["id"], "t1", "Dr Kim Park", role="therapist")
    try:
        view = await therapist.wait_for(lambda s: s["you"]["status"] == "admitted")
        assert view["session"]["ended"] is False
        skew = datetime.fromisoformat(view["server_time"]) - now()
        assert abs(skew) < timedelta(minutes=1), "the server and the tests share one clock"
    finally:
        await settle(therapist)


async def test_therapist_messages_the_waiting_room(api: Api) -> None:
    sid = await api.create_session()
    therapist = await api.join(sid, "t1", "Dr Kim Park", role="therapist")
    ann = await api.join(sid, "c1", "Ann Lee")
    bob = await api.join(sid, "c2", "Bob Stone")
    try:
        await therapist.wait_for(lambda s: len(s["waiting"]) == 2)
        ack = await therapist.call("waiting_message", {"text": "Starting in five minutes"})
        assert ack == {"ok": True}
        for c in (ann, bob):
            assert (await c.wait_notice("message"))["text"] == "Starting in five minutes"
        ack = await therapist.call("waiting_message", {"text": "Ann, one moment",
                                                       "participant_id": "c1"})
        assert ack["ok"]
        await ann.wait_until(lambda: len(ann.notices) == 2)
        assert [n["text"] for n in bob.notices] == ["Starting in five minutes"]
        refused = await ann.call("waiting_message", {"text": "hello?"})
        assert refused["error"]["code"] == "forbidden"
    finally:
        await settle(therapist, ann, bob)


async def test_simultaneous_arrivals_never_see_themselves_as_left(api: Api) -> None:
    """A view pushed while someone's own arrival is still queued must not say "left"."""
    sid = await api.create_session()
    invites = [await api.invite(sid, f"c{i}", f"Client {i}") for i in range(8)]
    clients = [CircleClient(api.server.url, inv["token"]) for inv in invites]
    seen: dict[int, list[str]] = {i: [] for i in range(len(clients))}
    for i, client in enumerate(clients):
        client.on_state.append(lambda state, i=i: seen[i].append(state["you"]["status"]))
    try:
        await asyncio.gather(*(client.connect() for client in clients))
        for client in clients:
            await client.wait_for(lambda s: s["you"]["status"] == "waiting")
        assert all(statuses and set(statuses) == {"waiting"} for statuses in seen.values()), seen
    finally:
        await settle(*clients)


async def test_individual_session(api: Api) -> None:
    sid = await api.create_session(kind="individual", title="Weekly check-in", program="OP")
    therapist = await api.join(sid, "t1", "Dr Kim Park", role="therapist")
    client = await api.join(sid, "c1", "Ann Lee")
    try:
        await therapist.wait_for(lambda s: len(s["waiting"]) == 1)
        await therapist.call("admit", {"participant_id": "c1"})
        view = await client.wait_for(lambda s: s["you"]["status"] == "admitted")
        assert view["session"]["kind"] == "individual" and len(view["participants"]) == 2
    finally:
        await settle(therapist, client)


def counter(text: str, line_start: str) -> float:
    """A sample's value from Prometheus text (0 when the series does not exist yet)."""
    for line in text.splitlines():
        if line.startswith(line_start + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_health_and_metrics(api: Api) -> None:
    lock_ok = 'circle_socket_events_total{event="lock",outcome="ok"}'
    unknown = 'circle_socket_events_total{event="unknown",outcome="invalid"}'
    _, before = await api.request("GET", "/metrics", headers={})
    sid = await api.create_session()
    therapist = await api.join(sid, "t1", "Dr Kim Park", role="therapist")
    try:
        await therapist.wait_for(lambda s: s["you"]["status"] == "admitted")
        await therapist.call("lock", {"locked": True})
        await therapist.call("nonsense")
        status, health = await api.request("GET", "/healthz", headers={})
        assert status == 200 and health["ok"] is True and health["sessions_live"] >= 1
        status, after = await api.request("GET", "/metrics", headers={})
        assert status == 200
        assert counter(after, lock_ok) == counter(before, lock_ok) + 1
        assert counter(after, unknown) == counter(before, unknown) + 1
        assert counter(after, "circle_connections") >= 1
        assert "Kim" not in after and "t1" not in after, "metrics carry no ids or names"
    finally:
        await settle(therapist)


async def test_server_log_carries_no_phi(api: Api) -> None:
    sid = await api.create_session(title="Opioid recovery group")
    therapist = await api.join(sid, "mrn-t-770001", "Dr Quillon Ashgrove", role="therapist")
    client = await api.join(sid, "mrn-c-550123", "Zephyrine Okonkwo-Blatt")
    outsider = await api.join(sid, "mrn-c-550999", "Marisol Quenby")
    try:
        await therapist.wait_for(lambda s: len(s["waiting"]) == 2)
        await therapist.call("admit", {"participant_id": "mrn-c-550123"})
        await therapist.call("deny", {"participant_id": "mrn-c-550999",
                                      "reason": "relapse disclosed privately"})
        await client.wait_for(lambda s: s["you"]["status"] == "admitted")
        await client.call("chat", {"text": "my sponsor said I should come"})
        await client.call("mute", {"participant_id": "mrn-t-770001", "kind": "audio",
                                   "muted": True})
        await client.call("Zephyrine-secret-event", {"name": "Zephyrine"})
        await therapist.call("remove", {"participant_id": "mrn-c-550123"})
        with pytest.raises(JoinRefused):
            await type(client)(api.server.url, client._token).connect()
    finally:
        await settle(therapist, client, outsider)
    log = api.server.log_text()
    assert "refused" in log, "the log does record what happened"
    for secret in ["mrn-t-770001", "mrn-c-550123", "mrn-c-550999", "Quillon", "Ashgrove",
                   "Zephyrine", "Okonkwo", "Quenby", "relapse", "sponsor", "Opioid"]:
        assert secret not in log, f"{secret!r} leaked into the server log"
