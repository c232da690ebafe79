"""Daily and weekly minutes per client, flagged against program minimums.

IOP and PHP bill per day with minimums, and payers also look at the week; staff used to
rebuild these sums in a spreadsheet from the rows. The totals are computed from the
*rounded* row values, so they add up exactly to what the exported rows show.

Grouping is per (participant, program): minutes of an OP session do not count toward an
IOP day. Only clients are totalled by default: program minimums are patient billing
rules, and a therapist's hours are not measured against them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Final, Literal

from server.attendance.rows import AttendanceRow


@dataclass(frozen=True)
class Minimums:
    """A program's minimum minutes a day and a week; None where the program has none."""

    daily: Decimal | None
    weekly: Decimal | None


PROGRAM_MINIMUMS: Final[Mapping[str, Minimums]] = {
    "IOP": Minimums(daily=Decimal(180), weekly=Decimal(540)),
    "PHP": Minimums(daily=Decimal(180), weekly=Decimal(1200)),
    "OP": Minimums(daily=None, weekly=None),
}
"""Common payer minimums (3 h a day; about 9 h a week for IOP, 20 h for PHP).

Payers differ: pass your own mapping to `daily_totals`/`weekly_totals` to override.
"""

_NONE: Final = Minimums(daily=None, weekly=None)


@dataclass(frozen=True, kw_only=True)
class DailyTotal:
    """One participant's minutes in one program on one service date.

    `sessions` counts sessions with any minutes present; a day with rows but no minutes
    (no-shows only) is listed with 0 so an expected-but-absent day is visible.
    """

    participant_id: str
    display_name: str
    program: str
    service_date: date
    sessions: int
    minutes_present: Decimal
    minimum_minutes: Decimal | None
    below_minimum: bool


@dataclass(frozen=True, kw_only=True)
class WeeklyTotal:
    """One participant's minutes in one program in one ISO week (Monday to Sunday).

    `days_below_daily_minimum` counts attended days short of the daily minimum; days
    not attended at all show up as a low `days_attended` instead.
    """

    participant_id: str
    display_name: str
    program: str
    iso_week: str
    """``YYYY-Www`` (ISO 8601 week date), e.g. ``2024-W18``."""
    week_start: date
    """The Monday of that week."""
    days_attended: int
    sessions: int
    minutes_present: Decimal
    minimum_minutes: Decimal | None
    below_minimum: bool
    days_below_daily_minimum: int


def _below(minutes: Decimal, minimum: Decimal | None) -> bool:
    return minimum is not None and minutes < minimum


def _names(rows: Iterable[AttendanceRow]) -> dict[str, str]:
    """Each participant's most recent display name (latest service date wins)."""
    names: dict[str, tuple[date, str]] = {}
    for row in rows:
        known = names.get(row.participant_id)
        if known is None or row.service_date >= known[0]:
            names[row.participant_id] = (row.service_date, row.display_name)
    return {pid: name for pid, (_, name) in names.items()}


def daily_totals(
    rows: Iterable[AttendanceRow],
    minimums: Mapping[str, Minimums] = PROGRAM_MINIMUMS,
    roles: Collection[str] = ("client",),
) -> list[DailyTotal]:
    """Minutes per (participant, program, service date), sorted by those keys."""
    chosen = [row for row in rows if row.role in roles]
    names = _names(chosen)
    sums: dict[tuple[str, str, date], Decimal] = defaultdict(Decimal)
    sessions: dict[tuple[str, str, date], int] = defaultdict(int)
    for row in chosen:
        here: tuple[str, str, date] = (row.participant_id, row.program, row.service_date)
        sums[here] += row.minutes_present
        sessions[here] += 1 if row.minutes_present > 0 else 0
    result = []
    for key in sorted(sums):
        pid, program, day = key
        minimum = minimums.get(program, _NONE).daily
        result.append(
            DailyTotal(
                participant_id=pid,
                display_name=names[pid],
                program=program,
                service_date=day,
                sessions=sessions[key],
                minutes_present=sums[key],
                minimum_minutes=minimum,
                below_minimum=_below(sums[key], minimum),
            )
        )
    return result


