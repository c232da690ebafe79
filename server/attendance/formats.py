"""Export formats: CSV and JSON of attendance rows and of the daily/weekly totals.

All text rendering lives here so CSV and JSON agree on every value:

* times are ISO 8601 UTC to the second with a ``Z`` (``2024-05-01T17:00:00Z``), empty in
  CSV / ``null`` in JSON when there is none (never admitted);
* minutes have exactly two decimals: ``"45.50"`` in CSV, the JSON number ``45.5`` (the
  rounded Decimal converted to float, exact at two places for any real session length);
  ``minutes_video``/``minutes_audio`` not measured (older records) are empty / ``null``;
* lists (breakout rooms and roles) are ``;``-joined in CSV and arrays in JSON;
* service dates are ``YYYY-MM-DD``;
* booleans (``billable``, ``telehealth_consent``) are ``true``/``false`` in CSV and JSON,
  an unknown one (no check-in) an empty cell / ``null``.

CSV cells are protected against formula injection: a text cell starting with ``=``,
``+``, ``-``, ``@``, tab or carriage return gets a leading apostrophe, because exports
are opened in spreadsheets and a display name is typed by whoever scheduled the invite.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Final

from server.attendance.rows import COLUMNS, AttendanceRow
from server.attendance.totals import DailyTotal, PeriodTotal, WeeklyTotal

REDISCLOSURE_NOTICE: Final[str] = (
    "This information has been disclosed to you from records protected by federal "
    "confidentiality rules (42 CFR part 2). The federal rules prohibit you from making any "
    "further disclosure of information in this record that identifies a patient as having or "
    "having had a substance use disorder, either directly, by reference to publicly available "
    "information, or through verification of such identification by another person, unless "
    "further disclosure is expressly permitted by the written consent of the individual whose "
    "information is being disclosed or as otherwise permitted by 42 CFR part 2. A general "
    "authorization for the release of medical or other information is NOT sufficient for this "
    "purpose (see 42 CFR 2.31). The federal rules restrict any use of the information to "
    "investigate or prosecute with regard to a crime any patient with a substance use "
    "disorder, except as provided at 42 CFR 2.12(c)(5) and 2.65."
)
"""The 42 CFR Part 2 redisclosure notice every export of a substance-use program carries.

Paraphrases the regulation's standard statement (42 CFR 2.32). A clinic whose counsel
requires the wording of a later revision of the rule should pass its own text.
"""

DAILY_COLUMNS: Final[tuple[str, ...]] = (
    "participant_id",
    "display_name",
    "program",
    "service_date",
    "sessions",
    "minutes_present",
    "minimum_minutes",
    "below_minimum",
)
WEEKLY_COLUMNS: Final[tuple[str, ...]] = (
    "participant_id",
    "display_name",
    "program",
    "iso_week",
    "week_start",
    "days_attended",
    "sessions",
    "minutes_present",
    "minimum_minutes",
    "below_minimum",
    "days_below_daily_minimum",
)

TOTALS_COLUMNS: Final[tuple[str, ...]] = (
    "participant_id",
    "display_name",
    "program",
    "period",
    "period_start",
    "period_end",
    "sessions",
    "services",
    "minutes_present",
    "days_attended",
    "minimum_minutes",
    "meets_minimum",
)
"""Columns of the per-client totals (`PeriodTotal`), in this order in CSV and JSON."""

_FORMULA_STARTS: Final = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(text: str) -> str:
    """A text cell a spreadsheet will show as text, never evaluate as a formula."""
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def iso_utc(moment: datetime | None) -> str | None:
    """ISO 8601 UTC to the second (``...Z``), or None."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def two_places(value: Decimal) -> str:
    """Minutes as text with exactly two decimals (``45.50``)."""
    return f"{value:.2f}"


def _json_minutes(value: Decimal | None) -> float | None:
    return None if value is None else float(value)


def row_to_json(row: AttendanceRow) -> dict[str, Any]:
    """One row as a JSON-ready dict with exactly the contract's keys, in contract order."""
    values: dict[str, Any] = {
        "session_id": row.session_id,
        "service_date": row.service_date.isoformat(),
        "program": row.program,
        "kind": row.kind,
        "participant_id": row.participant_id,
        "display_name": row.display_name,
        "role": row.role,
        "time_in": iso_utc(row.time_in),
        "time_out": iso_utc(row.time_out),
        "minutes_present": float(row.minutes_present),
        "minutes_waiting": float(row.minutes_waiting),
        "disconnects": row.disconnects,
        "modality": row.modality,
        "breakout_rooms": list(row.breakout_rooms),
        "breakout_roles": list(row.breakout_roles),
        "status": row.status,
        "service": row.service,
        "billable": row.billable,
        "place_of_service": row.place_of_service,
        "patient_region": row.patient_region,
        "telehealth_consent": row.telehealth_consent,
        "minutes_video": _json_minutes(row.minutes_video),
        "minutes_audio": _json_minutes(row.minutes_audio),
        "minutes_speaking": float(row.minutes_speaking),
    }
    return {column: values[column] for column in COLUMNS}


def _utc_cell(value: datetime) -> str:
    return iso_utc(value) or ""


def _list_cell(value: tuple[object, ...] | list[object]) -> str:
    return safe_cell(";".join(str(v) for v in value))


_CELL_BY_TYPE: Final[dict[type, Callable[[Any], str]]] = {
    str: safe_cell,
    Decimal: two_places,
    datetime: _utc_cell,
    date: date.isoformat,
    int: str,
    bool: lambda v: "true" if v else "false",
    type(None): lambda _: "",
    tuple: _list_cell,
    list: _list_cell,
}
"""The common exact types, looked up once per cell (a 15,000-row export has 240,000 cells);
anything else (subclasses, newer types) takes `_csv_cell`'s full chain, with the same result."""


