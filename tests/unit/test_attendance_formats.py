"""CSV and JSON exports: the contract's columns, value rendering, and spreadsheet safety."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.attendance import (
    COLUMNS,
    REDISCLOSURE_NOTICE,
    AttendanceRow,
    daily_totals,
    daily_totals_to_csv,
    daily_totals_to_json,
    to_csv,
    to_json,
    weekly_totals,
    weekly_totals_to_csv,
    weekly_totals_to_json,
)
from server.attendance.formats import _CELL_BY_TYPE, _csv_cell

CONTRACT_HEADER = (
    "session_id,service_date,program,kind,participant_id,display_name,role,time_in,time_out,"
    "minutes_present,minutes_waiting,disconnects,modality,breakout_rooms,breakout_roles,status"
)
BILLING_COLUMNS = ("service", "billable", "place_of_service", "patient_region",
                   "telehealth_consent")
"""Issue 13's columns, appended after the contract's (other extensions may follow them)."""


def row(**changes: object) -> AttendanceRow:
    values: dict[str, object] = {
        "session_id": "s1",
        "service_date": date(2024, 5, 6),
        "program": "IOP",
        "kind": "group",
        "participant_id": "c1",
        "display_name": "Ana Lopez",
        "role": "client",
        "time_in": datetime(2024, 5, 6, 17, 0, 0, 123456, tzinfo=UTC),
        "time_out": datetime(2024, 5, 6, 17, 45, 30, tzinfo=UTC),
        "minutes_present": Decimal("45.50"),
        "minutes_waiting": Decimal("3.00"),
        "disconnects": 1,
        "modality": "audio-video",
        "breakout_rooms": ("Room 1", "Room 2"),
        "breakout_roles": ("protagonist", "observer"),
        "status": "present",
    }
    values.update(changes)
    return AttendanceRow(**values)  # type: ignore[arg-type]


def parse(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_csv_header_is_the_contract_columns_in_order_then_the_appended_ones() -> None:
    text = to_csv([row()])
    contract = tuple(CONTRACT_HEADER.split(","))
    assert text.splitlines()[0] == ",".join(COLUMNS)
    assert COLUMNS[: len(contract)] == contract, "nothing renamed, reordered or inserted"
    extensions = COLUMNS[len(contract):]
    assert [c for c in extensions if c in BILLING_COLUMNS] == list(BILLING_COLUMNS)


def test_csv_of_no_rows_is_just_the_header() -> None:
    assert to_csv([]) == ",".join(COLUMNS) + "\r\n"


def test_csv_values() -> None:
    [got] = parse(to_csv([row()]))
    assert got == {
        "session_id": "s1",
        "service_date": "2024-05-06",
        "program": "IOP",
        "kind": "group",
        "participant_id": "c1",
        "display_name": "Ana Lopez",
        "role": "client",
        "time_in": "2024-05-06T17:00:00Z",
        "time_out": "2024-05-06T17:45:30Z",
        "minutes_present": "45.50",
        "minutes_waiting": "3.00",
        "disconnects": "1",
        "modality": "audio-video",
        "breakout_rooms": "Room 1;Room 2",
        "breakout_roles": "protagonist;observer",
        "status": "present",
        "service": "",
        "billable": "false",
        "place_of_service": "",
        "patient_region": "",
        "telehealth_consent": "",
        "minutes_video": "0.00",
        "minutes_audio": "0.00",
        "minutes_speaking": "0.00",
    }


def test_csv_never_admitted_has_empty_times_and_zero_minutes() -> None:
    [got] = parse(
        to_csv(
            [
                row(
                    time_in=None,
                    time_out=None,
                    minutes_present=Decimal("0.00"),
                    breakout_rooms=(),
                    breakout_roles=(),
                    status="no_show",
                )
            ]
        )
    )
    assert (got["time_in"], got["time_out"]) == ("", "")
    assert got["minutes_present"] == "0.00"
    assert (got["breakout_rooms"], got["breakout_roles"]) == ("", "")


@pytest.mark.parametrize("name", ['=HYPERLINK("x")', "+1+1", "-2+3", "@SUM(A1)", "\tx"])
def test_csv_formula_injection_gets_a_leading_apostrophe(name: str) -> None:
    [got] = parse(to_csv([row(display_name=name)]))
    assert got["display_name"] == "'" + name


def test_csv_ordinary_names_are_untouched_and_quoting_is_rfc4180() -> None:
    name = 'O\'Brien, "Jo" = ok'
    [got] = parse(to_csv([row(display_name=name)]))
    assert got["display_name"] == name


def test_json_rows_have_the_contract_keys_in_order_and_the_notice() -> None:
    doc = to_json([row()], REDISCLOSURE_NOTICE)
    assert doc["notice"] == REDISCLOSURE_NOTICE
    [got] = doc["rows"]
    assert tuple(got) == COLUMNS
    assert got["minutes_present"] == 45.5
    assert got["time_in"] == "2024-05-06T17:00:00Z"
    assert got["breakout_rooms"] == ["Room 1", "Room 2"]
    assert got["display_name"] == "Ana Lopez"
    json.dumps(doc)  # serialisable as is


def test_json_notice_defaults_to_part_2_and_can_be_omitted() -> None:
    assert to_json([])["notice"] == REDISCLOSURE_NOTICE
    assert to_json([], None) == {"rows": [], "notice": None}


def test_json_never_admitted_has_null_times() -> None:
    [got] = to_json([row(time_in=None, time_out=None)])["rows"]
    assert (got["time_in"], got["time_out"]) == (None, None)


def test_redisclosure_notice_says_what_part_2_requires() -> None:
    text = REDISCLOSURE_NOTICE
    assert "42 CFR part 2" in text
    assert "prohibit" in text
    assert "further disclosure" in text
    assert "written consent" in text
    assert "NOT sufficient" in text


def test_totals_csv_and_json() -> None:
    rows = [
        row(display_name="=cmd", minutes_present=Decimal("90.00")),
        row(session_id="s2", display_name="=cmd", minutes_present=Decimal("60.25")),
    ]
    daily = daily_totals(rows)
    [d] = parse(daily_totals_to_csv(daily))
    assert d == {
        "participant_id": "c1",
        "display_name": "'=cmd",
        "program": "IOP",
        "service_date": "2024-05-06",
        "sessions": "2",
        "minutes_present": "150.25",
        "minimum_minutes": "180.00",
        "below_minimum": "true",
    }
    [w] = parse(weekly_totals_to_csv(weekly_totals(rows)))
    assert (w["iso_week"], w["week_start"], w["minutes_present"]) == (
        "2024-W19",
        "2024-05-06",
        "150.25",
    )
    assert (w["minimum_minutes"], w["below_minimum"], w["days_below_daily_minimum"]) == (
        "540.00",
        "true",
        "1",
    )
    dj = daily_totals_to_json(daily)
    assert dj["notice"] == REDISCLOSURE_NOTICE
    assert dj["daily"][0]["minutes_present"] == 150.25
    assert dj["daily"][0]["below_minimum"] is True
    wj = weekly_totals_to_json(weekly_totals(rows), None)
    assert wj["notice"] is None
    assert wj["weekly"][0]["iso_week"] == "2024-W19"
    json.dumps(dj)
    json.dumps(wj)


@given(st.one_of(
    st.none(), st.booleans(), st.integers(), st.text(),
    st.decimals(allow_nan=False, allow_infinity=False, places=2), st.dates(),
    st.datetimes(timezones=st.just(UTC)), st.lists(st.text(), max_size=3).map(tuple),
    st.lists(st.integers(), max_size=3),
))
def test_the_per_type_cell_formatters_agree_with_the_general_one(value: object) -> None:
    assert _CELL_BY_TYPE[type(value)](value) == _csv_cell(value)
