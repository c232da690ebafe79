"""Derive the data plane's rules from the control plane's state.

The relay never decides who hears whom: it is told, by this pure function, after every
change. That keeps mutes, rooms and listen-only roles enforced in one place.
"""

from __future__ import annotations

from signaling.core.model import MuteKind, Participant, SessionState, is_observer
from signaling.ports import MediaGrant, MediaPlan

LISTEN_ONLY_ROLES = frozenset({"observer"})
"""Breakout roles whose media the relay drops while they hold the role."""


def may_send(p: Participant, kind: MuteKind) -> bool:
    """Whether the relay forwards `kind` from `p` now (what its grant says)."""
    if not (p.present and p.connected and p.room is not None):
        return False
    if p.breakout_role in LISTEN_ONLY_ROLES or is_observer(p.role):
        return False  # a listen-only breakout role, or an observer (the invite role): never
    return not (p.muted_audio if kind == "audio" else p.muted_video)


def may_share(p: Participant) -> bool:
    """Whether the relay forwards `p`'s screen track now: only while its share holds
    (`Participant.sharing`), whatever its camera mute; never from listen-only roles."""
    return p.sharing and p.breakout_role not in LISTEN_ONLY_ROLES and not is_observer(p.role)


def plan_for(state: SessionState) -> MediaPlan:
    """Who has a media path now: admitted, connected participants, in their rooms."""
    if state.info is None:
        raise ValueError("no media plan for a session never created")
    grants: dict[str, MediaGrant] = {}
    if not state.ended:
        for p in state.admitted():
            if not p.connected or p.room is None:
                continue
            grants[p.id] = MediaGrant(
                participant_id=p.id,
                room=p.room,
                send_audio=may_send(p, "audio"),
                send_video=may_send(p, "video"),
                handle=p.handle,
                send_screen=may_share(p),
            )
    return MediaPlan(session_id=state.info.id, grants=grants)