def _csv_cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return two_places(value)
    if isinstance(value, datetime):
        return iso_utc(value) or ""
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, tuple | list):
        return safe_cell(";".join(str(v) for v in value))
    if isinstance(value, int):
        return str(value)
    return safe_cell(str(value))


def _write_csv(columns: Sequence[str], records: Iterable[Sequence[object]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(columns)
    fast = _CELL_BY_TYPE.get
    for record in records:
        writer.writerow([(fast(type(v)) or _csv_cell)(v) for v in record])
    return out.getvalue()


def to_csv(rows: Iterable[AttendanceRow]) -> str:
    """The rows as CSV (RFC 4180, CRLF) with a header of exactly the contract columns."""
    return _write_csv(COLUMNS, ([getattr(row, c) for c in COLUMNS] for row in rows))


def to_json(
    rows: Iterable[AttendanceRow], notice: str | None = REDISCLOSURE_NOTICE
) -> dict[str, Any]:
    """``{"rows": [...], "notice": ...}``; the notice defaults to the Part 2 text.

    Defaulting to the notice fails safe: a caller that forgets the clinic setting
    over-warns rather than sending substance-use records without it. Pass None for a
    program outside Part 2.
    """
    return {"rows": [row_to_json(row) for row in rows], "notice": notice}


def daily_totals_to_csv(totals: Iterable[DailyTotal]) -> str:
    """Daily totals as CSV (`DAILY_COLUMNS`)."""
    return _write_csv(DAILY_COLUMNS, ([getattr(t, c) for c in DAILY_COLUMNS] for t in totals))


def weekly_totals_to_csv(totals: Iterable[WeeklyTotal]) -> str:
    """Weekly totals as CSV (`WEEKLY_COLUMNS`)."""
    return _write_csv(WEEKLY_COLUMNS, ([getattr(t, c) for c in WEEKLY_COLUMNS] for t in totals))


def daily_totals_to_json(
    totals: Iterable[DailyTotal], notice: str | None = REDISCLOSURE_NOTICE
) -> dict[str, Any]:
    """``{"daily": [...], "notice": ...}`` with `DAILY_COLUMNS` keys."""
    return {
        "daily": [
            {
                "participant_id": t.participant_id,
                "display_name": t.display_name,
                "program": t.program,
                "service_date": t.service_date.isoformat(),
                "sessions": t.sessions,
                "minutes_present": float(t.minutes_present),
                "minimum_minutes": _json_minutes(t.minimum_minutes),
                "below_minimum": t.below_minimum,
            }
            for t in totals
        ],
        "notice": notice,
    }


def weekly_totals_to_json(
    totals: Iterable[WeeklyTotal], notice: str | None = REDISCLOSURE_NOTICE
) -> dict[str, Any]:
    """``{"weekly": [...], "notice": ...}`` with `WEEKLY_COLUMNS` keys."""
    return {
        "weekly": [
            {
                "participant_id": t.participant_id,
                "display_name": t.display_name,
                "program": t.program,
                "iso_week": t.iso_week,
                "week_start": t.week_start.isoformat(),
                "days_attended": t.days_attended,
                "sessions": t.sessions,
                "minutes_present": float(t.minutes_present),
                "minimum_minutes": _json_minutes(t.minimum_minutes),
                "below_minimum": t.below_minimum,
                "days_below_daily_minimum": t.days_below_daily_minimum,
            }
            for t in totals
        ],
        "notice": notice,
    }


def notice_line(notice: str) -> str:
    """The notice as one CSV comment line (``# ...``, CRLF), to go before the header.

    For `--notice-line` / `notice_line=1`: the notice then survives any copy of the file.
    Readers skip that one line (``pandas.read_csv(f, skiprows=1)``; Python: ``next(f)``
    before ``csv.DictReader(f)``); a spreadsheet shows it above the header, split at its
    commas. The text is the notice verbatim (only whitespace runs made single spaces).
    """
    return "# " + " ".join(notice.split()) + "\r\n"


def totals_to_csv(totals: Iterable[PeriodTotal]) -> str:
    """Per-client totals as CSV (`TOTALS_COLUMNS`; services ``;``-joined)."""
    return _write_csv(TOTALS_COLUMNS, ([getattr(t, c) for c in TOTALS_COLUMNS] for t in totals))


def totals_to_json(
    totals: Iterable[PeriodTotal],
    period: str,
    from_date: date,
    to_date: date,
    notice: str | None = REDISCLOSURE_NOTICE,
) -> dict[str, Any]:
    """``{"period", "from", "to", "totals": [...], "notice"}``; `from`/`to` are the range
    actually totalled (whole periods)."""
    return {
        "period": period,
        "from": from_date.isoformat(),
        "to": to_date.isoformat(),
        "totals": [
            {
                "participant_id": t.participant_id,
                "display_name": t.display_name,
                "program": t.program,
                "period": t.period,
                "period_start": t.period_start.isoformat(),
                "period_end": t.period_end.isoformat(),
                "sessions": t.sessions,
                "services": list(t.services),
                "minutes_present": float(t.minutes_present),
                "days_attended": t.days_attended,
                "minimum_minutes": _json_minutes(t.minimum_minutes),
                "meets_minimum": t.meets_minimum,
            }
            for t in totals
        ],
        "notice": notice,
    }
