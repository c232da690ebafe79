"""Attendance exports as disclosures: one code path for HTTP and CLI, each one audited.

An export hands protected records to someone, so before the data leaves, who asked for
what (filters, format, row count) is appended to the ledger's audit stream
(`server.attendance.disclosures`). Every export carries the 42 CFR Part 2 redisclosure
notice: a JSON field, and for CSV a header (HTTP), a notice file beside it (`--out`) and
optionally a first `# ` line (docs/records.md).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Literal

from server.attendance.cache import CachedRows
from server.attendance.disclosures import exported_record
from server.attendance.formats import (
    REDISCLOSURE_NOTICE,
    notice_line,
    to_csv,
    to_json,
    totals_to_csv,
    totals_to_json,
)
from server.attendance.service import AttendanceService, Progress, check_request
from server.attendance.totals import (
    PROGRAM_MINIMUMS,
    Minimums,
    Period,
    period_totals,
    whole_periods,
)
from server.config import Settings
from server.crypto.keyring import KeyRing
from server.ledger import Ledger
from server.storage.database import Database

ExportFormat = Literal["csv", "json"]


@dataclass(frozen=True)
class ExportRequest:
    """What was asked for; the meaning of each combination is `AttendanceService`'s."""

    from_date: date | None = None
    to_date: date | None = None
    session_id: str | None = None
    participant_id: str | None = None
    format: ExportFormat = "csv"
    program: str | None = None
    totals: Period | None = None
    """None: one row per participant per session; "day"/"week": per-client totals."""
    notice_line: bool = False
    """CSV: the notice as a first `# ` line."""


@dataclass(frozen=True)
class ExportResult:
    body: str
    content_type: str
    rows: int
    """Lines exported: rows, or totals."""
    notice: str
    filename: str
    """A name to save it under (no participant id: a file name travels further than data)."""


def attendance_service(settings: Settings, db: Database, ledger: Ledger,
                       keyring: KeyRing) -> AttendanceService:
    """The service as the server and the CLI run it: the clinic's rules, the row cache."""
    return AttendanceService(
        ledger.load, db.sessions.sessions_between, settings.zone,
        timedelta(minutes=settings.late_after_minutes),
        timedelta(minutes=settings.left_early_minutes),
        reader=CachedRows(ledger, db.attendance_rows, keyring),
        video_share=Decimal(str(settings.video_modality_share)),
    )


def _minutes(hours: float | None) -> Decimal | None:
    return None if hours is None else (Decimal(str(hours)) * 60).quantize(Decimal("0.01"))


def program_minimums(settings: Settings) -> dict[str, Minimums]:
    """The clinic's minimums per program, in minutes (settings are in hours)."""
    return {
        "IOP": Minimums(_minutes(settings.iop_daily_minimum_hours),
                        _minutes(settings.iop_weekly_minimum_hours)),
        "PHP": Minimums(_minutes(settings.php_daily_minimum_hours),
                        _minutes(settings.php_weekly_minimum_hours)),
        "OP": Minimums(_minutes(settings.op_daily_minimum_hours),
                       _minutes(settings.op_weekly_minimum_hours)),
    }


def _filename(request: ExportRequest, from_date: date | None, to_date: date | None) -> str:
    parts = ["circle-attendance" if request.totals is None else f"circle-totals-{request.totals}"]
    if request.session_id:
        parts.append(re.sub(r"[^A-Za-z0-9_.-]", "_", request.session_id))
    if from_date or to_date:
        parts.append(f"{from_date or 'start'}-to-{to_date or 'now'}")
    return "_".join(parts) + f".{request.format}"


def check_export(request: ExportRequest) -> tuple[date | None, date | None]:
    """The service-date bounds the export will read, or ValueError (a message for people)
    for a request that does not make sense (`service.check_request`; totals need `from`
    and `to`, widened here to whole periods, and take no session)."""
    from_date, to_date = request.from_date, request.to_date
    if request.totals is not None:
        if from_date is None or to_date is None:
            raise ValueError("totals need from and to")
        if request.session_id is not None:
            raise ValueError("totals are per client and period; they take no session")
        if to_date < from_date:
            raise ValueError("to is before from")
        from_date, to_date = whole_periods(from_date, to_date, request.totals)
    check_request(from_date, to_date, request.session_id, request.participant_id)
    return from_date, to_date


async def export_attendance(
    service: AttendanceService,
    ledger: Ledger,
    request: ExportRequest,
    *,
    requested_by: str,
    channel: Literal["http", "cli"],
    now: datetime,
    minimums: dict[str, Minimums] | None = None,
    progress: Progress | None = None,
) -> ExportResult:
    """Build the export and record the disclosure in the audit stream first.

    Raises ValueError for a request `check_export` refuses. Totals' `from` and `to` are
    widened to whole periods (the audit record and the JSON carry the range actually read).
    """
    from_date, to_date = check_export(request)
    rows = await service.export(
        from_date, to_date, request.session_id, request.participant_id,
        as_of=now, program=request.program, progress=progress,
    )
    totals = None
    if request.totals is not None:
        totals = period_totals(rows, request.totals, minimums or PROGRAM_MINIMUMS)
    lines = len(rows) if totals is None else len(totals)
    await ledger.append_audit(exported_record(
        at=now, by=requested_by, channel=channel,
        what="rows" if totals is None else "totals",
        filters={"from": from_date.isoformat() if from_date else None,
                 "to": to_date.isoformat() if to_date else None,
                 "session_id": request.session_id, "participant_id": request.participant_id,
                 "program": request.program, "period": request.totals},
        fmt=request.format, lines=lines, rows=len(rows),
    ))
    name = _filename(request, from_date, to_date)
    if request.format == "json":
        if totals is None or from_date is None or to_date is None:
            document = to_json(rows, REDISCLOSURE_NOTICE)
        else:
            document = totals_to_json(totals, str(request.totals), from_date, to_date,
                                      REDISCLOSURE_NOTICE)
        body = json.dumps(document, indent=2)
        return ExportResult(body, "application/json", lines, REDISCLOSURE_NOTICE, name)
    body = to_csv(rows) if totals is None else totals_to_csv(totals)
    if request.notice_line:
        body = notice_line(REDISCLOSURE_NOTICE) + body
    return ExportResult(body, "text/csv", lines, REDISCLOSURE_NOTICE, name)


def write_private(path: Path, body: str) -> None:
    """Write `body` to `path`, readable by its owner only (0600) from the first byte.

    An export is a disclosure of protected records; written under the usual umask it would
    be readable by every user of the machine. An existing file is emptied, then tightened,
    before anything is written into it.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        os.fchmod(fh.fileno(), 0o600)
        fh.write(body)


def notice_path(path: Path) -> Path:
    """Where the notice of a CSV export written to `path` goes: `FILE.notice.txt`."""
    return path.with_name(path.name + ".notice.txt")


def write_export(path: Path, body: str, notice: str | None = None) -> Path | None:
    """Write an export to `path` (0600); with `notice` (CSV, which has no field for it),
    write the notice beside it too, 0600, and return that file's path."""
    write_private(path, body)
    if notice is None:
        return None
    beside = notice_path(path)
    write_private(beside, f"Redisclosure notice for {path.name}:\n\n{notice}\n")
    return beside
