"""Services, family members, co-therapists and check-in on a real server: the HTTP session
and invites (with the scope clinician invites need), python-socketio clients checking in,
`checkin_required` refusing an admission, and the CSV/JSON export columns it all feeds."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import sys
from typing import Any

import pytest

from client.participant import CircleClient

from .server_fixtures import Api, CircleServer, api, server, settle  # noqa: F401

pytestmark = pytest.mark.integration

CONTRACT_COLUMNS = [
    "session_id", "service_date", "program", "kind", "participant_id", "display_name", "role",
    "time_in", "time_out", "minutes_present", "minutes_waiting", "disconnects", "modality",
    "breakout_rooms", "breakout_roles", "status"]
"""The v1 contract's columns, in its order."""
BILLING_COLUMNS = ["service", "billable", "place_of_service", "patient_region",
                   "telehealth_consent"]
"""Appended by issue 13 (after the contract's; other appended columns may follow)."""


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def scoped_key(server: CircleServer, *scopes: str) -> str:  # noqa: F811
    args = [arg for scope in scopes for arg in ("--scope", scope)]
    return server.cli("keys", "create", *args, "--name", "check-in tests",
                      check=True).stdout.strip()


async def invite(api: Api, sid: str, pid: str, name: str, role: str,  # noqa: F811
                 key: str | None = None) -> tuple[int, Any]:
    body = {"participant_id": pid, "display_name": name, "role": role}
    headers = bearer(key) if key else api.headers
    return await api.request("POST", f"/api/v1/sessions/{sid}/invites", json=body,
                             headers=headers)


async def joined(api: Api, token: str) -> CircleClient:  # noqa: F811
    client = CircleClient(api.server.url, token)
    await client.connect()
    return client


def waiting_ids(state: dict[str, Any]) -> list[str]:
    return [w["id"] for w in state.get("waiting", [])]


async def test_service_roles_check_in_and_the_exported_columns(
    api: Api, server: CircleServer  # noqa: F811
) -> None:
    sid = await api.create_session(kind="family", service="psychoeducation",
                                   checkin_required=True)
    status, summary = await api.request("GET", f"/api/v1/sessions/{sid}")
    assert (status, summary["service"], summary["checkin_required"]) == (
        200, "psychoeducation", True)

    # A schedule key invites clients and family members; clinicians need therapist-invites.
    schedule = scoped_key(server, "schedule")
    clinician_key = scoped_key(server, "therapist-invites")
    status, refused = await invite(api, sid, "t2", "Dr Sam Roe", "co_therapist", schedule)
    assert (status, refused["error"]["message"]) == (
        403, "this API key lacks the 'therapist-invites' scope")
    status, family_invite = await invite(api, sid, "f1", "Rosa Lee", "family", schedule)
    assert (status, family_invite["role"]) == (201, "family")
    status, co_invite = await invite(api, sid, "t2", "Dr Sam Roe", "co_therapist",
                                     clinician_key)
    assert (status, co_invite["role"]) == (201, "co_therapist")
    status, _ = await invite(api, sid, "x1", "Ann Other", "supervisor", clinician_key)
    assert status == 400, "an unknown role is refused"

    therapist = await api.join(sid, "t1", "Dr Kim Park", role="therapist")
    co = await joined(api, co_invite["token"])
    client = await api.join(sid, "c1", "Ann Lee")
    family = await joined(api, family_invite["token"])
    try:
        assert (await co.wait_for(lambda s: s["you"]["status"] == "admitted"))["you"]["role"] \
            == "co_therapist", "a co-therapist is admitted at once"
        seen = await co.wait_for(lambda s: waiting_ids(s) == ["c1", "f1"])
        assert [w["checkin"] for w in seen["waiting"]] == [None, None]
        assert seen["session"]["service"] == "psychoeducation"

        # Nobody has checked in: admit is refused with a reason the clinician can read.
        ack = await co.call("admit", {"participant_id": "c1"})
        assert ack == {"ok": False, "error": {
            "code": "conflict", "message": "Ann Lee has not checked in yet (location and consent)"}}
        ack = await co.call("admit_all")
        assert ack["ok"] and (ack["admitted"], ack["left_waiting"]) == (0, 2), ack

        # A family member cannot run a therapist's command.
        ack = await family.call("admit", {"participant_id": "c1"})
        assert ack["error"]["code"] == "forbidden"

        ack = await client.call("checkin", {"location": "home", "region": "CA",
                                            "consent": True})
        assert ack == {"ok": True}
        ack = await client.call("checkin", {"location": "home", "region": "california",
                                            "consent": True})
        assert ack["error"]["code"] == "invalid" and "region" in ack["error"]["message"]
        mine = await client.wait_for(lambda s: s["you"].get("checkin") is not None)
        assert (mine["you"]["checkin"]["location"], mine["you"]["checkin"]["region"]) == (
            "home", "CA")
        seen = await therapist.wait_for(
            lambda s: [bool(w["checkin"]) for w in s["waiting"]] == [True, False])
        assert seen["waiting"][0]["checkin"]["consent"] is True

        ack = await co.call("admit_all")
        assert (ack["admitted"], ack["left_waiting"]) == (1, 1), ack
        assert ack["message"] == "Admitted 1; 1 still waiting: has not checked in yet"
        await client.wait_for(lambda s: s["you"]["status"] == "admitted")

        ack = await family.call("checkin", {"location": "other", "region": "US-NV",
                                            "consent": True})
        assert ack["ok"], ack
        await co.wait_for(lambda s: bool(s["waiting"]) and s["waiting"][0]["checkin"])
        assert (await co.call("admit", {"participant_id": "f1"}))["ok"]
        in_session = await family.wait_for(lambda s: s["you"]["status"] == "admitted")
        assert {p["id"] for p in in_session["participants"]} == {
            p["handle"] for p in in_session["participants"]}, "family members see handles"
        assert all("checkin" not in p for p in in_session["participants"])
        other = next(p["id"] for p in in_session["participants"]
                     if p["handle"] != in_session["you"]["handle"])
        ack = await family.call("mute", {"participant_id": other, "kind": "audio",
                                         "muted": True})
        assert ack["error"] == {"code": "forbidden", "message": "therapists only"}

        # Admitted, the client checks in again: it moved. Then it leaves; the session ends.
        ack = await client.call("checkin", {"location": "other", "region": "NV",
                                            "consent": True})
        assert ack["ok"], ack
        people = await therapist.wait_for(lambda s: any(
            p["id"] == "c1" and (p.get("checkin") or {}).get("region") == "NV"
            for p in s["participants"]))
        assert next(p for p in people["participants"] if p["id"] == "t2").get("checkin") is None
        assert (await client.call("leave"))["ok"]
        assert (await therapist.call("end"))["ok"]
        await therapist.ended.wait()
    finally:
        await settle(therapist, co, client, family)

    status, body = await api.request("GET", f"/api/v1/attendance?session={sid}&format=csv")
    assert status == 200, body
    text = body if isinstance(body, str) else json.dumps(body)
    header = text.splitlines()[0].split(",")
    assert header[:len(CONTRACT_COLUMNS)] == CONTRACT_COLUMNS, "nothing renamed or moved"
    appended = header[len(CONTRACT_COLUMNS):]
    assert [c for c in appended if c in BILLING_COLUMNS] == BILLING_COLUMNS
    rows = {r["participant_id"]: r for r in csv.DictReader(io.StringIO(text))}
    got = {pid: [rows[pid][c] for c in BILLING_COLUMNS] for pid in rows}
    assert got == {
        "t1": ["psychoeducation", "false", "", "", ""],
        "t2": ["psychoeducation", "false", "", "", ""],
        "c1": ["psychoeducation", "true", "02", "NV", "true"],
        "f1": ["psychoeducation", "false", "02", "US-NV", "true"],
    }
    assert [rows[p]["role"] for p in ("t1", "t2", "c1", "f1")] == [
        "therapist", "co_therapist", "client", "family"]

    status, body = await api.request("GET", f"/api/v1/attendance?session={sid}&format=json")
    assert status == 200, body
    as_json = {r["participant_id"]: r for r in body["rows"]}
    assert [list(r) for r in body["rows"]] == [header] * 4, "JSON keys are the CSV's columns"
    assert {p: (r["billable"], r["telehealth_consent"], r["place_of_service"])
            for p, r in as_json.items()} == {
        "t1": (False, None, ""), "t2": (False, None, ""),
        "c1": (True, True, "02"), "f1": (False, True, "02")}

    log = server.log_text()
    assert "event admit refused: conflict" in log, "the refusal is logged, by its code only"
    for name in ("Ann Lee", "Rosa Lee", "Dr Sam Roe"):
        assert name not in log, "no names in the server's log"


