"""Attendance exports as disclosures: one code path for HTTP and CLI, each one audited.

An export hands protected records to someone, so before the data leaves, who asked for
what (filters, format, row count) is appended to the ledger's audit stream.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime
from typing import Literal

from server.attendance.formats import REDISCLOSURE_NOTICE, to_csv, to_json
from server.attendance.service import AttendanceService
from server.ledger import Ledger

ExportFormat = Literal["csv", "json"]


@dataclass(frozen=True)
class ExportRequest:
    from_date: date
    to_date: date
    session_id: str | None = None
    participant_id: str | None = None
    format: ExportFormat = "csv"


@dataclass(frozen=True)
class ExportResult:
    body: str
    content_type: str
    rows: int
    notice: str


async def export_attendance(
    service: AttendanceService,
    ledger: Ledger,
    request: ExportRequest,
    *,
    requested_by: str,
    channel: Literal["http", "cli"],
    now: datetime,
) -> ExportResult:
    """Build the export and record the disclosure in the audit stream first."""
    rows = await service.export(
        request.from_date,
        request.to_date,
        request.session_id,
        request.participant_id,
        as_of=now,
    )
    await ledger.append_audit(
        {
            "type": "attendance_exported",
            "at": now.isoformat(),
            "by": requested_by,
            "channel": channel,
            "from": request.from_date.isoformat(),
            "to": request.to_date.isoformat(),
            "session_id": request.session_id,
            "participant_id": request.participant_id,
            "format": request.format,
            "rows": len(rows),
        }
    )
    if request.format == "json":
        body = json.dumps(to_json(rows, REDISCLOSURE_NOTICE), indent=2)
        return ExportResult(body, "application/json", len(rows), REDISCLOSURE_NOTICE)
    return ExportResult(to_csv(rows), "text/csv", len(rows), REDISCLOSURE_NOTICE)
