"""Wire payloads to core commands: the one place the protocol's shapes meet the core's.

Pure, so the gateway stays a thin adapter. Randomness that a command needs (the auto
planner's seed) is passed in, never drawn here.
"""

from __future__ import annotations

from signaling import protocol as p
from signaling.core import commands as c
from signaling.core.model import BreakoutPlan, PlannedRoom


def command_for(payload: object, seed: int) -> c.Command:
    """The core command a parsed client payload asks for."""
    match payload:
        case p.AdmitPayload():
            return c.Admit(payload.participant_id)
        case p.AdmitAllPayload():
            return c.AdmitAll()
        case p.DenyPayload():
            return c.Deny(payload.participant_id, payload.reason)
        case p.MutePayload():
            return c.Mute(payload.participant_id, payload.kind, payload.muted)
        case p.RemovePayload():
            return c.Remove(payload.participant_id)
        case p.LockPayload():
            return c.Lock(payload.locked)
        case p.EndPayload():
            return c.End()
        case p.SignalPayload():
            return c.Signal(payload.type, payload.sdp)
        case p.ChatPayload():
            return c.Chat(payload.text)
        case p.E2eeKeysPayload():
            return c.DeliverMediaKeys(tuple(
                c.MediaKeyEnvelope(k.to, k.epoch, k.kid, k.wrapped) for k in payload.keys))
        case p.HandPayload():
            return c.RaiseHand(payload.raised)
        case p.CheckinPayload():
            return c.CheckIn(payload.location, payload.region, payload.consent, payload.pledge)
        case p.LeavePayload():
            return c.Leave()
        case p.BreakoutPlanPayload():
            return c.SaveBreakoutPlan(plan_from(payload))
        case p.BreakoutsOpenPayload():
            plan = None if payload.use_saved else plan_from(payload)
            return c.OpenBreakouts(plan=plan, seed=seed)
        case p.BreakoutMovePayload():
            return c.MoveToRoom(payload.participant_id, payload.room)
        case p.BreakoutVisitPayload():
            return c.VisitRoom(payload.room)
        case p.BreakoutRotatePayload():
            return c.RotateRoles()
        case p.BreakoutSwapPayload():
            return c.SwapRoles(payload.room)
        case p.BreakoutExtendPayload():
            return c.ExtendBreakouts(payload.minutes)
        case p.BreakoutsClosePayload():
            return c.CloseBreakouts(payload.grace_s)
        case p.BreakoutBroadcastPayload():
            return c.Broadcast(payload.text)
        case p.BreakoutHelpPayload() | p.HelpPayload():
            return c.AskForHelp()  # `breakout_help` is the older name of `help`
        case p.SendToWaitingPayload():
            return c.SendToWaiting(payload.participant_id)
        case p.AsideOpenPayload():
            return c.OpenAside(payload.participant_id)
        case p.AsideClosePayload():
            return c.CloseAside(payload.participant_id)
        case p.ShareStartPayload():
            return c.StartShare()
        case p.ShareStopPayload():
            return c.StopShare(payload.participant_id)
        case p.SharePolicyPayload():
            return c.SetSharePolicy(payload.clients_may_share)
        case p.WaitingMessagePayload():
            return c.MessageWaiting(payload.text, payload.participant_id)
        case p.SecondDevicePayload():
            return c.DecideSecondDevice(payload.participant_id, payload.allow)
    raise p.ProtocolError("invalid", "unknown event")


def plan_from(payload: p.BreakoutPlanPayload | p.BreakoutsOpenPayload) -> BreakoutPlan:
    """A core plan from its wire form (explicit rooms or auto)."""
    if payload.auto is not None:
        return BreakoutPlan(
            minutes=payload.minutes,
            auto_count=payload.auto.count,
            auto_strategy=payload.auto.strategy,
            scenario=payload.scenario,
        )
    rooms = tuple(
        PlannedRoom(
            name=room.name.strip(),
            scenario=room.scenario,
            participant_ids=tuple(room.participant_ids),
            roles=dict(room.roles),
        )
        for room in payload.rooms or []
    )
    return BreakoutPlan(minutes=payload.minutes, rooms=rooms)