async def test_a_session_without_a_service_takes_its_kinds_and_admits_without_check_in(
    api: Api,  # noqa: F811
) -> None:
    sid = await api.create_session(kind="individual")
    _, summary = await api.request("GET", f"/api/v1/sessions/{sid}")
    assert (summary["service"], summary["checkin_required"]) == (
        "individual_psychotherapy", False)
    status, refused = await api.request("POST", "/api/v1/sessions", json={
        "title": "x", "kind": "group", "program": "IOP", "starts_at": summary["starts_at"],
        "minutes": 60, "service": "yoga"})
    assert status == 400 and "service" in refused["error"]["message"]
    therapist = await api.join(sid, "t1", "Dr Kim Park", role="therapist")
    client = await api.join(sid, "c1", "Ann Lee")
    try:
        await therapist.wait_for(lambda s: waiting_ids(s) == ["c1"])
        ack = await therapist.call("admit_all")
        assert (ack["ok"], ack["admitted"], ack["left_waiting"]) == (True, 1, 0)
        await client.wait_for(lambda s: s["you"]["status"] == "admitted")
        assert (await therapist.call("checkin", {"location": "home", "region": "CA",
                                                 "consent": True}))["error"]["code"] \
            == "forbidden", "clinicians do not check in"
    finally:
        await settle(therapist, client)


async def test_the_command_line_client_checks_in(api: Api) -> None:  # noqa: F811
    sid = await api.create_session(checkin_required=True)
    therapist = await api.join(sid, "t1", "Dr Kim Park", role="therapist")
    invite_ = await api.invite(sid, "c1", "Ann Lee")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "client", "--token", invite_["token"], "--url", api.server.url,
        "--no-media", "--check-in", "other:us-nv",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        seen = await therapist.wait_for(
            lambda s: bool(s["waiting"]) and s["waiting"][0]["checkin"] is not None, timeout=20)
        checkin = seen["waiting"][0]["checkin"]
        assert (checkin["location"], checkin["region"], checkin["consent"]) == (
            "other", "US-NV", True)
        assert (await therapist.call("admit", {"participant_id": "c1"}))["ok"]
        assert process.stdout is not None
        printed = ""
        while " admitted" not in printed:  # the client's own account of being let in
            line = await asyncio.wait_for(process.stdout.readline(), timeout=20)
            assert line, "the client ended before it was admitted"
            printed = line.decode()
        process.terminate()
        _, err = await asyncio.wait_for(process.communicate(), timeout=30)
    finally:
        if process.returncode is None:
            process.kill()
        await settle(therapist)
    assert "refused" not in err.decode(), err.decode()
