"""The attendance row: one participant in one session, as billing and the chart need it.

A frozen value with exact types (datetimes, Decimal minutes) so that totals and filters
work on facts; turning it into text (ISO strings, "45.50", ';'-joined lists) is the job of
`formats`, in one place, so CSV and JSON can never disagree about a value.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Final, Literal

from signaling.core.model import Program, Role, Service, SessionKind

AttendanceStatus = Literal["removed", "denied", "no_show", "late", "left_early", "present"]
"""One value per row; precedence (first that applies wins) is documented in `projection`."""

PlaceOfService = Literal["10", "02", ""]
"""CMS place of service of a telehealth row: 10 the patient's home, 02 elsewhere, "" unknown."""

Modality = Literal["audio-video", "audio-only", "none"]
"""From the minutes of video and audio that flowed: payers map it to modifier 95 or 93."""

COLUMNS: Final[tuple[str, ...]] = (
    "session_id",
    "service_date",
    "program",
    "kind",
    "participant_id",
    "display_name",
    "role",
    "time_in",
    "time_out",
    "minutes_present",
    "minutes_waiting",
    "disconnects",
    "modality",
    "breakout_rooms",
    "breakout_roles",
    "status",
    "service",
    "billable",
    "place_of_service",
    "patient_region",
    "telehealth_consent",
    "minutes_video",
    "minutes_audio",
    "minutes_speaking",
)
"""The v1 contract's columns, in contract order (the CSV header and the JSON keys); later
columns are appended, never inserted, so readers by position keep working."""

MINUTE_QUANTUM: Final = Decimal("0.01")


def minutes(seconds: Decimal) -> Decimal:
    """Seconds as minutes with two decimals, rounded half-up.

    Decimal rather than float so that 45.505 minutes is 45.51 on every platform and so
    that daily sums of exported values add up exactly to what staff see in the rows.
    """
    return (seconds / 60).quantize(MINUTE_QUANTUM, rounding=ROUND_HALF_UP)


@dataclass(frozen=True, kw_only=True)
class AttendanceRow:
    """One participant's attendance in one session.

    `time_in`/`time_out` are aware UTC datetimes (None when never admitted);
    `minutes_present`/`minutes_waiting` are Decimals already rounded to two places.
    """

    session_id: str
    service_date: date
    program: Program
    kind: SessionKind
    participant_id: str
    display_name: str
    role: Role
    time_in: datetime | None
    time_out: datetime | None
    minutes_present: Decimal
    minutes_waiting: Decimal
    disconnects: int
    modality: Modality
    breakout_rooms: tuple[str, ...] = ()
    breakout_roles: tuple[str, ...] = ()
    status: AttendanceStatus
    service: Service | None = None
    """The session's service (None only in rows built by hand: totals fall back to kind)."""
    billable: bool = False
    """True for clients only (`model.is_billable`); set by the projection."""
    place_of_service: PlaceOfService = ""
    """From the last check-in before the end of presence: "10" home, "02" elsewhere."""
    patient_region: str = ""
    """State or province from that check-in (`CA`, `US-CA`); "" without one."""
    telehealth_consent: bool | None = None
    """Consent to telehealth from that check-in; None without one."""
    minutes_video: Decimal | None = Decimal("0.00")
    """Minutes present in which the participant's video reached the relay allowed (not
    muted): the basis of `modality`. None in sessions recorded before the relay measured
    flows (docs/records.md, "Modality")."""
    minutes_audio: Decimal | None = Decimal("0.00")
    """The same for audio."""
    minutes_speaking: Decimal = Decimal("0.00")
    """Minutes the participant spoke: audio the relay forwarded whose RTP audio level was
    speech (docs/records.md, "Talk time"); 0.00 in sessions recorded before it measured."""


_ROLE_ORDER: Final[dict[str, int]] = {"therapist": 0, "co_therapist": 0, "client": 1,
                                      "family": 2}


def row_order(row: AttendanceRow) -> tuple[date, str, int, str]:
    """Sort key of every export: service date, session, therapists first, participant id.

    Therapists lead each session's block because the chart reader and the biller look
    for the rendering provider first; participant id (not name) breaks ties so the order
    is stable across renames and never depends on who typed a name how.
    """
    return (row.service_date, row.session_id, _ROLE_ORDER.get(row.role, 2), row.participant_id)
