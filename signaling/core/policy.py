"""Who may do what: every command's right is checked here, once, before the core decides.

Keeping all permission rules in one table (rather than scattered through handlers) is what
lets a reviewer see at a glance that a client can never admit, mute or remove anyone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from signaling.core import commands as c
from signaling.core.model import SessionState

ErrorCode = Literal["forbidden", "invalid", "not_found", "conflict", "rate_limited"]


@dataclass(frozen=True)
class Rejected:
    """A refused command: the code is for programs, the message for people (never PHI)."""

    code: ErrorCode
    message: str


STAFF_ONLY: tuple[type, ...] = (c.CreateSession, c.IssueInvite, c.RevokeInvite)
SYSTEM_ONLY: tuple[type, ...] = (c.ReportMedia, c.Tick, c.Recover)
CONNECTION: tuple[type, ...] = (c.Connect, c.Disconnect)
THERAPIST_ONLY: tuple[type, ...] = (
    c.Admit,
    c.AdmitAll,
    c.Deny,
    c.Remove,
    c.Mute,
    c.Lock,
    c.End,
    c.OpenBreakouts,
    c.MoveToRoom,
    c.VisitRoom,
    c.RotateRoles,
    c.ExtendBreakouts,
    c.CloseBreakouts,
    c.Broadcast,
    c.SaveBreakoutPlan,
    c.MessageWaiting,
)
STAFF_OR_THERAPIST: tuple[type, ...] = (c.SaveBreakoutPlan,)
ADMITTED_ONLY: tuple[type, ...] = (c.RaiseHand, c.Chat, c.Signal, c.AskForHelp)


def check(state: SessionState, actor: c.Actor, command: object) -> Rejected | None:
    """None when `actor` may issue `command` in `state`, else why not."""
    if isinstance(command, STAFF_ONLY):
        return None if actor.kind == "staff" else Rejected("forbidden", "staff only")
    if not state.exists:
        return Rejected("not_found", "no such session")
    if isinstance(command, STAFF_OR_THERAPIST) and actor.kind == "staff":
        return None
    if isinstance(command, SYSTEM_ONLY):
        return None if actor.kind == "system" else Rejected("forbidden", "server only")
    if actor.kind != "participant":
        return Rejected("forbidden", "participants only")
    if isinstance(command, CONNECTION):
        same = getattr(command, "participant_id", None) == actor.id
        return None if same else Rejected("forbidden", "a connection speaks only for itself")
    me = state.participants.get(actor.id)
    if me is None:
        return Rejected("forbidden", "not in this session")
    if isinstance(command, c.Leave):
        ok = me.status in ("waiting", "admitted")
        return None if ok else Rejected("conflict", "not in the session")
    if me.status != "admitted":
        return Rejected("forbidden", "not admitted yet")
    if isinstance(command, THERAPIST_ONLY):
        return None if me.role == "therapist" else Rejected("forbidden", "therapists only")
    if isinstance(command, ADMITTED_ONLY):
        return None
    return Rejected("invalid", "unknown command")
