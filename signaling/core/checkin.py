"""Check-in: where a client or family member is, and what they agree to, before care starts.

Pure rules used by `session.decide` (who must check in before being admitted, what a
check-in records) and the one reply the edge builds from them (how many `admit_all` left
waiting). The answers feed the record: place of service (POS 10 home, 02 elsewhere), the
patient's state or province, consent to telehealth (docs/records.md).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from signaling.core import commands as c
from signaling.core import events as e
from signaling.core.model import CheckInAnswers, Participant, SessionState, is_clinician
from signaling.core.policy import Rejected
from signaling.protocol import REGION_PATTERN

_REGION = re.compile(REGION_PATTERN)


def valid_region(region: str) -> bool:
    """`CA`, `ON`, `NSW` (2-3 capital letters), or ISO 3166-2 with its country: `US-CA`,
    `CA-ON`, `FR-75` (country, dash, 1-3 capital letters or digits)."""
    return _REGION.fullmatch(region) is not None


def answers(event: e.CheckedIn) -> CheckInAnswers:
    return CheckInAnswers(location=event.location, region=event.region,
                          consent=event.consent, at=event.at, pledge=event.pledge)


def decide_check_in(me: Participant, command: c.CheckIn, now: datetime) -> list[e.Event] | Rejected:
    """Record the answers; the same answers again change nothing (no new event)."""
    if not valid_region(command.region):
        return Rejected("invalid", "region: use a state or province code such as CA or US-CA")
    previous = me.checkin
    if previous is not None and (previous.location, previous.region, previous.consent,
                                 previous.pledge) == (command.location, command.region,
                                                      command.consent, command.pledge):
        return []
    return [e.CheckedIn(at=now, participant_id=me.id, location=command.location,
                        region=command.region, consent=command.consent, pledge=command.pledge)]


def must_check_in(state: SessionState, p: Participant) -> bool:
    """True when the session asks for a check-in before admission and `p` owes one.

    Clients and family members alike: the check-in carries consent to telehealth, which
    everyone who takes part gives. Clinicians never check in."""
    info = state.info
    return (info is not None and info.checkin_required and not is_clinician(p.role)
            and p.checkin is None)


def not_checked_in(p: Participant) -> Rejected:
    """The refusal of `admit`: names the person, for the clinician's ack only (the edge
    logs the code, never the message)."""
    return Rejected("conflict", f"{p.name} has not checked in yet (location and consent)")


def admit_all_reply(state: SessionState, events: Sequence[e.Event]) -> dict[str, Any]:
    """The ack fields of an accepted `admit_all`: how many it admitted, and how many are
    still waiting because they have not checked in (with a sentence saying so)."""
    admitted = sum(isinstance(ev, e.Admitted) for ev in events)
    left = sum(must_check_in(state, p) for p in state.waiting())
    fields: dict[str, Any] = {"admitted": admitted, "left_waiting": left}
    if left:
        fields["message"] = (
            f"Admitted {admitted}; {left} still waiting: "
            f"{'has' if left == 1 else 'have'} not checked in yet"
        )
    return fields
