"""Exports as disclosures: the audit record of each, the notice in every form, the accounting
read back, over the in-memory fakes of the attendance service tests."""

from __future__ import annotations

import csv
import io
import json
import stat
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from server.attendance.disclosures import disclosures, list_disclosures
from server.attendance.formats import REDISCLOSURE_NOTICE, TOTALS_COLUMNS, notice_line
from server.exports import ExportRequest, export_attendance, notice_path, write_export
from tests.unit.test_attendance_service import AS_OF, Fakes, at

NOW = datetime(2024, 6, 1, 12, tzinfo=UTC)


class AuditLog:
    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    async def append_audit(self, record: dict[str, Any]) -> int:
        self.records.append(record)
        return len(self.records)

    async def load(self) -> list[dict[str, Any]]:
        return list(self.records)


@pytest.fixture
def fakes() -> Fakes:
    f = Fakes()
    for d in (6, 7, 8, 13):
        f.add(f"s-{d}", at(2024, 5, d, 9), [("t1", "therapist"), ("c1", "client"),
                                             ("c2", "client")])
    return f


async def run(fakes: Fakes, audit: AuditLog, **asked: Any) -> Any:
    return await export_attendance(fakes.service(), audit, ExportRequest(**asked),  # type: ignore[arg-type]
                                   requested_by="api_key:k1", channel="http", now=NOW)


async def test_a_rows_export_is_audited_with_its_filters_before_it_leaves(fakes: Fakes) -> None:
    audit = AuditLog()
    result = await run(fakes, audit, session_id="s-7", format="json")
    body = json.loads(result.body)
    assert len(body["rows"]) == 3 and body["notice"] == REDISCLOSURE_NOTICE
    [record] = audit.records
    assert record == {
        "type": "attendance_exported", "at": NOW.isoformat(), "by": "api_key:k1",
        "channel": "http", "what": "rows", "from": None, "to": None, "session_id": "s-7",
        "participant_id": None, "program": None, "period": None, "format": "json",
        "rows": 3, "source_rows": 3,
    }
    assert result.filename == "circle-attendance_s-7.json"


async def test_weekly_totals_widen_to_whole_weeks_and_record_what_they_read(
    fakes: Fakes,
) -> None:
    audit = AuditLog()
    result = await run(fakes, audit, from_date=date(2024, 5, 8), to_date=date(2024, 5, 8),
                       totals="week", format="json", participant_id="c1")
    body = json.loads(result.body)
    assert (body["period"], body["from"], body["to"]) == ("week", "2024-05-06", "2024-05-12")
    [total] = body["totals"]
    assert list(total) == list(TOTALS_COLUMNS)
    assert (total["participant_id"], total["sessions"], total["minutes_present"],
            total["days_attended"], total["services"], total["minimum_minutes"],
            total["meets_minimum"]) == ("c1", 3, 180.0, 3, ["group_psychotherapy"], 540.0,
                                        False)
    [record] = audit.records
    assert (record["what"], record["period"], record["from"], record["to"], record["rows"],
            record["source_rows"], record["participant_id"]) == (
        "totals", "week", "2024-05-06", "2024-05-12", 1, 3, "c1")
    assert "c1" not in result.filename, "a file name carries no participant id"


async def test_daily_totals_as_csv_with_the_notice_line(fakes: Fakes) -> None:
    result = await run(fakes, AuditLog(), from_date=date(2024, 5, 6),
                       to_date=date(2024, 5, 13), totals="day", notice_line=True)
    first, rest = result.body.split("\r\n", 1)
    assert first == "# " + " ".join(REDISCLOSURE_NOTICE.split())
    table = list(csv.DictReader(io.StringIO(rest)))
    assert [(r["participant_id"], r["period"]) for r in table][:2] == [
        ("c1", "2024-05-06"), ("c1", "2024-05-07")]
    assert {r["minutes_present"] for r in table} == {"60.00"}
    assert {r["meets_minimum"] for r in table} == {"false"}
    assert result.rows == 8 and result.content_type == "text/csv"


