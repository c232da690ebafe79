"""Billing-grade records on a real server: attendance by session or participant alone,
per-client totals, the accounting of disclosures, and the notice in every saved form."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
import secrets
import sqlite3
import stat
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import pytest

from client.participant import CircleClient
from server.attendance.formats import REDISCLOSURE_NOTICE, TOTALS_COLUMNS
from server.attendance.rows import COLUMNS

from .clock import now
from .server_fixtures import Api, CircleServer, settle

pytestmark = pytest.mark.integration


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def key_id(secret: str) -> str:
    return secret.split("_")[1]


def scoped_key(server: CircleServer, *scopes: str) -> str:
    args = [arg for scope in scopes for arg in ("--scope", scope)]
    return server.cli("keys", "create", *args, "--name", "billing tests",
                      check=True).stdout.strip()


def rows_of(body: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(body)))


PRESENT_S = 1.0
"""Long enough to round to minutes above zero (0.02): the totals have something to sum."""


async def present_for(client: CircleClient, view: dict[str, Any], seconds: float) -> None:
    """Stay admitted until the server's clock is `seconds` past `view`'s `server_time`.

    Presence is time itself, so time has to pass; what is checked is the server's own clock
    (a hand raised or lowered brings a fresh view), not the length of the wait.
    """
    since = datetime.fromisoformat(view["server_time"])
    raised = False
    while True:
        await asyncio.sleep(seconds / 4)
        raised = not raised
        ack = await client.call("hand", {"raised": raised})
        assert ack["ok"], ack
        seen = await client.wait_for(lambda s, r=raised: s["you"]["hand"] is r)
        if datetime.fromisoformat(seen["server_time"]) - since >= timedelta(seconds=seconds):
            return


async def held_session(api: Api, client_id: str, *others: str) -> str:
    """A session the therapist ran: `client_id` admitted, then left; `others` invited only."""
    sid = await api.create_session()
    for other in others:
        await api.invite(sid, other, "Cal Diaz")
    therapist = await api.join(sid, "t1", "Dr Kim Park", role="therapist")
    client = await api.join(sid, client_id, "Ann Lee")
    try:
        await therapist.wait_for(lambda s: [w["id"] for w in s["waiting"]] == [client_id])
        await therapist.call("admit", {"participant_id": client_id})
        admitted = await client.wait_for(lambda s: s["you"]["status"] == "admitted")
        await present_for(client, admitted, PRESENT_S)
        await client.call("leave")
        await therapist.call("end")
    finally:
        await settle(therapist, client)
    return sid


async def get(api: Api, path: str, **params: str) -> tuple[int, Any, Any]:
    async with api.http.get(f"{api.server.url}{path}?{urlencode(params)}",
                            headers=api.headers) as r:
        body = await (r.json() if r.content_type == "application/json" else r.text())
        return r.status, body, r.headers


async def test_a_session_or_a_participant_alone_needs_no_dates(
    api: Api, server: CircleServer
) -> None:
    client = f"c-{secrets.token_hex(3)}"
    first = await held_session(api, client, "c-absent")
    second = await held_session(api, client)

    status, body, headers = await get(api, "/api/v1/attendance", session=first)
    assert status == 200, body
    assert next(csv.reader(io.StringIO(body))) == list(COLUMNS)
    rows = {r["participant_id"]: r for r in rows_of(body)}
    assert set(rows) == {"t1", client, "c-absent"}
    assert rows["c-absent"]["status"] == "no_show" and rows["c-absent"]["minutes_present"] == (
        "0.00")
    assert headers["Content-Disposition"] == (
        f'attachment; filename="circle-attendance_{first}.csv"')
    assert headers["X-Redisclosure-Notice"] == REDISCLOSURE_NOTICE

    status, body, headers = await get(api, "/api/v1/attendance", participant=client,
                                      format="json")
    assert status == 200, body
    assert [(r["session_id"], r["participant_id"]) for r in body["rows"]] == sorted(
        [(first, client), (second, client)])
    assert client not in headers["Content-Disposition"], "no participant id in a file name"

    day = api.service_date(second)
    status, body, _ = await get(api, "/api/v1/attendance", participant=client, **{"from": day},
                                format="json")
    assert status == 200 and {r["session_id"] for r in body["rows"]} <= {first, second}

    status, body, _ = await get(api, "/api/v1/attendance")
    assert (status, body["error"]["code"]) == (400, "invalid")
    assert body["error"]["message"].startswith("missing query parameter from")
    status, body, _ = await get(api, "/api/v1/attendance", **{"from": "2024-01-01",
                                                              "to": "2025-06-01"})
    assert status == 400 and "at most 366 days" in body["error"]["message"]
    status, body, _ = await get(api, "/api/v1/attendance", session=first, to="yesterday")
    assert (status, body["error"]["message"]) == (400, "to: use YYYY-MM-DD")

    by_session = server.cli("export", "--session", first, "--format", "json", check=True)
    assert {r["participant_id"] for r in json.loads(by_session.stdout)["rows"]} == set(rows)
    by_client = server.cli("export", "--participant", client, check=True)
    assert {r["session_id"] for r in rows_of(by_client.stdout)} == {first, second}
    nothing = server.cli("export")
    assert nothing.returncode == 2 and "missing --from" in nothing.stderr


async def test_weekly_and_daily_totals_sum_the_rows(api: Api, server: CircleServer) -> None:
    client = f"c-{secrets.token_hex(3)}"
    sessions = [await held_session(api, client) for _ in range(2)]
    day = api.service_date(sessions[0])
    _, rows, _ = await get(api, "/api/v1/attendance", participant=client, format="json")
    minutes = sum(r["minutes_present"] for r in rows["rows"])
    assert minutes > 0

    status, body, headers = await get(api, "/api/v1/attendance/totals", participant=client,
                                      period="week", format="json", **{"from": day, "to": day})
    assert status == 200, body
    assert body["notice"] == REDISCLOSURE_NOTICE and body["period"] == "week"
    [total] = [t for t in body["totals"] if t["participant_id"] == client]
    assert list(total) == list(TOTALS_COLUMNS)
    assert total["period_start"] <= day <= total["period_end"]
    assert (body["from"], body["to"]) == (total["period_start"], total["period_end"])
    assert (total["sessions"], total["days_attended"], total["services"]) == (
        len({r["session_id"] for r in rows["rows"]}), 1, ["group_psychotherapy"])
    assert total["minutes_present"] == pytest.approx(minutes)
    assert (total["minimum_minutes"], total["meets_minimum"]) == (540.0, False)
    assert "circle-totals-week_" in headers["Content-Disposition"]

    status, text, headers = await get(api, "/api/v1/attendance/totals", period="day",
                                      notice_line="1", **{"from": day, "to": day})
    assert status == 200, text
    first_line, rest = text.split("\r\n", 1)
    assert first_line.startswith("# This information has been disclosed to you")
    table = rows_of(rest)
    assert list(table[0]) == list(TOTALS_COLUMNS)
    [daily] = [t for t in table if t["participant_id"] == client]
    assert (daily["period"], daily["minimum_minutes"], daily["meets_minimum"]) == (
        day, "180.00", "false")
    assert headers["Content-Type"].startswith("text/csv")

    for bad, message in (({"period": "month"}, "period must be day or week"),
                         ({"period": "week"}, "totals need from and to"),
                         ({"program": "XYZ", "from": day, "to": day}, "program must be")):
        status, body, _ = await get(api, "/api/v1/attendance/totals", **bad)
        assert status == 400 and message in body["error"]["message"], bad

    done = server.cli("export", "--totals", "week", "--from", day, "--to", day,
                      "--participant", client, "--format", "json", check=True)
    assert "exported 1 weekly total(s)" in done.stderr
    [cli_total] = json.loads(done.stdout)["totals"]
    assert cli_total == total


async def test_every_export_is_in_the_accounting_with_its_key_and_filters(
    api: Api, server: CircleServer
) -> None:
    client = f"c-{secrets.token_hex(3)}"
    sid = await held_session(api, client)
    exporter = scoped_key(server, "attendance")
    auditor = scoped_key(server, "attendance")
    scheduler = scoped_key(server, "schedule")
    async with api.http.get(f"{server.url}/api/v1/attendance?{urlencode({'session': sid})}",
                            headers=bearer(exporter)) as r:
        assert r.status == 200
    day = now().date()
    window = {"from": (day - timedelta(days=1)).isoformat(),
              "to": (day + timedelta(days=1)).isoformat()}
    forbidden = {"error": {"code": "forbidden",
                           "message": "this API key lacks the 'attendance' scope"}}
    for path in ("/api/v1/disclosures", "/api/v1/attendance/totals"):
        async with api.http.get(f"{server.url}{path}?{urlencode(window)}",
                                headers=bearer(scheduler)) as r:
            assert (r.status, await r.json()) == (403, forbidden), path

    async with api.http.get(f"{server.url}/api/v1/disclosures?{urlencode(window)}",
                            headers=bearer(auditor)) as r:
        assert r.status == 200
        listed = (await r.json())["disclosures"]
    mine = [d for d in listed if d["key_id"] == key_id(exporter)]
    assert len(mine) == 1
    assert mine[0] | {"at": "", "seq": 0} == {
        "seq": 0, "at": "", "by": f"api_key:{key_id(exporter)}", "key_id": key_id(exporter),
        "channel": "http", "what": "rows", "format": "csv", "rows": 2,
        "filters": {"from": None, "to": None, "session_id": sid, "participant_id": None,
                    "program": None, "period": None}}
    assert all(d["key_id"] != key_id(auditor) for d in listed), "reading is no disclosure"

    out = server.cli("disclosures", "--from", window["from"], "--to", window["to"],
                     "--format", "json", check=True)
    cli_listed = json.loads(out.stdout)["disclosures"]
    assert mine[0] in cli_listed
    text = server.cli("disclosures", "--from", window["from"], check=True).stdout
    line = next(x for x in text.splitlines() if f"api_key:{key_id(exporter)}" in x)
    assert line.split("\t")[2:6] == ["http", "rows", "csv", "2"]
    assert f"session_id={sid}" in line

    status, body, _ = await get(api, "/api/v1/disclosures", **{"from": "2025-02-02",
                                                               "to": "2025-02-01"})
    assert (status, body["error"]["code"]) == (400, "invalid")


async def test_a_csv_saved_by_the_cli_keeps_its_notice(
    api: Api, server: CircleServer
) -> None:
    sid = await held_session(api, f"c-{secrets.token_hex(3)}")
    out = server.data_dir.parent / f"{sid}.csv"
    done = server.cli("export", "--session", sid, "--out", str(out), check=True)
    beside = out.with_name(out.name + ".notice.txt")
    assert f"the redisclosure notice is in {beside}" in done.stderr
    assert REDISCLOSURE_NOTICE in beside.read_text()
    for path in (out, beside):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert out.read_text().startswith("session_id,"), "the file itself is plain CSV"

    lined = server.data_dir.parent / f"{sid}-lined.csv"
    server.cli("export", "--session", sid, "--out", str(lined), "--notice-line", check=True)
    with lined.open(newline="") as fh:
        first = next(fh)
        assert first == "# " + " ".join(REDISCLOSURE_NOTICE.split()) + "\r\n"
        assert {r["session_id"] for r in csv.DictReader(fh)} == {sid}
    printed = server.cli("export", "--session", sid, "--notice-line", check=True).stdout
    assert printed.startswith("# This information")

    as_json = server.data_dir.parent / f"{sid}.json"
    server.cli("export", "--session", sid, "--format", "json", "--out", str(as_json),
               check=True)
    assert json.loads(as_json.read_text())["notice"] == REDISCLOSURE_NOTICE
    assert not as_json.with_name(as_json.name + ".notice.txt").exists(), "JSON has the field"

    verified = server.cli("verify")
    assert verified.returncode == 0, verified.stderr


async def test_an_ended_sessions_rows_are_sealed_before_anyone_exports(
    api: Api, server: CircleServer
) -> None:
    """The owner warms the row cache when a session ends, so the first export of a period
    is a cache read, not a replay of every session in it."""
    sid = await held_session(api, f"c-{secrets.token_hex(3)}")

    def cached() -> list[tuple[Any, ...]]:
        with contextlib.closing(sqlite3.connect(server.data_dir / "circle.db")) as db:
            return db.execute("SELECT head_seq, ciphertext FROM attendance_rows "
                              "WHERE session_id = ?", (sid,)).fetchall()

    deadline = asyncio.get_running_loop().time() + 10
    while not cached():
        assert asyncio.get_running_loop().time() < deadline, "no rows sealed after the end"
        await asyncio.sleep(0.05)
    ((_, sealed),) = cached()
    # Markers long enough that random ciphertext cannot hold them by chance (a two-byte
    # "t1" turns up in about one sealed row in three hundred).
    for marker in (sid.encode(), b'"participant_id"', b"Ann Lee"):
        assert marker not in sealed, "sealed, not plaintext"
    status, body, _ = await get(api, "/api/v1/attendance", session=sid, format="json")
    assert status == 200 and {r["participant_id"] for r in body["rows"]} >= {"t1"}
