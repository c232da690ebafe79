"""Scoped API keys on a real server: each route's scope, roles as shorthands, key management
over HTTP, the audit naming the key, and keys from before scopes after the upgrade."""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import insert, inspect, select

from server.apikeys import ROLE_SCOPES, ApiKeys, Scope
from server.crypto.keyring import KeyRing
from server.ledger import AUDIT_STREAM, Ledger
from server.storage import migrate
from server.storage.database import Database, open_database
from server.storage.schema import API_KEYS_V1, MIGRATIONS, api_keys, schema_migrations

from .clock import iso, now
from .db_fixtures import *  # noqa: F403  (fixtures, found by pytest by name)
from .db_fixtures import DbTarget
from .server_fixtures import Api, CircleServer

SESSION = {"title": "Thursday IOP group", "kind": "group", "program": "IOP", "minutes": 90}
CLIENT_INVITE = {"participant_id": "c-scope", "display_name": "Ann Lee", "role": "client"}
THERAPIST_INVITE = {"participant_id": "t-scope", "display_name": "Dr Kim Park",
                    "role": "therapist"}
PLAN = {"auto": {"count": 2, "strategy": "balanced"}, "minutes": 15}
STAFF_SCOPES: tuple[Scope, ...] = ("schedule", "therapist-invites", "attendance")


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def key_id(secret: str) -> str:
    return secret.split("_")[1]


def as_key(api: Api, secret: str) -> Api:
    """The same server through another key."""
    other = Api(api.server, api.http)
    other.headers = bearer(secret)
    return other


def create_scoped(server: CircleServer, *scopes: str, name: str = "tests") -> str:
    args = [arg for scope in scopes for arg in ("--scope", scope)]
    return server.cli("keys", "create", *args, "--name", name, check=True).stdout.strip()


@pytest.fixture(scope="module")
def keys(server: CircleServer) -> dict[str, str]:
    """A key per scope, and per scope a key with every other scope but admin."""
    made: dict[str, str] = {s: create_scoped(server, s) for s in (*STAFF_SCOPES, "admin")}
    for scope in STAFF_SCOPES:
        made[f"all but {scope}"] = create_scoped(server, *(s for s in STAFF_SCOPES if s != scope))
    made["all but admin"] = server.create_key(role="staff")
    return made


@dataclass(frozen=True)
class Call:
    scope: Scope
    method: str
    path: str
    """With {sid}, {token} (a live client invite), {attendance} and {totals} (queries for
    the session's day) filled in per test."""
    body: dict[str, Any] | None
    ok: int


CALLS = [
    Call("schedule", "POST", "/api/v1/sessions", SESSION, 201),
    Call("schedule", "GET", "/api/v1/sessions/{sid}", None, 200),
    Call("schedule", "POST", "/api/v1/sessions/{sid}/invites", CLIENT_INVITE, 201),
    Call("therapist-invites", "POST", "/api/v1/sessions/{sid}/invites", THERAPIST_INVITE, 201),
    Call("schedule", "DELETE", "/api/v1/sessions/{sid}/invites/{token}", None, 200),
    Call("schedule", "PUT", "/api/v1/sessions/{sid}/breakout-plan", PLAN, 200),
    Call("attendance", "GET", "{attendance}", None, 200),
    Call("attendance", "GET", "/api/v1/attendance?session={sid}", None, 200),
    Call("attendance", "GET", "{totals}", None, 200),
    Call("attendance", "GET", "/api/v1/disclosures", None, 200),
    Call("admin", "GET", "/api/v1/nodes", None, 200),
    Call("admin", "GET", "/api/v1/keys", None, 200),
    Call("admin", "POST", "/api/v1/keys", {"name": "made in a test", "scopes": ["attendance"]},
         201),
    Call("admin", "DELETE", "/api/v1/keys/0123456789abcdef", None, 404),
]


