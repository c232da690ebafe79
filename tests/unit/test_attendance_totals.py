"""Daily and weekly totals per client and the program-minimum flags staff check."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from server.attendance import AttendanceRow, Minimums, daily_totals, weekly_totals
from server.attendance.totals import (
    PeriodTotal,
    period_of,
    period_totals,
    service_of,
    whole_periods,
)

MONDAY = date(2024, 5, 6)


def row(
    day: date,
    minutes: str,
    pid: str = "c1",
    program: str = "IOP",
    session: str = "s",
    role: str = "client",
    name: str = "Ana",
) -> AttendanceRow:
    present = Decimal(minutes)
    return AttendanceRow(
        session_id=f"{session}-{day.isoformat()}",
        service_date=day,
        program=program,  # type: ignore[arg-type]
        kind="group",
        participant_id=pid,
        display_name=name,
        role=role,  # type: ignore[arg-type]
        time_in=datetime(day.year, day.month, day.day, 17, tzinfo=UTC) if present else None,
        time_out=datetime(day.year, day.month, day.day, 18, tzinfo=UTC) if present else None,
        minutes_present=present,
        minutes_waiting=Decimal("0.00"),
        disconnects=0,
        modality="audio-video" if present else "none",
        status="present" if present else "no_show",
    )


def day(n: int) -> date:
    return date.fromordinal(MONDAY.toordinal() + n)


def test_iop_day_at_the_minimum_is_not_flagged() -> None:
    [total] = daily_totals([row(MONDAY, "90.00", session="a"), row(MONDAY, "90.00", session="b")])
    assert total.minutes_present == Decimal("180.00")
    assert total.sessions == 2
    assert total.minimum_minutes == Decimal(180)
    assert total.below_minimum is False


def test_iop_day_a_hundredth_short_is_flagged() -> None:
    [total] = daily_totals([row(MONDAY, "90.00", session="a"), row(MONDAY, "89.99", session="b")])
    assert total.below_minimum is True


def test_php_daily_minimum_and_op_has_none() -> None:
    php, op = daily_totals([row(MONDAY, "170.00", program="PHP"), row(MONDAY, "5.00", "c2", "OP")])
    assert (php.program, php.below_minimum) == ("PHP", True)
    assert (op.program, op.minimum_minutes, op.below_minimum) == ("OP", None, False)


def test_programs_are_totalled_apart() -> None:
    totals = daily_totals(
        [row(MONDAY, "120.00", program="IOP"), row(MONDAY, "60.00", program="OP")]
    )
    assert [(t.program, t.minutes_present, t.below_minimum) for t in totals] == [
        ("IOP", Decimal("120.00"), True),
        ("OP", Decimal("60.00"), False),
    ]


def test_a_no_show_day_is_listed_with_zero_minutes() -> None:
    [total] = daily_totals([row(MONDAY, "0.00")])
    assert (total.sessions, total.minutes_present, total.below_minimum) == (0, Decimal(0), True)


def test_therapists_are_not_totalled_unless_asked() -> None:
    rows = [row(MONDAY, "60.00"), row(MONDAY, "60.00", pid="t1", role="therapist")]
    assert [t.participant_id for t in daily_totals(rows)] == ["c1"]
    both = daily_totals(rows, roles=("client", "therapist"))
    assert [t.participant_id for t in both] == ["c1", "t1"]


def test_daily_totals_are_sorted_and_use_the_latest_name() -> None:
    rows = [
        row(day(1), "10.00", name="Ana L."),
        row(day(0), "10.00", name="Ana"),
        row(day(0), "10.00", pid="a0", name="Bo"),
    ]
    totals = daily_totals(rows)
    assert [(t.participant_id, t.service_date) for t in totals] == [
        ("a0", day(0)),
        ("c1", day(0)),
        ("c1", day(1)),
    ]
    assert {t.display_name for t in totals if t.participant_id == "c1"} == {"Ana L."}


def test_iop_week_of_three_full_days_meets_540() -> None:
    rows = [row(day(d), "90.00", session=s) for d in (0, 2, 4) for s in ("a", "b")]
    [week] = weekly_totals(rows)
    assert (week.iso_week, week.week_start) == ("2024-W19", MONDAY)
    assert (week.days_attended, week.sessions) == (3, 6)
    assert week.minutes_present == Decimal("540.00")
    assert (week.minimum_minutes, week.below_minimum) == (Decimal(540), False)
    assert week.days_below_daily_minimum == 0


def test_iop_week_short_and_a_short_day_counted() -> None:
    rows = [row(day(0), "180.00"), row(day(1), "180.00"), row(day(2), "179.00"), row(day(3), "0")]
    [week] = weekly_totals(rows)
    assert week.minutes_present == Decimal("539.00")
    assert week.below_minimum is True
    assert week.days_attended == 3
    assert week.days_below_daily_minimum == 1  # the absent day is not a "short" day


def test_php_weekly_minimum_is_1200() -> None:
    rows = [row(day(d), "240.00", program="PHP") for d in range(5)]
    [week] = weekly_totals(rows)
    assert (week.minimum_minutes, week.below_minimum) == (Decimal(1200), False)
    [short] = weekly_totals(rows[:4])
    assert short.below_minimum is True


def test_op_week_has_no_minimum() -> None:
    [week] = weekly_totals([row(MONDAY, "50.00", program="OP")])
    assert (week.minimum_minutes, week.below_minimum) == (None, False)


def test_weeks_split_at_monday_and_across_the_year_end() -> None:
    sunday, monday = day(6), day(7)
    weeks = weekly_totals([row(sunday, "60.00"), row(monday, "60.00")])
    assert [w.iso_week for w in weeks] == ["2024-W19", "2024-W20"]
    # 30 Dec 2024 is in ISO week 1 of 2025; 29 Dec 2024 in week 52 of 2024.
    weeks = weekly_totals([row(date(2024, 12, 29), "60"), row(date(2024, 12, 30), "60")])
    assert [(w.iso_week, w.week_start) for w in weeks] == [
        ("2024-W52", date(2024, 12, 23)),
        ("2025-W01", date(2024, 12, 30)),
    ]


def test_minimums_can_be_overridden() -> None:
    strict = {"IOP": Minimums(daily=Decimal(200), weekly=None)}
    [total] = daily_totals([row(MONDAY, "190.00")], minimums=strict)
    assert total.below_minimum is True
    [week] = weekly_totals([row(MONDAY, "190.00")], minimums=strict)
    assert (week.minimum_minutes, week.below_minimum, week.days_below_daily_minimum) == (
        None,
        False,
        1,
    )


# -- per-client totals per period (GET /api/v1/attendance/totals) --------------------------


def test_a_week_of_iop_meets_nine_hours_and_lists_its_services() -> None:
    rows = [row(day(d), "180.00", session=s) for d, s in ((0, "a"), (2, "b"), (4, "c"))]
    rows.append(row(day(1), "0.00", session="d"))  # a no-show: listed, 0 minutes
    [week] = period_totals(rows, "week")
    assert week == PeriodTotal(
        participant_id="c1", display_name="Ana", program="IOP", period="2024-W19",
        period_start=MONDAY, period_end=day(6), sessions=3, services=("group",),
        minutes_present=Decimal("540.00"), days_attended=3,
        minimum_minutes=Decimal(540), meets_minimum=True)
    short = period_totals(rows[:2], "week")[0]
    assert (short.minutes_present, short.meets_minimum) == (Decimal("360.00"), False)


def test_days_use_the_daily_minimum_and_op_has_none() -> None:
    rows = [row(MONDAY, "120.00"), row(MONDAY, "60.00", session="b"),
            row(MONDAY, "45.00", pid="c2", program="OP")]
    iop, op = period_totals(rows, "day")
    assert (iop.period, iop.sessions, iop.days_attended, iop.minimum_minutes,
            iop.meets_minimum) == ("2024-05-06", 2, 1, Decimal(180), True)
    assert (op.program, op.minimum_minutes, op.meets_minimum) == ("OP", None, None)


def test_services_come_from_the_row_or_its_kind() -> None:
    plain = row(MONDAY, "60.00")
    assert service_of(plain) == "group"

    class WithService:  # a row of a build whose sessions carry a service
        service = "medication_management"
        kind = "individual"

    assert service_of(WithService()) == "medication_management"  # type: ignore[arg-type]


def test_weeks_are_monday_to_sunday_and_ranges_widen_to_them() -> None:
    assert period_of(date(2024, 12, 31), "week") == ("2025-W01", date(2024, 12, 30),
                                                      date(2025, 1, 5))
    assert whole_periods(date(2024, 5, 1), date(2024, 5, 31), "week") == (
        date(2024, 4, 29), date(2024, 6, 2))
    assert whole_periods(date(2024, 5, 1), date(2024, 5, 31), "day") == (
        date(2024, 5, 1), date(2024, 5, 31))


def test_custom_minimums_apply() -> None:
    strict = {"IOP": Minimums(daily=None, weekly=Decimal(600))}
    [week] = period_totals([row(MONDAY, "590.00")], "week", strict)
    assert (week.minimum_minutes, week.meets_minimum) == (Decimal(600), False)
    [one_day] = period_totals([row(MONDAY, "590.00")], "day", strict)
    assert one_day.meets_minimum is None


totals_rows = st.lists(
    st.builds(
        row,
        st.integers(0, 27).map(day),
        st.decimals(min_value=0, max_value=300, places=2).map(str)
        | st.just("0.00"),
        pid=st.sampled_from(["c1", "c2", "t1"]),
        program=st.sampled_from(["IOP", "PHP", "OP"]),
        session=st.sampled_from(["a", "b", "c"]),
        role=st.sampled_from(["client", "client", "therapist"]),
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(totals_rows, st.sampled_from(["day", "week"]))
def test_totals_are_exactly_the_sums_of_the_rows(rows: list[AttendanceRow], period: str) -> None:
    totals = period_totals(rows, period)  # type: ignore[arg-type]
    clients = [r for r in rows if r.role == "client"]
    for total in totals:
        mine = [r for r in clients if r.participant_id == total.participant_id
                and r.program == total.program
                and total.period_start <= r.service_date <= total.period_end]
        attended = [r for r in mine if r.minutes_present > 0]
        assert mine, "no total without a row"
        assert total.minutes_present == sum((r.minutes_present for r in mine), Decimal(0))
        assert total.sessions == len(attended)
        assert total.days_attended == len({r.service_date for r in attended})
        assert total.services == tuple(sorted({r.kind for r in attended}))
        if total.minimum_minutes is None:
            assert total.meets_minimum is None
        else:
            assert total.meets_minimum == (total.minutes_present >= total.minimum_minutes)
    assert sum((t.minutes_present for t in totals), Decimal(0)) == sum(
        (r.minutes_present for r in clients), Decimal(0)), "every client row counted once"
    keys = [(t.participant_id, t.program, t.period_start) for t in totals]
    assert keys == sorted(set(keys))
