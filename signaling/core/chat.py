"""Who receives a chat message, and what each sees: the sender's room only, first names
and the sender's handle, never its id, for clients. Pure, like the notices: the edge only
delivers what this returns."""

from __future__ import annotations

from typing import Any

from signaling.core.model import SessionState, is_clinician
from signaling.core.views import first_name, peer_ref


def chat_deliveries(
    state: SessionState, sender_id: str, text: str, at: str
) -> list[tuple[str, dict[str, Any]]]:
    """(receiver id, `chat` payload) for everyone admitted in the sender's room, sender too."""
    sender = state.participants.get(sender_id)
    if sender is None or sender.room is None:
        return []
    return [
        (p.id, {"from": peer_ref(sender, full=is_clinician(p.role)), "handle": sender.handle,
                "name": sender.name if is_clinician(p.role) else first_name(sender.name),
                "text": text, "room": sender.room, "at": at})
        for p in state.admitted()
        if p.room == sender.room
    ]
