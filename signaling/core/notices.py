"""Who is told what when something happens: `notice` messages derived from events.

Pure: given the state after the events, it returns (participant id, notice) pairs, and the
gateway only delivers them. Texts are short and carry no other participant's name.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from signaling.core import events as e
from signaling.core.model import MAIN_ROOM, SessionState, is_aside_room, is_clinician

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
        case e.SentToWaiting():
            yield event.participant_id, dict(SENT_TO_WAITING)
        case e.BreakoutWarningDue():
            for pid in in_breakouts(state):
                yield pid, {"kind": "breakout_warning", "text": "One minute left."}
        case e.BreakoutsClosing():
            closes = event.closing_at.isoformat()
            for pid in in_breakouts(state):
                yield pid, {"kind": "breakouts_closing", "closes_at": closes,
                            "text": "Rooms are closing: finish your thought."}
        case e.SecondDeviceArrived() if event.since == event.at:
            # Only a device that starts waiting (not the same one placed again).
            for t in state.admitted():
                if is_clinician(t.role):
                    yield t.id, {"kind": "second_device", "participant_id": event.participant_id,
                                 "text": "A join link was opened on a second device: let it "
                                         "take the person's place, or keep the first."}
            me = state.participants.get(event.participant_id)
            if me is not None and not is_clinician(me.role):
                yield me.id, {"kind": "another_device",
                              "text": "Your join link was opened on another device. You keep "
                                      "your place here unless the therapist lets that device "
                                      "take it."}
        case e.SecondDeviceAllowed() if event.by is not None:
            # Delivered to the first connection, before the edge closes it.
            yield event.participant_id, dict(CONTINUED_ELSEWHERE)
        case e.SecondDeviceAllowed():
            # Nobody decided: the first connection went away. The therapists should know.
            for t in state.admitted():
                if is_clinician(t.role) and t.id != event.participant_id:
                    yield t.id, {"kind": "second_device_moved",
                                 "participant_id": event.participant_id,
                                 "text": "A waiting second device took its person's place: "
                                         "their first device went away."}


SENT_TO_WAITING = {
    "kind": "sent_to_waiting",
    "text": "The therapist has moved you back to the waiting room for a moment.",
}
"""To a participant a clinician sent back to the waiting room (calm: nothing went wrong)."""

CONTINUED_ELSEWHERE = {
    "kind": "continued_elsewhere",
    "text": "This session continued on another device.",
}
"""To a connection whose seat moved to another (allowed, or its own browser resuming in
another window): it is then closed for good."""

SECOND_DEVICE_REPLACED = {
    "kind": "second_device_replaced",
    "text": "This link was opened on yet another device, which waits in this one's place.",
}
"""To a waiting second device that a newer one replaced (it is then closed)."""


def waiting_device_notices(events: Sequence[e.Event]) -> list[Notice]:
    """What a participant's waiting second device is told before the edge closes it
    (participant id, notice); the seat's own notices come from `notices_for`."""
    out: list[Notice] = []
    for event in events:
        match event:
            case e.SecondDeviceRefused():
                out.append((event.participant_id, {
                    "kind": "second_device_refused",
                    "text": "The therapist kept your place on your other device."}))
            case e.SecondDeviceWithdrawn():
                out.append((event.participant_id, {
                    "kind": "second_device_closed",
                    "text": "This device no longer waits to take your place."}))
            case e.Left() | e.GraceExpired():
                out.append((event.participant_id, {
                    "kind": "second_device_closed",
                    "text": "You left this session on your other device."}))
            case e.Denied() | e.Removed():
                out.extend(_notices(SessionState(), event))
    return out


def in_breakouts(state: SessionState) -> list[str]:
    """Admitted participants currently in a breakout room (visiting therapists included)."""
    return [p.id for p in state.admitted() if p.room not in (None, MAIN_ROOM)]


def help_notices(state: SessionState, asker: str) -> list[Notice]:
    """A client asked for help (from a room, an aside or the waiting room): every admitted
    clinician is told, and nobody else; `room` is its room id, or `waiting`."""
    me = state.participants.get(asker)
    if me is None:
        return []
    room = "waiting" if me.status == "waiting" else me.room or MAIN_ROOM
    breakout = state.breakouts.room(room)
    name = (breakout.name if breakout is not None else "the waiting room" if room == "waiting"
            else "an aside" if is_aside_room(room) else "the main room")
    notice = {"kind": "help", "room": room, "participant_id": asker,
              "text": f"Someone in {name} asks for help."}
    return [(t.id, dict(notice)) for t in state.admitted() if is_clinician(t.role)]


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