@pytest.mark.parametrize(("asked", "message"), [
    ({"totals": "week"}, "totals need from and to"),
    ({"totals": "week", "from_date": date(2024, 5, 6), "to_date": date(2024, 5, 6),
      "session_id": "s-6"}, "take no session"),
    ({}, "missing query parameter from"),
])
async def test_requests_that_make_no_sense_are_refused_and_not_audited(
    fakes: Fakes, asked: dict[str, Any], message: str
) -> None:
    audit = AuditLog()
    with pytest.raises(ValueError, match=message):
        await run(fakes, audit, **asked)
    assert audit.records == []


def test_a_csv_written_to_a_file_gets_its_notice_beside_it(tmp_path: Path) -> None:
    out = tmp_path / "may.csv"
    out.write_text("an older, world-readable file")
    out.chmod(0o644)
    beside = write_export(out, "a,b\r\n", REDISCLOSURE_NOTICE)
    assert beside == notice_path(out) == tmp_path / "may.csv.notice.txt"
    assert out.read_bytes() == b"a,b\r\n"
    assert REDISCLOSURE_NOTICE in beside.read_text() and "may.csv" in beside.read_text()
    for path in (out, beside):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert write_export(tmp_path / "may.json", "{}") is None
    assert not notice_path(tmp_path / "may.json").exists()


def test_the_notice_line_is_one_comment_line() -> None:
    line = notice_line("a  b\nc")
    assert line == "# a b c\r\n"


# -- the accounting -------------------------------------------------------------------------


async def test_disclosures_are_the_exports_of_the_audit_stream_by_day(fakes: Fakes) -> None:
    audit = AuditLog()
    await audit.append_audit({"type": "api_key_created", "at": NOW.isoformat(), "by": "cli:x"})
    await run(fakes, audit, session_id="s-6")
    # A record from before totals existed: no `what`, no program or period.
    await audit.append_audit({
        "type": "attendance_exported", "at": "2024-06-03T01:30:00+00:00", "by": "cli:ops",
        "channel": "cli", "from": "2024-05-01", "to": "2024-05-31", "session_id": None,
        "participant_id": "c1", "format": "csv", "rows": 12})
    found = disclosures(await audit.load(), None, None)
    assert [(d.seq, d.by, d.key_id, d.what, d.rows) for d in found] == [
        (2, "api_key:k1", "k1", "rows", 3), (3, "cli:ops", None, "rows", 12)]
    assert found[1].filters == {"from": "2024-05-01", "to": "2024-05-31", "session_id": None,
                                "participant_id": "c1", "program": None, "period": None}
    assert found[0].to_json()["at"] == "2024-06-01T12:00:00Z"
    # 01:30 UTC on 3 June is still 2 June in California.
    from zoneinfo import ZoneInfo

    pacific = ZoneInfo("America/Los_Angeles")
    assert [d.seq for d in disclosures(await audit.load(), date(2024, 6, 2),
                                       date(2024, 6, 2), pacific)] == [3]
    assert [d.seq for d in disclosures(await audit.load(), date(2024, 6, 2), None)] == [3]
    assert [d.seq for d in disclosures(await audit.load(), None, date(2024, 6, 1))] == [2]


async def test_reading_the_accounting_is_audited_but_is_no_disclosure(fakes: Fakes) -> None:
    audit = AuditLog()
    await run(fakes, audit, session_id="s-6")
    for _ in range(2):
        found = await list_disclosures(audit.load, audit.append_audit, None, None,
                                       by="api_key:k2", channel="http", now=AS_OF)
        assert len(found) == 1
    assert [r["type"] for r in audit.records] == [
        "attendance_exported", "disclosures_listed", "disclosures_listed"]
    assert audit.records[1]["by"] == "api_key:k2" and audit.records[1]["count"] == 1
    with pytest.raises(ValueError, match="before"):
        await list_disclosures(audit.load, audit.append_audit, date(2024, 6, 2),
                               date(2024, 6, 1), by="x", channel="cli", now=AS_OF)


def test_long_cli_exports_report_progress_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    from server.attendance.service import BATCH_SESSIONS
    from server.cli import export_progress

    export_progress(BATCH_SESSIONS, BATCH_SESSIONS)  # one batch: nothing to report
    export_progress(BATCH_SESSIONS, 4 * BATCH_SESSIONS)
    out, err = capsys.readouterr()
    assert out == ""
    assert err == f"  read {BATCH_SESSIONS} of {4 * BATCH_SESSIONS} sessions (25%)\n"