async def attempt(api: Api, secret: str, call: Call) -> tuple[int, Any]:
    """`call` with `secret`, on a session of its own (so refusals and successes never meet)."""
    sid = await api.create_session()
    token = (await api.invite(sid, "c-revoke", "Rae Voke"))["token_id"]
    attendance = api.attendance_query(sid)
    totals = attendance.replace("/attendance?", "/attendance/totals?")
    path = call.path.format(sid=sid, token=token, attendance=attendance, totals=totals)
    body = call.body
    if body is not None and call.path == "/api/v1/sessions":
        body = {**body, "starts_at": iso(now() - timedelta(minutes=1))}
    return await api.request(call.method, path, json=body, headers=bearer(secret))


def forbidden(scope: str) -> dict[str, Any]:
    return {"error": {"code": "forbidden", "message": f"this API key lacks the '{scope}' scope"}}


@pytest.mark.parametrize("call", CALLS, ids=lambda c: f"{c.scope} {c.method} {c.path}")
async def test_each_route_needs_its_scope(api: Api, keys: dict[str, str], call: Call) -> None:
    assert await attempt(api, keys[f"all but {call.scope}"], call) == (403, forbidden(call.scope))
    status, body = await attempt(api, keys[call.scope], call)
    assert status == call.ok, body


async def test_an_admin_key_may_make_every_call(api: Api, keys: dict[str, str]) -> None:
    for call in CALLS:
        status, body = await attempt(api, keys["admin"], call)
        assert status == call.ok, (call, body)


async def test_therapist_invites_need_their_own_scope(api: Api, keys: dict[str, str]) -> None:
    sid = await api.create_session()
    path = f"/api/v1/sessions/{sid}/invites"
    schedule, clinicians = bearer(keys["schedule"]), bearer(keys["therapist-invites"])
    assert await api.request("POST", path, json=THERAPIST_INVITE, headers=schedule) == (
        403, forbidden("therapist-invites"))
    status, invite = await api.request("POST", path, json=CLIENT_INVITE, headers=schedule)
    assert (status, invite["role"]) == (201, "client")
    assert await api.request("POST", path, json=CLIENT_INVITE, headers=clinicians) == (
        403, forbidden("schedule"))
    status, invite = await api.request("POST", path, json=THERAPIST_INVITE, headers=clinicians)
    assert (status, invite["role"]) == (201, "therapist")
    _, summary = await api.request("GET", f"/api/v1/sessions/{sid}")
    assert summary["counts"]["invited"] == 2, "the refused invites recorded nothing"


async def test_scopes_are_checked_before_the_body_or_the_session(
    api: Api, keys: dict[str, str]
) -> None:
    attendance = bearer(keys["attendance"])
    assert await api.request("POST", "/api/v1/sessions", data=b"not json",
                             headers=attendance) == (403, forbidden("schedule"))
    assert await api.request("GET", "/api/v1/sessions/s_none", headers=attendance) == (
        403, forbidden("schedule")), "no probing for session ids"
    assert await api.request("POST", "/api/v1/sessions/s_none/invites", json={},
                             headers=attendance) == (403, forbidden("schedule"))


async def test_roles_stand_for_their_scopes_over_http(api: Api, keys: dict[str, str]) -> None:
    staff = as_key(api, keys["all but admin"])
    sid = await staff.create_session()
    await staff.invite(sid, "t1", "Dr Kim Park", role="therapist")
    status, _ = await staff.request("GET", staff.attendance_query(sid))
    assert status == 200
    assert await staff.request("GET", "/api/v1/nodes") == (403, forbidden("admin"))
    assert await staff.request("GET", "/api/v1/keys") == (403, forbidden("admin"))
    status, nodes = await api.request("GET", "/api/v1/nodes", headers=bearer(keys["admin"]))
    assert status == 200 and nodes["nodes"]


