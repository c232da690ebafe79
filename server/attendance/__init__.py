"""Attendance: billing-ready rows projected from a session's ledger events.

The ledger is the one source of truth; attendance is never stored separately, only
recomputed, so an export always agrees with what the session core actually recorded.
"""

from __future__ import annotations

from server.attendance.formats import (
    REDISCLOSURE_NOTICE,
    daily_totals_to_csv,
    daily_totals_to_json,
    to_csv,
    to_json,
    weekly_totals_to_csv,
    weekly_totals_to_json,
)
from server.attendance.projection import project
from server.attendance.rows import COLUMNS, AttendanceRow, AttendanceStatus, Modality
from server.attendance.service import AttendanceService
from server.attendance.totals import (
    PROGRAM_MINIMUMS,
    DailyTotal,
    Minimums,
    WeeklyTotal,
    daily_totals,
    weekly_totals,
)

__all__ = [
    "COLUMNS",
    "PROGRAM_MINIMUMS",
    "REDISCLOSURE_NOTICE",
    "AttendanceRow",
    "AttendanceService",
    "AttendanceStatus",
    "DailyTotal",
    "Minimums",
    "Modality",
    "WeeklyTotal",
    "daily_totals",
    "daily_totals_to_csv",
    "daily_totals_to_json",
    "project",
    "to_csv",
    "to_json",
    "weekly_totals",
    "weekly_totals_to_csv",
    "weekly_totals_to_json",
]
