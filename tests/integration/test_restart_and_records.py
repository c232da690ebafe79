"""Reconnection, a SIGKILL restart rebuilt from the ledger, attendance exports and verify."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from pathlib import Path

import aiohttp
import pytest

from client.participant import CircleClient

from .server_fixtures import GRACE_S, Api, CircleServer, settle

pytestmark = pytest.mark.integration


async def test_short_drop_returns_to_the_same_room_without_a_new_admit(
    api: Api,
) -> None:
    sid = await api.create_session()
    therapist = await api.join(sid, "t1", "Dr Kim Park", role="therapist")
    ann = await api.join(sid, "c1", "Ann Lee")
    try:
        await therapist.wait_for(lambda s: len(s["waiting"]) == 1)
        await therapist.call("admit", {"participant_id": "c1"})
        await ann.wait_for(lambda s: s["you"]["status"] == "admitted")
        await ann.drop()
        await therapist.wait_for(
            lambda s: any(p["id"] == "c1" and not p["connected"] for p in s["participants"])
        )
        await ann.rejoin()
        back = await ann.wait_for(lambda s: s["you"]["status"] == "admitted")
        assert back["you"]["room"] == "main"
        await therapist.wait_for(
            lambda s: any(p["id"] == "c1" and p["connected"] for p in s["participants"])
        )
        assert therapist.state is not None and therapist.state["waiting"] == []
    finally:
        await settle(therapist, ann)


async def test_drop_longer_than_grace_is_a_new_arrival(api: Api) -> None:
    sid = await api.create_session()
    therapist = await api.join(sid, "t1", "Dr Kim Park", role="therapist")
    ann = await api.join(sid, "c1", "Ann Lee")
    try:
        await therapist.wait_for(lambda s: len(s["waiting"]) == 1)
        await therapist.call("admit", {"participant_id": "c1"})
        await ann.wait_for(lambda s: s["you"]["status"] == "admitted")
        await ann.drop()
        # The server's grace timer fires after GRACE_S: wait for its effect, not a delay.
        await therapist.wait_for(lambda s: all(p["id"] != "c1" for p in s["participants"]),
                                 timeout=GRACE_S + 5)
        await ann.rejoin()
        again = await ann.wait_for(lambda s: s["you"]["status"] == "waiting")
        assert again["you"]["room"] is None and again["participants"] == []
        view = await therapist.wait_for(lambda s: [w["id"] for w in s["waiting"]] == ["c1"])
        assert all(p["id"] != "c1" for p in view["participants"])
    finally:
        await settle(therapist, ann)


async def test_sigkill_restart_rebuilds_live_sessions_from_the_ledger(
    own_server: tuple[CircleServer, Api],
) -> None:
    srv, api = own_server
    sid = await api.create_session()
    therapist = await api.join(sid, "t1", "Dr Kim Park", role="therapist")
    ann = await api.join(sid, "c1", "Ann Lee")
    bob = await api.join(sid, "c2", "Bob Stone")
    tokens = {c: c._token for c in (therapist, ann, bob)}
    await therapist.wait_for(lambda s: len(s["waiting"]) == 2)
    await therapist.call("admit", {"participant_id": "c1"})
    await therapist.call("mute", {"participant_id": "c1", "kind": "video", "muted": True})
    await therapist.call("lock", {"locked": True})
    await ann.wait_for(lambda s: s["you"]["muted"]["video"])
    for c in (therapist, ann, bob):
        c.sio.reconnection = False

    srv.kill()
    for c in (therapist, ann, bob):
        await c.close()
    srv.start()

    t2 = CircleClient(srv.url, tokens[therapist])
    a2 = CircleClient(srv.url, tokens[ann])
    b2 = CircleClient(srv.url, tokens[bob])
    try:
        for c in (t2, a2, b2):
            await c.connect()
        a_view = await a2.wait_for(lambda s: s["you"]["status"] == "admitted")
        assert a_view["you"]["room"] == "main"
        assert a_view["you"]["muted"] == {"audio": False, "video": True}
        assert a_view["session"]["locked"] is True
        await b2.wait_for(lambda s: s["you"]["status"] == "waiting")
        t_view = await t2.wait_for(lambda s: s["you"]["status"] == "admitted")
        assert [w["id"] for w in t_view["waiting"]] == ["c2"]
        status, summary = await api.request("GET", f"/api/v1/sessions/{sid}")
        assert status == 200 and summary["counts"]["admitted"] == 2
    finally:
        await settle(t2, a2, b2)
    assert "recovered 1 live session" in srv.log_text()


async def test_attendance_export_over_http_and_cli_is_audited(
    own_server: tuple[CircleServer, Api],
) -> None:
    srv, api = own_server
    sid = await api.create_session()
    day = api.service_date(sid)
    await api.invite(sid, "c3", "Cal Diaz")
    therapist = await api.join(sid, "t1", "Dr Kim Park", role="therapist")
    ann = await api.join(sid, "c1", "Ann Lee")
    bob = await api.join(sid, "c2", "Bob Stone")
    await therapist.wait_for(lambda s: len(s["waiting"]) == 2)
    await therapist.call("admit", {"participant_id": "c1"})
    await therapist.call("deny", {"participant_id": "c2", "reason": "wrong group"})
    await ann.call("leave")
    await therapist.call("end")
    await settle(therapist, ann, bob)

    status, body = await api.request(
        "GET", api.attendance_query(sid, session=sid, format="csv")
    )
    assert status == 200
    rows = {r["participant_id"]: r for r in csv.DictReader(io.StringIO(body))}
    assert set(rows) == {"t1", "c1", "c2", "c3"}
    assert next(csv.reader(io.StringIO(body)))[:4] == [
        "session_id", "service_date", "program", "kind"
    ]
    assert rows["c2"]["status"] == "denied" and rows["c3"]["status"] == "no_show"
    assert rows["c1"]["time_in"] and rows["c1"]["time_out"]
    assert float(rows["c1"]["minutes_waiting"]) >= 0
    assert rows["c1"]["minutes_present"].count(".") == 1
    assert len(rows["c1"]["minutes_present"].split(".")[1]) == 2

    status, one = await api.request(
        "GET", api.attendance_query(sid, participant="c1", format="json")
    )
    assert status == 200 and [r["participant_id"] for r in one["rows"]] == ["c1"]
    assert "42 CFR part 2" in one["notice"]

    out = srv.data_dir.parent / "export.json"
    done = srv.cli("export", "--from", day, "--to", day, "--session", sid,
                   "--format", "json", "--out", str(out), check=True)
    assert "exported 4 row(s)" in done.stderr and "NOTICE" in done.stderr
    assert len(json.loads(out.read_text())["rows"]) == 4

    verified = srv.cli("verify")
    assert verified.returncode == 0, verified.stderr
    assert "ledger OK" in verified.stdout

    db = sqlite3.connect(srv.data_dir / "circle.db")
    audits = db.execute("SELECT count(*) FROM ledger_records WHERE stream = 'audit'").fetchone()
    assert audits[0] == 4, "the key's creation and each export (2 over HTTP, 1 by CLI)"
    db.execute("UPDATE ledger_records SET ciphertext = zeroblob(length(ciphertext)) "
               "WHERE stream = ? AND seq = 3", (sid,))
    db.commit()
    db.close()
    tampered = srv.cli("verify")
    assert tampered.returncode == 1
    assert f"stream {sid} record 3" in tampered.stderr


async def test_clients_get_the_clinics_ice_servers_first(tmp_path: Path) -> None:
    """Every connection's first message names the ICE servers its media must use."""
    turn = [{"urls": ["turn:turn.clinic.invalid:3478"], "username": "u", "credential": "p"}]
    srv = CircleServer(tmp_path / "data", env={"CIRCLE_MEDIA": "false",
                                               "CIRCLE_ICE_SERVERS": json.dumps(turn)})
    srv.api_key = srv.create_key()
    srv.start()
    try:
        async with aiohttp.ClientSession() as http:
            api = Api(srv, http)
            sid = await api.create_session()
            client = await api.join(sid, "c1", "Ann Lee")
            try:
                await client.wait_for(lambda s: s["you"]["status"] == "waiting")
                assert client.config == {"ice_servers": turn, "nodes": [srv.url]}, (
                    "its ICE servers, and the clinic's nodes (here only this one)")
            finally:
                await settle(client)
    finally:
        srv.stop()


