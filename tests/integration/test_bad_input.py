"""Bad input over Socket.IO and HTTP: a structured error, nothing changed, nothing crashes."""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import timedelta

import pytest

from client.participant import CircleClient, JoinRefused
from server.auth.tokens import JoinTokenService
from server.crypto.keyring import KeyRing

from .clock import now
from .server_fixtures import Api, settle

pytestmark = pytest.mark.integration


async def test_every_bad_event_gets_a_structured_error_and_changes_nothing(
    api: Api,
) -> None:
    sid = await api.create_session()
    therapist = await api.join(sid, "t1", "Dr Kim Park", role="therapist")
    ann = await api.join(sid, "c1", "Ann Lee")
    other_sid = await api.create_session(title="Other group")
    outsider = await api.join(other_sid, "c9", "Zed Quinn")
    try:
        await therapist.wait_for(lambda s: len(s["waiting"]) == 1)
        await therapist.call("admit", {"participant_id": "c1"})
        view = await ann.wait_for(lambda s: s["you"]["status"] == "admitted")
        rev = therapist.state["rev"]  # type: ignore[index]
        cases = [
            (therapist, "no_such_event", {}, "invalid"),
            (therapist, "admit", {}, "invalid"),
            (therapist, "admit", {"participant_id": 42}, "invalid"),
            (therapist, "admit", {"participant_id": "c1", "extra": True}, "invalid"),
            (therapist, "admit", "not an object", "invalid"),
            (therapist, "mute", {"participant_id": "c1", "kind": "smell", "muted": True},
             "invalid"),
            (therapist, "lock", {"locked": "yes"}, "invalid"),
            (therapist, "admit", {"participant_id": "c9"}, "not_found"),
            (therapist, "remove", {"participant_id": "c9"}, "not_found"),
            (therapist, "chat", {"text": "x" * 70_000}, "invalid"),
            (therapist, "chat", {"text": ""}, "invalid"),
            (ann, "admit_all", {}, "forbidden"),
            (ann, "mute", {"participant_id": "t1", "kind": "audio", "muted": True},
             "forbidden"),
            (ann, "remove", {"participant_id": "t1"}, "forbidden"),
            (ann, "end", {}, "forbidden"),
            (outsider, "admit", {"participant_id": "c1"}, "forbidden"),
            (outsider, "chat", {"text": "hi"}, "forbidden"),
        ]
        for who, event, data, code in cases:
            ack = await who.call(event, data)
            assert ack["ok"] is False, (event, data)
            assert ack["error"]["code"] == code, (event, data, ack)
            assert ack["error"]["message"]
        assert therapist.state["rev"] == rev, "a refused event must change nothing"
        assert (await therapist.call("hand", {"raised": True}))["ok"], "still working"
        assert ann.state is not None and ann.state["you"] == view["you"]
    finally:
        await settle(therapist, ann, outsider)


async def test_flood_is_rate_limited_and_the_connection_survives(api: Api) -> None:
    sid = await api.create_session()
    therapist = await api.join(sid, "t1", "Dr Kim Park", role="therapist")
    try:
        await therapist.wait_for(lambda s: s["you"]["status"] == "admitted")
        acks = await asyncio.gather(*(therapist.call("hand", {"raised": i % 2 == 0})
                                      for i in range(120)))
        codes = {a["error"]["code"] for a in acks if not a["ok"]}
        assert codes == {"rate_limited"}
        assert sum(a["ok"] for a in acks) >= 20
        await asyncio.sleep(1.0)  # the bucket refills over time: that is the behaviour
        assert (await therapist.call("hand", {"raised": False}))["ok"]
    finally:
        await settle(therapist)


async def test_a_connection_that_keeps_flooding_is_closed_and_others_stay_quick(
    api: Api,
) -> None:
    flooder_sid, quiet_sid = await api.create_session(), await api.create_session()
    flooder = await api.join(flooder_sid, "t1", "Dr Kim Park", role="therapist")
    quiet = await api.join(quiet_sid, "t2", "Dr Lee Chan", role="therapist")
    try:
        await quiet.wait_for(lambda s: s["you"]["status"] == "admitted")
        lost = asyncio.Event()
        flooder.on_link.append(lambda what, detail: lost.set() if what == "lost" else None)
        latencies: list[float] = []

        async def flood() -> None:
            with contextlib.suppress(Exception):  # the socket goes away mid-flood
                await asyncio.gather(*(flooder.call("hand", {"raised": i % 2 == 0}, timeout=5)
                                       for i in range(600)))

        async def measure() -> None:
            for i in range(20):
                started = time.monotonic()
                assert (await quiet.call("hand", {"raised": i % 2 == 0}))["ok"]
                latencies.append(time.monotonic() - started)

        await asyncio.gather(flood(), measure())
        await asyncio.wait_for(lost.wait(), 5)
        assert "kept flooding after rate_limited" in api.server.log_text()
        assert sorted(latencies)[int(0.99 * (len(latencies) - 1))] < 0.2, latencies
    finally:
        await settle(flooder, quiet)


