"""Who may do what: every command's right is checked here, once, before the core decides.

Keeping all permission rules in one table (rather than scattered through handlers) is what
lets a reviewer see at a glance that a client can never admit, mute (anyone but
themselves) or remove anyone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from signaling.core import commands as c
from signaling.core.model import SessionState, is_clinician, is_observer

ErrorCode = Literal["forbidden", "invalid", "not_found", "conflict", "rate_limited"]


@dataclass(frozen=True)
class Rejected:
    """A refused command: the code is for programs, the message for people (never PHI,
    except a name in the ack to the clinician who asked; the edge logs only the code)."""

    code: ErrorCode
    message: str


STAFF_ONLY: tuple[type, ...] = (c.CreateSession, c.IssueInvite, c.RevokeInvite)
SYSTEM_ONLY: tuple[type, ...] = (c.ReportMedia, c.ReportMediaFlow, c.ReportTalk, c.Tick,
                                  c.Recover)
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
    c.SwapRoles,
    c.ExtendBreakouts,
    c.CloseBreakouts,
    c.Broadcast,
    c.SaveBreakoutPlan,
    c.MessageWaiting,
    c.DecideSecondDevice,
    c.SendToWaiting,
    c.OpenAside,
    c.CloseAside,
    c.SetSharePolicy,
)
STAFF_OR_THERAPIST: tuple[type, ...] = (c.SaveBreakoutPlan,)
ADMITTED_ONLY: tuple[type, ...] = (c.RaiseHand, c.Chat, c.Signal, c.AskForHelp,
                                    c.StartShare, c.StopShare, c.DeliverMediaKeys)


SHARE_ROLES = frozenset({"client", "family"})
"""Roles besides clinicians that may share a screen once `clients_may_share` is on
(observers never publish)."""


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
    if isinstance(command, c.AskForHelp):
        # From anywhere: the main room, a breakout, an aside, or the waiting room.
        ok = me.status in ("waiting", "admitted")
        return None if ok else Rejected("conflict", "not in the session")
    if isinstance(command, c.CheckIn):
        if is_clinician(me.role) or is_observer(me.role):
            return Rejected("forbidden", "only clients and family members check in")
        ok = me.status in ("waiting", "admitted")
        return None if ok else Rejected("conflict", "not in the session")
    if me.status != "admitted":
        return Rejected("forbidden", "not admitted yet")
    if isinstance(command, c.Mute) and command.participant_id == actor.id:
        return None  # anyone admitted mutes themselves (lifting a clinician's: the core)
    if isinstance(command, c.StartShare):
        ok = is_clinician(me.role) or (state.clients_may_share and me.role in SHARE_ROLES)
        return None if ok else Rejected("forbidden", "the therapist has not allowed sharing")
    if isinstance(command, c.StopShare) and command.participant_id not in (None, actor.id):
        return None if is_clinician(me.role) else Rejected("forbidden", "therapists only")
    if isinstance(command, THERAPIST_ONLY):
        # Every clinician role: nothing is reserved to the lead therapist (model.CLINICIAN_ROLES).
        return None if is_clinician(me.role) else Rejected("forbidden", "therapists only")
    if isinstance(command, c.Chat) and is_observer(me.role) and not (
            state.info is not None and state.info.observers_may_chat):
        return Rejected("forbidden", "observers do not chat in this session")
    if isinstance(command, ADMITTED_ONLY):
        return None
    return Rejected("invalid", "unknown command")
