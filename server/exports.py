"""Attendance exports as disclosures: one code path for HTTP and CLI, each one audited.

An export hands protected records to someone, so before the data leaves, who asked for
what (filters, format, row count) is appended to the ledger's audit stream.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
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


def write_export(path: Path, body: str) -> None:
    """Write an export to `path`, readable by its owner only (0600) from the first byte.

    An export is a disclosure of protected records; written under the usual umask it would
    be readable by every user of the machine. An existing file is emptied, then tightened,
    before anything is written into it.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        os.fchmod(fh.fileno(), 0o600)
        fh.write(body)
