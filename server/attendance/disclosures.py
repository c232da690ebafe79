"""The accounting of disclosures: the audit record every export writes, and reading them back.

An attendance export hands protected records to someone, so before the data leaves, who
asked (an API key's id, or the CLI user), when, with which filters, in which format and how
many lines left is appended to the ledger's audit stream (encrypted and hash-chained like
every record). `disclosures` reads those records back for `GET /api/v1/disclosures` and
`circle disclosures`. Both sides of the record's shape live here so they cannot drift.

Reading the accounting is not itself a disclosure (no patient record leaves; HIPAA's
accounting, 45 CFR 164.528, is of PHI disclosed), so it is not listed among them; but the
listing names the participants exports were filtered on, so each reading is an audit event
of its own (`disclosures_listed`, `LISTED`), like listing API keys.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, tzinfo
from typing import Any, Final, Literal

EXPORTED: Final = "attendance_exported"
LISTED: Final = "disclosures_listed"

What = Literal["rows", "totals"]
FILTERS: Final[tuple[str, ...]] = (
    "from", "to", "session_id", "participant_id", "program", "period",
)
"""The filters an export record carries (None where not given)."""


def exported_record(
    *, at: datetime, by: str, channel: str, what: What, filters: Mapping[str, Any],
    fmt: str, lines: int, rows: int,
) -> dict[str, Any]:
    """The audit record of one export. `lines`: rows (or totals) that left; `rows`: the
    per-session rows they were made of (the same number for a rows export)."""
    return {
        "type": EXPORTED, "at": at.isoformat(), "by": by, "channel": channel, "what": what,
        **{name: filters.get(name) for name in FILTERS},
        "format": fmt, "rows": lines, "source_rows": rows,
    }


@dataclass(frozen=True, kw_only=True)
class Disclosure:
    """One export, as the audit stream recorded it."""

    seq: int
    """Its position in the audit stream (stable: the stream is append-only)."""
    at: datetime
    by: str
    """``api_key:<id>`` or ``cli:<os user>``."""
    key_id: str | None
    channel: str
    what: What
    filters: dict[str, Any]
    format: str
    rows: int

    def to_json(self) -> dict[str, Any]:
        return {"seq": self.seq, "at": self.at.astimezone(UTC).isoformat().replace(
                    "+00:00", "Z"),
                "by": self.by, "key_id": self.key_id, "channel": self.channel,
                "what": self.what, "filters": self.filters, "format": self.format,
                "rows": self.rows}


def _disclosure(seq: int, record: Mapping[str, Any]) -> Disclosure:
    by = str(record.get("by", ""))
    at = datetime.fromisoformat(record["at"])
    return Disclosure(
        seq=seq,
        at=at if at.tzinfo else at.replace(tzinfo=UTC),
        by=by,
        key_id=by.removeprefix("api_key:") if by.startswith("api_key:") else None,
        channel=str(record.get("channel", "")),
        # Records from before totals existed are rows exports and have no program/period.
        what="totals" if record.get("what") == "totals" else "rows",
        filters={name: record.get(name) for name in FILTERS},
        format=str(record.get("format", "")),
        rows=int(record.get("rows", 0)),
    )


def disclosures(
    audit: Sequence[Mapping[str, Any]],
    from_date: date | None,
    to_date: date | None,
    tz: tzinfo = UTC,
) -> list[Disclosure]:
    """Every export in the audit records `audit` (the whole stream, in order) made on a
    day in [from_date, to_date] in the clinic's zone (either bound may be None), oldest
    first."""
    found = []
    for seq, record in enumerate(audit, start=1):
        if record.get("type") != EXPORTED:
            continue
        item = _disclosure(seq, record)
        day = item.at.astimezone(tz).date()
        if (from_date is None or day >= from_date) and (to_date is None or day <= to_date):
            found.append(item)
    return found


LoadAudit = Callable[[], Awaitable[list[Mapping[str, Any]]]]
AppendAudit = Callable[[dict[str, Any]], Awaitable[int]]


async def list_disclosures(
    load_audit: LoadAudit, append_audit: AppendAudit, from_date: date | None,
    to_date: date | None, *, by: str, channel: str, now: datetime, tz: tzinfo = UTC,
) -> list[Disclosure]:
    """`disclosures` over the audit stream, the reading itself recorded (`LISTED`) first."""
    if from_date is not None and to_date is not None and to_date < from_date:
        raise ValueError("to is before from")
    found = disclosures(await load_audit(), from_date, to_date, tz)
    await append_audit({
        "type": LISTED, "at": now.isoformat(), "by": by, "channel": channel,
        "from": from_date.isoformat() if from_date else None,
        "to": to_date.isoformat() if to_date else None, "count": len(found),
    })
    return found
