"""Who is told what when something happens: `notice` messages derived from events.

Pure: given the state after the events, it returns (participant id, notice) pairs, and the
gateway only delivers them. Texts are short and carry no other participant's name.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from signaling.core import events as e
from signaling.core.model import MAIN_ROOM, SessionState

Notice = tuple[str, dict[str, Any]]


def notices_for(state: SessionState, events: Sequence[e.Event]) -> list[Notice]:
    """The notices `events` cause, in order."""
    out: list[Notice] = []
    for event in events:
        out.extend(_notices(state, event))
    return out


def _notices(state: SessionState, event: e.Event) -> Iterable[Notice]:
    match event:
        case e.Denied():
            yield event.participant_id, {
                "kind": "denied", "text": event.reason or "You were not admitted."
            }
        case e.Removed():
            yield event.participant_id, {
                "kind": "removed", "text": "You were removed from the session."
            }
        case e.BreakoutWarningDue():
            for pid in in_breakouts(state):
                yield pid, {"kind": "breakout_warning", "text": "One minute left."}
        case e.BreakoutsClosing():
            closes = event.closing_at.isoformat()
            for pid in in_breakouts(state):
                yield pid, {"kind": "breakouts_closing", "closes_at": closes,
                            "text": "Rooms are closing: finish your thought."}


def in_breakouts(state: SessionState) -> list[str]:
    """Admitted participants currently in a breakout room (visiting therapists included)."""
    return [p.id for p in state.admitted() if p.room not in (None, MAIN_ROOM)]


def help_notices(state: SessionState, asker: str) -> list[Notice]:
    """A client asked for help: every therapist is told which room needs them."""
    me = state.participants.get(asker)
    if me is None:
        return []
    room = me.room or MAIN_ROOM
    breakout = state.breakouts.room(room)
    name = breakout.name if breakout is not None else "the main room"
    notice = {"kind": "help", "room": room, "participant_id": asker,
              "text": f"Someone in {name} asks for help."}
    return [(t.id, dict(notice)) for t in state.admitted() if t.role == "therapist"]


def broadcast_notices(state: SessionState, text: str) -> list[Notice]:
    """A therapist's broadcast reaches every admitted participant, in every room."""
    return [(p.id, {"kind": "broadcast", "text": text}) for p in state.admitted()]


def waiting_notices(state: SessionState, text: str, participant_id: str | None) -> list[Notice]:
    """A therapist's message to the waiting room: to one waiting client, or to all."""
    return [
        (p.id, {"kind": "message", "text": text})
        for p in state.waiting()
        if participant_id is None or p.id == participant_id
    ]