def test_keys_create_takes_a_role_or_scopes(server: CircleServer) -> None:
    for args in ((), ("--role", "staff", "--scope", "attendance")):
        wrong = server.cli("keys", "create", *args, "--name", "x")
        assert wrong.returncode == 2, wrong
        assert "exactly one of --role or --scope" in wrong.stderr
    unknown = server.cli("keys", "create", "--scope", "billing", "--name", "x")
    assert unknown.returncode == 2 and "'billing' is not one of" in unknown.stderr

    staff = server.create_key(role="staff", name="front desk")
    admin = server.create_key(role="admin", name="ops")
    made = server.cli("keys", "create", "--scope", "schedule", "--scope", "attendance",
                      "--name", "intake bot", check=True)
    custom = made.stdout.strip()
    assert "with scope(s) attendance, schedule;" in made.stderr

    listed = server.cli("keys", "list", check=True).stdout
    rows = {line.split("\t")[0]: line.split("\t") for line in listed.splitlines()}
    assert {len(row) for row in rows.values()} == {6}
    assert [rows[key_id(staff)][i] for i in (1, 2, 4, 5)] == [
        "staff", "front desk", "active", "attendance,schedule,therapist-invites"]
    assert [rows[key_id(admin)][i] for i in (1, 2, 4, 5)] == ["admin", "ops", "active", "admin"]
    assert [rows[key_id(custom)][i] for i in (1, 2, 4, 5)] == [
        "custom", "intake bot", "active", "attendance,schedule"]
    datetime.fromisoformat(rows[key_id(custom)][3])
    assert not any(secret.split("_", 2)[2] in listed for secret in (staff, admin, custom))


async def _records(server: CircleServer, stream: str) -> list[Mapping[str, Any]]:
    """A stream of the running server's ledger, read beside it."""
    keyring = KeyRing.load_or_create(server.data_dir / "keys.json")
    async with await open_database(f"sqlite+aiosqlite:///{server.data_dir / 'circle.db'}") as db:
        return await Ledger(db.ledger, keyring).load(stream)


async def test_admins_manage_keys_over_http_and_each_call_is_audited(
    api: Api, keys: dict[str, str], server: CircleServer
) -> None:
    admin_key = server.create_key(role="admin", name="key admin")  # its audit alone
    admin = as_key(api, admin_key)
    status, made = await admin.request("POST", "/api/v1/keys", json={
        "name": "billing export", "scopes": ["attendance", "attendance"]})
    assert status == 201, made
    secret = made.pop("secret")
    assert secret.startswith(f"ck_{made['id']}_")
    assert made == {"id": made["id"], "name": "billing export", "scopes": ["attendance"],
                    "created_at": made["created_at"], "revoked_at": None}
    billing = as_key(api, secret)
    sid = await api.create_session()
    status, _ = await billing.request("GET", api.attendance_query(sid))
    assert status == 200
    assert await billing.request("POST", "/api/v1/sessions/s_none/invites",
                                 json=CLIENT_INVITE) == (403, forbidden("schedule"))

    status, listed = await admin.request("GET", "/api/v1/keys")
    assert status == 200
    assert {tuple(sorted(k)) for k in listed["keys"]} == {
        ("created_at", "id", "name", "revoked_at", "scopes")}
    assert made in listed["keys"]
    assert secret.split("_", 2)[2] not in json.dumps(listed)
    cli_row = next(line for line in server.cli("keys", "list", check=True).stdout.splitlines()
                   if line.startswith(made["id"]))
    assert cli_row.split("\t")[1:3] == ["custom", "billing export"]

    assert await admin.request("DELETE", f"/api/v1/keys/{made['id']}") == (
        200, {"revoked": True})
    status, _ = await billing.request("GET", api.attendance_query(sid))
    assert status == 401, "revoked at once"
    for gone in (made["id"], "0123456789abcdef"):
        status, body = await admin.request("DELETE", f"/api/v1/keys/{gone}")
        assert (status, body["error"]["code"]) == (404, "not_found")
    _, listed = await admin.request("GET", "/api/v1/keys")
    assert next(k for k in listed["keys"] if k["id"] == made["id"])["revoked_at"]

    for bad in ({"name": "x", "scopes": ["billing"]}, {"name": "x", "scopes": []},
                {"name": " ", "scopes": ["schedule"]}, {"name": "x"},
                {"name": "x", "scopes": ["schedule"], "role": "admin"}):
        status, body = await admin.request("POST", "/api/v1/keys", json=bad)
        assert (status, body["error"]["code"]) == (400, "invalid"), bad
    status, wide = await admin.request("POST", "/api/v1/keys", json={
        "name": "ops 2", "scopes": ["schedule", "admin"]})
    assert (status, wide["scopes"]) == (201, ["admin"]), "admin already grants the rest"

    by_admin = [r for r in await _records(server, AUDIT_STREAM)
                if r.get("by") == f"api_key:{key_id(admin_key)}"]
    assert [r["type"] for r in by_admin] == [
        "api_key_created", "api_keys_listed", "api_key_revoked", "api_keys_listed",
        "api_key_created"]
    assert by_admin[0]["key_id"] == made["id"] and by_admin[0]["scopes"] == ["attendance"]
    assert by_admin[2]["key_id"] == made["id"]
    assert {r["channel"] for r in by_admin} == {"http"}


