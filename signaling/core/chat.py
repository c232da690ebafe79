"""Who receives a chat message, and what each sees: the sender's room only, first names
for clients. Pure, like the notices: the edge only delivers what this returns."""

from __future__ import annotations

from typing import Any

from signaling.core.model import SessionState
from signaling.core.views import first_name


def chat_deliveries(
    state: SessionState, sender_id: str, text: str, at: str
) -> list[tuple[str, dict[str, Any]]]:
    """(receiver id, `chat` payload) for everyone admitted in the sender's room, sender too."""
    sender = state.participants.get(sender_id)
    if sender is None or sender.room is None:
        return []
    return [
        (p.id, {"from": sender.id, "name": sender.name if p.role == "therapist"
                else first_name(sender.name), "text": text, "room": sender.room, "at": at})
        for p in state.admitted()
        if p.room == sender.room
    ]