async def test_a_second_server_cannot_take_a_busy_data_dir_or_port(
    own_server: tuple[CircleServer, Api], tmp_path: Path
) -> None:
    """A second `circle serve` must refuse before start-up touches the live sessions."""
    srv, api = own_server
    sid = await api.create_session()
    therapist = await api.join(sid, "t1", "Dr Kim Park", role="therapist")
    try:
        await therapist.wait_for(lambda s: s["you"]["status"] == "admitted")
        db = sqlite3.connect(srv.data_dir / "circle.db")
        count = "SELECT count(*) FROM ledger_records WHERE stream = ?"
        before = db.execute(count, (sid,)).fetchone()[0]
        same_dir = srv.cli("serve", "--port", "0", timeout=30)
        assert same_dir.returncode == 1
        assert "another circle serve is already using" in same_dir.stderr
        other = CircleServer(tmp_path / "other", port=srv.port)
        same_port = other.cli("serve", "--port", str(srv.port), timeout=30)
        assert same_port.returncode == 1
        assert f"cannot listen on 127.0.0.1:{srv.port}" in same_port.stderr
        assert db.execute(count, (sid,)).fetchone()[0] == before, "the live session untouched"
        db.close()
        assert (await therapist.call("hand", {"raised": True}))["ok"]
    finally:
        await settle(therapist)


async def test_api_keys_are_listed_and_revoked_at_once_and_audited(
    own_server: tuple[CircleServer, Api],
) -> None:
    srv, api = own_server
    second = srv.create_key(name="scheduler")
    key_id = second.split("_")[1]
    headers = {"Authorization": f"Bearer {second}"}
    status, _ = await api.request("GET", "/api/v1/sessions/s_none", headers=headers)
    assert status == 404, "the new key works"
    listed = srv.cli("keys", "list", check=True).stdout
    assert f"{key_id}\tstaff\tscheduler" in listed and second not in listed
    done = srv.cli("keys", "revoke", key_id)
    assert done.returncode == 0 and f"revoked {key_id}" in done.stdout
    status, body = await api.request("GET", "/api/v1/sessions/s_none", headers=headers)
    assert (status, body["error"]["code"]) == (401, "unauthorized"), "revoked at once"
    again = srv.cli("keys", "revoke", key_id)
    assert again.returncode == 1 and "no active API key" in again.stderr
    status, _ = await api.request("GET", "/api/v1/sessions/s_none")
    assert status == 404, "the other key still works"
    db = sqlite3.connect(srv.data_dir / "circle.db")
    audits = db.execute("SELECT count(*) FROM ledger_records WHERE stream = 'audit'").fetchone()
    db.close()
    assert audits[0] == 3, "two keys created and one revoked are audit events"
    verified = srv.cli("verify")
    assert verified.returncode == 0, verified.stderr