async def test_session_changes_and_exports_name_the_key_that_made_them(
    api: Api, keys: dict[str, str], server: CircleServer
) -> None:
    scheduler = as_key(api, keys["schedule"])
    sid = await scheduler.create_session()
    client = await scheduler.invite(sid, "c1", "Ann Lee")
    await as_key(api, keys["therapist-invites"]).invite(sid, "t1", "Dr Kim Park",
                                                       role="therapist")
    path = f"/api/v1/sessions/{sid}"
    assert (await scheduler.request("DELETE", f"{path}/invites/{client['token_id']}"))[0] == 200
    assert (await scheduler.request("PUT", f"{path}/breakout-plan", json=PLAN))[0] == 200
    status, _ = await as_key(api, keys["attendance"]).request(
        "GET", scheduler.attendance_query(sid, session=sid))
    assert status == 200

    actors = [(r["type"], r.get("created_by") or r.get("issued_by") or r.get("revoked_by")
               or r.get("by")) for r in await _records(server, sid)]
    s, t = key_id(keys["schedule"]), key_id(keys["therapist-invites"])
    assert actors == [("session_created", s), ("invite_issued", s), ("invite_issued", t),
                      ("invite_revoked", s), ("breakout_plan_saved", s)]
    exports = [r for r in await _records(server, AUDIT_STREAM)
               if r["type"] == "attendance_exported" and r["session_id"] == sid]
    assert [r["by"] for r in exports] == [f"api_key:{key_id(keys['attendance'])}"]


async def test_refused_calls_and_plain_reads_are_audited_under_their_key(
    api: Api, keys: dict[str, str], server: CircleServer
) -> None:
    """What nothing else records still names its key: a key trying outside its scopes, and
    a session's summary read. The node list (no patient data, polled by monitoring) is not
    appended."""
    sid = await api.create_session()
    attendance, scheduler = keys["attendance"], keys["schedule"]
    refused = await as_key(api, attendance).request(
        "POST", f"/api/v1/sessions/{sid}/invites", json=CLIENT_INVITE)
    assert refused == (403, forbidden("schedule"))
    assert (await as_key(api, scheduler).request("GET", "/api/v1/nodes"))[0] == 403
    assert (await as_key(api, scheduler).request("GET", f"/api/v1/sessions/{sid}"))[0] == 200
    assert (await as_key(api, keys["admin"]).request("GET", "/api/v1/nodes"))[0] == 200

    audit = await _records(server, AUDIT_STREAM)

    def by(secret: str) -> list[tuple[Any, ...]]:
        return [(r["type"], r["method"], r["route"], r["session_id"], r["status"])
                for r in audit if r.get("by") == f"api_key:{key_id(secret)}"
                and r["type"] in ("api_call_refused", "api_read")]

    invites = "/api/v1/sessions/{session_id}/invites"
    assert by(attendance)[-1] == ("api_call_refused", "POST", invites, sid, 403)
    assert by(scheduler)[-2:] == [
        ("api_call_refused", "GET", "/api/v1/nodes", None, 403),
        ("api_read", "GET", "/api/v1/sessions/{session_id}", sid, 200)]
    assert ("api_read", "GET", "/api/v1/nodes", None, 200) not in by(keys["admin"])


