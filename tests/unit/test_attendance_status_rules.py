"""The status rules of docs/records.md, as properties of the projection, and the clinic
settings that set their thresholds and the program minimums."""

from __future__ import annotations

import re
import typing
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server.attendance.rows import AttendanceStatus
from server.attendance.totals import PROGRAM_MINIMUMS, Minimums
from server.config import Settings
from server.exports import attendance_service, program_minimums
from signaling.core import events as e
from tests.unit.test_attendance_projection import (
    T0,
    admit,
    arrive,
    end,
    leave,
    one_participant,
    only,
    session,
)

RECORDS_DOC = Path(__file__).resolve().parents[2] / "docs" / "records.md"
thresholds = st.integers(0, 60).map(lambda n: timedelta(minutes=n))


@settings(max_examples=400, deadline=None)
@given(one_participant(), thresholds, thresholds)
def test_each_status_means_what_the_rules_say(
    ledger: tuple[list[e.Event], datetime], late_after: timedelta, early_by: timedelta
) -> None:
    events, as_of = ledger
    row = only(events, as_of=as_of, late_after=late_after, early_by=early_by)
    seen = [ev for ev in events if ev.at <= as_of]
    removed = any(isinstance(ev, e.Removed) for ev in seen)
    denied = any(isinstance(ev, e.Denied) for ev in seen)
    assert (row.status == "removed") == removed
    assert (row.status == "denied") == (denied and not removed)
    if row.status == "no_show":
        assert row.minutes_present == 0, "a no-show has no minutes"
        assert row.time_in is None and row.time_out is None
    if row.time_in is None:
        assert row.status in ("removed", "denied", "no_show")
        return
    if row.status == "late":
        assert row.time_in - T0 > late_after
    if row.status in ("present", "left_early"):
        assert row.time_in - T0 <= late_after
    if row.status == "left_early":
        ended = [ev.at for ev in seen if isinstance(ev, e.SessionEnded)]
        reference = min([*ended, T0 + timedelta(minutes=60)])
        assert row.time_out is not None and reference - row.time_out > early_by


def test_the_thresholds_are_the_clinics_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CIRCLE_LATE_AFTER_MINUTES", "5")
    monkeypatch.setenv("CIRCLE_LEFT_EARLY_MINUTES", "20")
    clinic = Settings.model_validate({})
    db = SimpleNamespace(sessions=SimpleNamespace(sessions_between=None), attendance_rows=None)
    ledger = SimpleNamespace(load=None)
    service = attendance_service(clinic, db, ledger, None)  # type: ignore[arg-type]
    rules = service.rules
    assert (rules.late_after, rules.early_by) == (timedelta(minutes=5), timedelta(minutes=20))
    events = session(arrive(0), admit(6), leave(45), end(60))
    assert only(events, late_after=rules.late_after, early_by=rules.early_by).status == "late"
    assert only(events).status == "left_early", "the defaults: 10 minutes each"


def test_the_defaults_are_ten_minutes_and_the_usual_program_minimums() -> None:
    clinic = Settings.model_validate({})
    assert (clinic.late_after_minutes, clinic.left_early_minutes) == (10, 10)
    assert program_minimums(clinic) == PROGRAM_MINIMUMS


def test_program_minimums_come_from_hours_and_none_means_none(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CIRCLE_IOP_WEEKLY_MINIMUM_HOURS", "9.5")
    monkeypatch.setenv("CIRCLE_PHP_DAILY_MINIMUM_HOURS", "none")
    monkeypatch.setenv("CIRCLE_OP_WEEKLY_MINIMUM_HOURS", "1")
    found = program_minimums(Settings.model_validate({}))
    assert found["IOP"] == Minimums(daily=Decimal(180), weekly=Decimal(570))
    assert found["PHP"] == Minimums(daily=None, weekly=Decimal(1200))
    assert found["OP"] == Minimums(daily=None, weekly=Decimal(60))


def test_the_records_doc_names_every_status_and_setting() -> None:
    text = RECORDS_DOC.read_text()
    for status in typing.get_args(AttendanceStatus):
        assert re.search(rf"`{status}`", text), status
    for name in ("LATE_AFTER_MINUTES", "LEFT_EARLY_MINUTES", "IOP_WEEKLY_MINIMUM_HOURS",
                 "PHP_WEEKLY_MINIMUM_HOURS", "OP_WEEKLY_MINIMUM_HOURS"):
        assert f"CIRCLE_{name}" in text, name
