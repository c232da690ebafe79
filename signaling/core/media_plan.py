"""Derive the data plane's rules from the control plane's state.

The relay never decides who hears whom: it is told, by this pure function, after every
change. That keeps mutes, rooms and listen-only roles enforced in one place.
"""

from __future__ import annotations

from signaling.core.model import SessionState
from signaling.ports import MediaGrant, MediaPlan

LISTEN_ONLY_ROLES = frozenset({"observer"})
"""Breakout roles whose media the relay drops while they hold the role."""


def plan_for(state: SessionState) -> MediaPlan:
    """Who has a media path now: admitted, connected participants, in their rooms."""
    assert state.info is not None
    grants: dict[str, MediaGrant] = {}
    if not state.ended:
        for p in state.admitted():
            if not p.connected or p.room is None:
                continue
            listen_only = p.breakout_role in LISTEN_ONLY_ROLES
            grants[p.id] = MediaGrant(
                participant_id=p.id,
                room=p.room,
                send_audio=not (p.muted_audio or listen_only),
                send_video=not (p.muted_video or listen_only),
            )
    return MediaPlan(session_id=state.info.id, grants=grants)