async def test_bad_tokens_are_refused_at_connect_with_a_reason(api: Api) -> None:
    sid = await api.create_session()
    for token in ["", "not-a-jwt", "a.b.c"]:
        with pytest.raises(JoinRefused) as refused:
            await CircleClient(api.server.url, token).connect()
        assert refused.value.code in ("invalid", "forbidden") and refused.value.message

    keyring = KeyRing.load_or_create(api.server.data_dir / "keys.json")
    tokens = JoinTokenService(keyring.token_private_key, keyring.token_public_key, clock=now)
    expired = tokens.issue(session_id=sid, participant_id="c1", name="Ann", role="client",
                           ttl_s=60, now=now() - timedelta(hours=2))
    with pytest.raises(JoinRefused) as late:
        await CircleClient(api.server.url, expired.token).connect()
    assert late.value.code == "forbidden" and "expired" in late.value.message

    forged = KeyRing.load_or_create(api.server.data_dir.parent / "other-keys.json")
    other = JoinTokenService(forged.token_private_key, forged.token_public_key, clock=now)
    fake = other.issue(session_id=sid, participant_id="t9", name="Mallory", role="therapist",
                       ttl_s=600)
    with pytest.raises(JoinRefused) as bad_signature:
        await CircleClient(api.server.url, fake.token).connect()
    assert bad_signature.value.code == "forbidden"

    unknown = tokens.issue(session_id="s_nope", participant_id="c1", name="Ann",
                           role="client", ttl_s=600)
    with pytest.raises(JoinRefused) as missing:
        await CircleClient(api.server.url, unknown.token).connect()
    assert missing.value.code == "not_found"


async def test_revoked_invite_is_refused(api: Api) -> None:
    sid = await api.create_session()
    invite = await api.invite(sid, "c1", "Ann Lee")
    status, _ = await api.request(
        "DELETE", f"/api/v1/sessions/{sid}/invites/{invite['token_id']}"
    )
    assert status == 200
    with pytest.raises(JoinRefused) as revoked:
        await CircleClient(api.server.url, invite["token"]).connect()
    assert revoked.value.code == "forbidden" and "revoked" in revoked.value.message


async def test_revoking_a_connected_holders_invite_disconnects_it(api: Api) -> None:
    """A leaked link stops working for whoever holds it now: within 2 s, and afterwards."""
    sid = await api.create_session()
    therapist = await api.join(sid, "t1", "Dr Kim Park", role="therapist")
    invite = await api.invite(sid, "c1", "Ann Lee")
    holder = CircleClient(api.server.url, invite["token"])
    await holder.connect()
    try:
        await therapist.wait_for(lambda s: len(s["waiting"]) == 1)
        started = time.monotonic()
        status, body = await api.request(
            "DELETE", f"/api/v1/sessions/{sid}/invites/{invite['token_id']}")
        assert (status, body) == (200, {"revoked": True})
        await holder.wait_until(lambda: not holder.connected, timeout=2)
        assert time.monotonic() - started < 2
        await therapist.wait_for(lambda s: s["waiting"] == [])
        with pytest.raises(JoinRefused) as again:
            await CircleClient(api.server.url, invite["token"]).connect()
        assert again.value.code == "forbidden"
        other = await api.create_session()
        status, body = await api.request(
            "DELETE", f"/api/v1/sessions/{other}/invites/{invite['token_id']}")
        assert status == 404 and body["error"]["code"] == "not_found", "another session's id"
        status, _ = await api.request("DELETE", f"/api/v1/sessions/{sid}/invites/never-issued")
        assert status == 404
    finally:
        await settle(holder, therapist)


async def test_http_errors_are_structured(api: Api) -> None:
    cases = [
        ("POST", "/api/v1/sessions", {"headers": {}}, 401, "unauthorized"),
        ("POST", "/api/v1/sessions", {"headers": {"Authorization": "Bearer ck_x_y"}}, 401,
         "unauthorized"),
        ("POST", "/api/v1/sessions", {"data": "{not json"}, 400, "invalid"),
        ("POST", "/api/v1/sessions", {"json": {"title": "x"}}, 400, "invalid"),
        ("POST", "/api/v1/sessions", {"json": {"title": "x", "kind": "group", "program": "IOP",
                                               "starts_at": now().strftime("%Y-%m-%dT%H:%M:%S"),
                                               "minutes": 60}}, 400, "invalid"),
        ("POST", "/api/v1/sessions", {"data": "x" * 100_000}, 413, "invalid"),
        ("GET", "/api/v1/sessions/s_unknown", {}, 404, "not_found"),
        ("POST", "/api/v1/sessions/s_unknown/invites",
         {"json": {"participant_id": "c1", "display_name": "A", "role": "client"}}, 404,
         "not_found"),
        ("GET", "/api/v1/attendance?from=2026-13-01&to=2026-11-02", {}, 400, "invalid"),
        ("GET", "/api/v1/attendance?from=2026-11-03&to=2026-11-02", {}, 400, "invalid"),
        ("GET", "/api/v1/attendance?to=2026-11-02", {}, 400, "invalid"),
        ("GET", "/api/v1/attendance?from=2026-11-01&to=2026-11-02&format=xml", {}, 400,
         "invalid"),
        ("GET", "/api/v1/nothing-here", {}, 404, "not_found"),
    ]
    for method, path, kw, status, code in cases:
        got, body = await api.request(method, path, **kw)
        assert (got, body["error"]["code"]) == (status, code), (method, path, body)
    sid = await api.create_session()
    got, body = await api.request(
        "POST", f"/api/v1/sessions/{sid}/invites",
        json={"participant_id": "bad id with spaces", "display_name": "A", "role": "client"},
    )
    assert got == 400 and body["error"]["code"] == "invalid"
    got, health = await api.request("GET", "/healthz", headers={})
    assert got == 200 and health["ok"] is True