def weekly_totals(
    rows: Iterable[AttendanceRow],
    minimums: Mapping[str, Minimums] = PROGRAM_MINIMUMS,
    roles: Collection[str] = ("client",),
) -> list[WeeklyTotal]:
    """Minutes per (participant, program, ISO week), built from the daily totals.

    A week only partly inside the exported date range is totalled over the exported
    days: export whole weeks (Monday to Sunday) when checking weekly minimums.
    """
    chosen = [row for row in rows if row.role in roles]
    days: dict[tuple[str, str, int, int], list[DailyTotal]] = defaultdict(list)
    for day in daily_totals(chosen, minimums, roles):
        year, week, _ = day.service_date.isocalendar()
        days[(day.participant_id, day.program, year, week)].append(day)
    result = []
    for key in sorted(days):
        pid, program, year, week = key
        group = days[key]
        total = sum((d.minutes_present for d in group), Decimal(0))
        minimum = minimums.get(program, _NONE).weekly
        result.append(
            WeeklyTotal(
                participant_id=pid,
                display_name=group[-1].display_name,
                program=program,
                iso_week=f"{year:04d}-W{week:02d}",
                week_start=date.fromisocalendar(year, week, 1),
                days_attended=sum(1 for d in group if d.minutes_present > 0),
                sessions=sum(d.sessions for d in group),
                minutes_present=total,
                minimum_minutes=minimum,
                below_minimum=_below(total, minimum),
                days_below_daily_minimum=sum(
                    1 for d in group if d.minutes_present > 0 and d.below_minimum
                ),
            )
        )
    return result


Period = Literal["day", "week"]
PERIODS: Final[tuple[Period, ...]] = ("day", "week")


@dataclass(frozen=True, kw_only=True)
class PeriodTotal:
    """One client's attendance in one program over one day or ISO week: what
    `GET /api/v1/attendance/totals` and `circle export --totals` give, one per line.

    Every figure is a sum or count over exactly the per-session rows of that client,
    program and period (no-shows included, with their 0 minutes): `minutes_present` is the
    sum of the rows' (rounded) minutes, `sessions` counts rows with minutes present,
    `days_attended` distinct service dates with minutes present, and `services` lists the
    distinct services of those attended sessions (the session kind where a row has no
    `service`). `meets_minimum` is None where the program has no minimum for the period.
    """

    participant_id: str
    display_name: str
    program: str
    period: str
    """The day (``2024-05-06``) or the ISO week (``2024-W19``)."""
    period_start: date
    period_end: date
    sessions: int
    services: tuple[str, ...]
    minutes_present: Decimal
    days_attended: int
    minimum_minutes: Decimal | None
    meets_minimum: bool | None


def service_of(row: AttendanceRow) -> str:
    """The row's service; rows from before sessions had one fall back to the session kind."""
    service = getattr(row, "service", None)
    return str(service) if service else row.kind


def period_of(day: date, period: Period) -> tuple[str, date, date]:
    """(label, first day, last day) of the day or ISO week (Monday to Sunday) `day` is in."""
    if period == "day":
        return day.isoformat(), day, day
    year, week, weekday = day.isocalendar()
    start = date.fromordinal(day.toordinal() - weekday + 1)
    return f"{year:04d}-W{week:02d}", start, date.fromordinal(start.toordinal() + 6)


def whole_periods(from_date: date, to_date: date, period: Period) -> tuple[date, date]:
    """The range widened to whole periods: weeks run Monday to Sunday, so a month's totals
    check each week's minimum over the whole week, not only its days inside the month."""
    return period_of(from_date, period)[1], period_of(to_date, period)[2]


def period_totals(
    rows: Iterable[AttendanceRow],
    period: Period,
    minimums: Mapping[str, Minimums] = PROGRAM_MINIMUMS,
    roles: Collection[str] = ("client",),
) -> list[PeriodTotal]:
    """Totals per (participant, program, period), sorted by those keys (then period start)."""
    chosen = [row for row in rows if row.role in roles]
    names = _names(chosen)
    groups: dict[tuple[str, str, date], list[AttendanceRow]] = defaultdict(list)
    labels: dict[date, tuple[str, date, date]] = {}
    for row in chosen:
        where = labels.get(row.service_date)
        if where is None:
            where = labels[row.service_date] = period_of(row.service_date, period)
        groups[(row.participant_id, row.program, where[1])].append(row)
    result = []
    for key in sorted(groups):
        pid, program, start = key
        group = groups[key]
        attended = [row for row in group if row.minutes_present > 0]
        total = sum((row.minutes_present for row in group), Decimal(0))
        limits = minimums.get(program, _NONE)
        minimum = limits.daily if period == "day" else limits.weekly
        label, _, end = period_of(start, period)
        result.append(
            PeriodTotal(
                participant_id=pid,
                display_name=names[pid],
                program=program,
                period=label,
                period_start=start,
                period_end=end,
                sessions=len(attended),
                services=tuple(sorted({service_of(row) for row in attended})),
                minutes_present=total,
                days_attended=len({row.service_date for row in attended}),
                minimum_minutes=minimum,
                meets_minimum=None if minimum is None else total >= minimum,
            )
        )
    return result


__all__ = [
    "PERIODS",
    "PROGRAM_MINIMUMS",
    "DailyTotal",
    "Minimums",
    "Period",
    "PeriodTotal",
    "WeeklyTotal",
    "daily_totals",
    "period_of",
    "period_totals",
    "service_of",
    "weekly_totals",
    "whole_periods",
]