# -- keys from before scopes -------------------------------------------------------------



async def _v2_key(db: Database, role: str, name: str, revoked: bool = False) -> str:
    """A key as the release before scopes issued it; returns its plaintext."""
    kid, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
    at = datetime.now(UTC)
    async with db.engine.begin() as conn:
        await conn.execute(insert(API_KEYS_V1).values(
            id=kid, name=name, role=role, secret_hash=hashlib.sha256(secret.encode()).digest(),
            created_at=at, revoked_at=at if revoked else None))
    return f"ck_{kid}_{secret}"


async def _api_key_columns(db: Database) -> dict[str, bool]:
    async with db.engine.connect() as conn:
        columns = await conn.run_sync(lambda sync: inspect(sync).get_columns("api_keys"))
    return {c["name"]: bool(c["nullable"]) for c in columns}


async def test_a_version_2_database_keeps_its_keys_with_their_roles_scopes(
    db_target: DbTarget, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as old_circle:
        old_circle.setattr(migrate, "MIGRATIONS", MIGRATIONS[:2])
        async with await db_target.open() as db:
            assert db.schema_version == 2
            staff = await _v2_key(db, "staff", "scheduler")
            admin = await _v2_key(db, "admin", "ops")
            revoked = await _v2_key(db, "staff", "old scheduler", revoked=True)
    async with await db_target.open() as db:
        assert db.schema_version == MIGRATIONS[-1].version
        async with db.engine.connect() as conn:
            versions = set((await conn.execute(select(schema_migrations.c.version))).scalars())
        assert {1, 2, 3} <= versions
        keys = ApiKeys(db.api_keys)
        scheduler = await keys.authenticate(staff)
        assert scheduler is not None and scheduler.scopes == ROLE_SCOPES["staff"]
        assert scheduler.role == "staff" and scheduler.allows("attendance")
        assert not scheduler.allows("admin")
        ops = await keys.authenticate(admin)
        assert ops is not None and ops.scopes == {"admin"} and ops.allows("therapist-invites")
        assert await keys.authenticate(revoked) is None, "revoked stays revoked"
        assert {k.name: k.role for k in await keys.list()} == {
            "scheduler": "staff", "ops": "admin", "old scheduler": "staff"}
        _, fresh = await keys.create(["attendance"], "after the upgrade")
        assert fresh.role is None and (await keys.list())[-1] == fresh
        assert await _api_key_columns(db) == {c.name: c.nullable for c in api_keys.c}


async def test_new_databases_get_the_same_api_keys_table(database: Database) -> None:
    assert await _api_key_columns(database) == {c.name: c.nullable for c in api_keys.c}


async def test_a_staff_key_from_before_scopes_works_after_the_upgrade(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    srv = CircleServer(tmp_path / "data", env={"CIRCLE_MEDIA": "false"})
    srv.data_dir.mkdir(mode=0o700)  # as `circle serve` insists
    with monkeypatch.context() as old_circle:
        old_circle.setattr(migrate, "MIGRATIONS", MIGRATIONS[:2])
        url = f"sqlite+aiosqlite:///{srv.data_dir / 'circle.db'}"
        async with await open_database(url) as db:
            srv.api_key = await _v2_key(db, "staff", "scheduler")
    srv.start()
    try:
        async with aiohttp.ClientSession() as http:
            api = Api(srv, http)
            sid = await api.create_session()
            await api.invite(sid, "t1", "Dr Kim Park", role="therapist")
            status, _ = await api.request("GET", api.attendance_query(sid))
            assert status == 200
            assert await api.request("GET", "/api/v1/nodes") == (403, forbidden("admin"))
        row = next(line for line in srv.cli("keys", "list", check=True).stdout.splitlines()
                   if line.startswith(key_id(srv.api_key)))
        assert row.split("\t")[1:3] == ["staff", "scheduler"]
        assert row.endswith("\tactive\tattendance,schedule,therapist-invites")
    finally:
        srv.stop()
