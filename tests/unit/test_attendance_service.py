"""The export service over in-memory fakes of the ledger and the session index."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from server.attendance import AttendanceService
from signaling.core import events as e
from signaling.core.model import Program, Role

PACIFIC = ZoneInfo("America/Los_Angeles")
AS_OF = datetime(2024, 6, 1, tzinfo=UTC)


def session_records(
    sid: str,
    starts_at: datetime,
    people: list[tuple[str, Role]],
    program: Program = "IOP",
) -> list[dict[str, Any]]:
    """A whole session, everyone present for its 60 minutes, as stored ledger records."""
    events: list[e.Event] = [
        e.SessionCreated(
            at=starts_at - timedelta(days=1),
            session_id=sid,
            title="t",
            kind="group",
            program=program,
            starts_at=starts_at,
            minutes=60,
            reconnect_grace_s=60,
            created_by="key1",
        )
    ]
    for pid, role in people:
        events.append(
            e.InviteIssued(
                at=starts_at - timedelta(hours=1),
                participant_id=pid,
                display_name=pid.upper(),
                role=role,
                token_id=f"tok-{pid}",
                expires_at=starts_at + timedelta(hours=2),
                issued_by="key1",
            )
        )
    for pid, role in people:
        events.append(e.Arrived(at=starts_at, participant_id=pid, name=pid, role=role))
        events.append(e.Admitted(at=starts_at, participant_id=pid, by=None))
        events.append(
            e.MediaPublished(at=starts_at, participant_id=pid, kinds=frozenset({"audio", "video"}))
        )
    events.append(e.SessionEnded(at=starts_at + timedelta(minutes=60), by="t1"))
    return [e.to_record(ev) for ev in events]


class Fakes:
    """A ledger (stream -> records) and an index keyed by UTC date, like a careless setup."""

    def __init__(self) -> None:
        self.ledger: dict[str, list[dict[str, Any]]] = {}
        self.index: list[tuple[date, str]] = []
        self.index_calls: list[tuple[date, date]] = []
        self.loads: list[str] = []

    def add(self, sid: str, starts_at: datetime, people: list[tuple[str, Role]]) -> None:
        self.ledger[sid] = session_records(sid, starts_at, people)
        self.index.append((starts_at.astimezone(UTC).date(), sid))

    async def load(self, sid: str) -> list[Mapping[str, Any]]:
        self.loads.append(sid)
        return list(self.ledger.get(sid, []))

    async def between(self, start: date, end: date) -> list[str]:
        self.index_calls.append((start, end))
        return [sid for day, sid in sorted(self.index) if start <= day <= end]

    def service(self) -> AttendanceService:
        return AttendanceService(self.load, self.between, PACIFIC)


def at(y: int, mo: int, d: int, h: int) -> datetime:
    """A clinic-local (Pacific) time."""
    return datetime(y, mo, d, h, tzinfo=PACIFIC)


@pytest.fixture
def fakes() -> Fakes:
    f = Fakes()
    f.add(
        "s-mon-eve", at(2024, 5, 6, 18), [("c2", "client"), ("t1", "therapist"), ("c1", "client")]
    )
    f.add("s-mon-am", at(2024, 5, 6, 9), [("c1", "client"), ("t2", "therapist")])
    f.add("s-tue", at(2024, 5, 7, 9), [("c1", "client"), ("t1", "therapist")])
    f.add("s-sun", at(2024, 5, 5, 18), [("c1", "client")])
    return f


def keys(rows: list[Any]) -> list[tuple[str, str, str]]:
    return [(r.service_date.isoformat(), r.session_id, r.participant_id) for r in rows]


async def test_a_day_in_the_clinic_zone_with_sorted_rows(fakes: Fakes) -> None:
    rows = await fakes.service().export(date(2024, 5, 6), date(2024, 5, 6), as_of=AS_OF)
    # The 6 pm session is 01:00 UTC on the 7th in the index, but is billed on the 6th;
    # Sunday's 6 pm session is on Monday in UTC but must not appear.
    assert keys(rows) == [
        ("2024-05-06", "s-mon-am", "t2"),
        ("2024-05-06", "s-mon-am", "c1"),
        ("2024-05-06", "s-mon-eve", "t1"),
        ("2024-05-06", "s-mon-eve", "c1"),
        ("2024-05-06", "s-mon-eve", "c2"),
    ]
    assert fakes.index_calls == [(date(2024, 5, 5), date(2024, 5, 7))]
    assert all(r.minutes_present == 60 and r.modality == "audio-video" for r in rows)


async def test_a_range_is_inclusive_and_sorted_by_date_first(fakes: Fakes) -> None:
    rows = await fakes.service().export(date(2024, 5, 5), date(2024, 5, 7), as_of=AS_OF)
    assert [k[:2] for k in keys(rows)] == [
        ("2024-05-05", "s-sun"),
        ("2024-05-06", "s-mon-am"),
        ("2024-05-06", "s-mon-am"),
        ("2024-05-06", "s-mon-eve"),
        ("2024-05-06", "s-mon-eve"),
        ("2024-05-06", "s-mon-eve"),
        ("2024-05-07", "s-tue"),
        ("2024-05-07", "s-tue"),
    ]


async def test_participant_filter(fakes: Fakes) -> None:
    rows = await fakes.service().export(
        date(2024, 5, 1), date(2024, 5, 31), participant_id="c1", as_of=AS_OF
    )
    assert [r.session_id for r in rows] == ["s-sun", "s-mon-am", "s-mon-eve", "s-tue"]


async def test_session_filter_reads_only_that_ledger_and_keeps_the_date_range(
    fakes: Fakes,
) -> None:
    service = fakes.service()
    rows = await service.export(
        date(2024, 5, 6), date(2024, 5, 6), session_id="s-mon-eve", as_of=AS_OF
    )
    assert {r.session_id for r in rows} == {"s-mon-eve"}
    assert fakes.loads == ["s-mon-eve"]
    assert fakes.index_calls == []
    outside = await service.export(
        date(2024, 5, 7), date(2024, 5, 7), session_id="s-mon-eve", as_of=AS_OF
    )
    assert outside == []


async def test_unknown_and_empty_sessions_are_skipped(fakes: Fakes) -> None:
    fakes.index.append((date(2024, 5, 6), "s-ghost"))  # in the index, not in the ledger
    fakes.index.append((date(2024, 5, 6), "s-mon-am"))  # listed twice
    rows = await fakes.service().export(date(2024, 5, 6), date(2024, 5, 6), as_of=AS_OF)
    assert len(rows) == 5
    assert fakes.loads.count("s-mon-am") == 1


async def test_records_of_unknown_types_are_ignored(fakes: Fakes) -> None:
    fakes.ledger["s-tue"].insert(2, {"type": "export_recorded", "at": "2024-05-07T00:00:00Z"})
    rows = await fakes.service().export(date(2024, 5, 7), date(2024, 5, 7), as_of=AS_OF)
    assert len(rows) == 2


async def test_a_malformed_known_record_is_an_error(fakes: Fakes) -> None:
    fakes.ledger["s-tue"].append({"type": "left", "at": "not a time", "participant_id": "c1"})
    with pytest.raises(ValueError):
        await fakes.service().export(date(2024, 5, 7), date(2024, 5, 7), as_of=AS_OF)


async def test_a_backwards_range_is_refused(fakes: Fakes) -> None:
    with pytest.raises(ValueError, match="before"):
        await fakes.service().export(date(2024, 5, 7), date(2024, 5, 6), as_of=AS_OF)


async def test_as_of_reaches_the_projection(fakes: Fakes) -> None:
    mid = at(2024, 5, 7, 9) + timedelta(minutes=30)
    fakes.ledger["s-tue"] = fakes.ledger["s-tue"][:-1]  # not ended yet
    rows = await fakes.service().export(date(2024, 5, 7), date(2024, 5, 7), as_of=mid)
    assert {r.minutes_present for r in rows} == {30}


# -- what a request without dates means (docs/records.md) ---------------------------------


async def test_a_session_alone_is_every_row_of_it_whatever_its_date(fakes: Fakes) -> None:
    rows = await fakes.service().export(None, None, session_id="s-mon-eve", as_of=AS_OF)
    assert {r.session_id for r in rows} == {"s-mon-eve"} and len(rows) == 3
    assert fakes.loads == ["s-mon-eve"] and fakes.index_calls == []


async def test_a_participant_alone_is_their_rows_over_all_time(fakes: Fakes) -> None:
    rows = await fakes.service().export(None, None, participant_id="c1", as_of=AS_OF)
    assert [r.session_id for r in rows] == ["s-sun", "s-mon-am", "s-mon-eve", "s-tue"]
    assert fakes.index_calls == [(date.min, date.max)]


async def test_one_bound_with_a_participant_is_open_on_the_other_side(fakes: Fakes) -> None:
    since = await fakes.service().export(date(2024, 5, 6), None, participant_id="c1",
                                         as_of=AS_OF)
    assert [r.session_id for r in since] == ["s-mon-am", "s-mon-eve", "s-tue"]
    until = await fakes.service().export(None, date(2024, 5, 5), participant_id="c1",
                                         as_of=AS_OF)
    assert [r.session_id for r in until] == ["s-sun"]
    assert fakes.index_calls[-2:] == [(date(2024, 5, 5), date.max), (date.min, date(2024, 5, 6))]


@pytest.mark.parametrize(("start", "end", "message"), [
    (None, None, "missing query parameter from"),
    (date(2024, 5, 1), None, "missing query parameter to"),
    (None, date(2024, 5, 1), "missing query parameter from"),
    (date(2024, 1, 1), date(2025, 1, 1), "at most 366 days"),
])
async def test_a_range_alone_needs_both_dates_within_a_year(
    fakes: Fakes, start: date | None, end: date | None, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        await fakes.service().export(start, end, as_of=AS_OF)
    assert fakes.loads == []


async def test_a_leap_year_is_one_range(fakes: Fakes) -> None:
    rows = await fakes.service().export(date(2024, 1, 1), date(2024, 12, 31), as_of=AS_OF)
    assert len(rows) == 8


async def test_program_filter_and_progress(fakes: Fakes) -> None:
    fakes.ledger["s-op"] = session_records("s-op", at(2024, 5, 6, 12), [("c1", "client")],
                                           program="OP")
    fakes.index.append((date(2024, 5, 6), "s-op"))
    seen: list[tuple[int, int]] = []
    rows = await fakes.service().export(date(2024, 5, 6), date(2024, 5, 6), program="OP",
                                        as_of=AS_OF, progress=lambda *p: seen.append(p))
    assert [(r.session_id, r.program) for r in rows] == [("s-op", "OP")]
    assert seen == [(5, 5)], "the index is read a day wider each side"


async def test_progress_comes_per_batch(fakes: Fakes, monkeypatch: pytest.MonkeyPatch) -> None:
    from server.attendance import service

    monkeypatch.setattr(service, "BATCH_SESSIONS", 2)
    seen: list[tuple[int, int]] = []
    await fakes.service().export(date(2024, 5, 5), date(2024, 5, 7), as_of=AS_OF,
                                 progress=lambda *p: seen.append(p))
    assert seen == [(2, 4), (4, 4)]
