"""The v1 wire contract: one pydantic model per Socket.IO event, in both directions.

This is the only module of the project that `client/` imports, so the Python client, the
gateway and docs/protocol.md describe the same shapes. Every client payload is parsed
here with extra fields forbidden and lengths capped, so malformed input is refused with
an `invalid` error before it reaches the core.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

MAX_EVENT_BYTES = 64 * 1024
"""Largest client payload handled; bigger ones get an `invalid` ack (SDPs are ~5-20 KB)."""

Id = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:@-]+$")]
ShortText = Annotated[str, Field(max_length=500)]
ChatText = Annotated[str, Field(min_length=1, max_length=2000)]
Sdp = Annotated[str, Field(min_length=1, max_length=MAX_EVENT_BYTES)]
ErrorCode = Literal["forbidden", "invalid", "not_found", "conflict", "rate_limited"]


class _Payload(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class AdmitPayload(_Payload):
    participant_id: Id


class AdmitAllPayload(_Payload):
    pass


class DenyPayload(_Payload):
    participant_id: Id
    reason: ShortText = ""


class MutePayload(_Payload):
    participant_id: Id
    kind: Literal["audio", "video"]
    muted: bool


class RemovePayload(_Payload):
    participant_id: Id


class LockPayload(_Payload):
    locked: bool


class EndPayload(_Payload):
    pass


MAX_ICE_CANDIDATES = 64
"""Per SDP. A browser offers a handful per interface; thousands would make the relay probe
(and hold state for) every address a client names."""


class SignalPayload(_Payload):
    type: Literal["offer", "answer"]
    sdp: Sdp

    @model_validator(mode="after")
    def _few_candidates(self) -> SignalPayload:
        if self.sdp.count("a=candidate:") > MAX_ICE_CANDIDATES:
            raise ValueError(f"more than {MAX_ICE_CANDIDATES} ICE candidates")
        return self


class ChatPayload(_Payload):
    text: ChatText


class HandPayload(_Payload):
    raised: bool


class LeavePayload(_Payload):
    pass


BreakoutRoleName = Literal["protagonist", "antagonist", "auxiliary", "double", "observer"]
Scenario = Annotated[str, Field(max_length=2000)]
RoomName = Annotated[str, Field(min_length=1, max_length=80)]


class PlannedRoomPayload(_Payload):
    name: RoomName
    participant_ids: Annotated[list[Id], Field(max_length=30)] = []
    roles: dict[Id, BreakoutRoleName] = {}
    scenario: Scenario = ""


class AutoPlanPayload(_Payload):
    count: Annotated[int, Field(ge=1, le=20)]
    strategy: Literal["random", "balanced"] = "balanced"


class BreakoutPlanPayload(_Payload):
    """Explicit rooms, or `auto`; `minutes` is how long the rooms stay open."""

    rooms: Annotated[list[PlannedRoomPayload], Field(max_length=20)] | None = None
    auto: AutoPlanPayload | None = None
    minutes: Annotated[int, Field(ge=1, le=180)] = 10
    scenario: Scenario = ""

    @model_validator(mode="after")
    def _one_kind(self) -> BreakoutPlanPayload:
        if (self.rooms is None) == (self.auto is None):
            raise ValueError("give either rooms or auto")
        return self


class BreakoutsOpenPayload(_Payload):
    """A plan to open now, or `use_saved` to open the plan saved on the session."""

    rooms: Annotated[list[PlannedRoomPayload], Field(max_length=20)] | None = None
    auto: AutoPlanPayload | None = None
    minutes: Annotated[int, Field(ge=1, le=180)] = 10
    scenario: Scenario = ""
    use_saved: bool = False

    @model_validator(mode="after")
    def _one_kind(self) -> BreakoutsOpenPayload:
        kinds = (self.rooms is not None) + (self.auto is not None) + self.use_saved
        if kinds != 1:
            raise ValueError("give exactly one of rooms, auto or use_saved")
        return self


class BreakoutMovePayload(_Payload):
    participant_id: Id
    room: Id


class BreakoutVisitPayload(_Payload):
    room: Id


class BreakoutRotatePayload(_Payload):
    pass


class BreakoutExtendPayload(_Payload):
    minutes: Annotated[int, Field(ge=1, le=180)]


class BreakoutsClosePayload(_Payload):
    grace_s: Annotated[int, Field(ge=0, le=600)] = 30


class BreakoutBroadcastPayload(_Payload):
    text: ChatText


class BreakoutHelpPayload(_Payload):
    pass


class WaitingMessagePayload(_Payload):
    """To one waiting client (`participant_id`) or, without it, to everyone waiting."""

    text: ChatText
    participant_id: Id | None = None


CLIENT_EVENTS: dict[str, type[_Payload]] = {
    "admit": AdmitPayload,
    "admit_all": AdmitAllPayload,
    "deny": DenyPayload,
    "mute": MutePayload,
    "remove": RemovePayload,
    "lock": LockPayload,
    "end": EndPayload,
    "signal": SignalPayload,
    "chat": ChatPayload,
    "hand": HandPayload,
    "leave": LeavePayload,
    "breakouts_save": BreakoutPlanPayload,
    "breakouts_open": BreakoutsOpenPayload,
    "breakout_move": BreakoutMovePayload,
    "breakout_visit": BreakoutVisitPayload,
    "breakout_rotate": BreakoutRotatePayload,
    "breakout_extend": BreakoutExtendPayload,
    "breakouts_close": BreakoutsClosePayload,
    "breakout_broadcast": BreakoutBroadcastPayload,
    "breakout_help": BreakoutHelpPayload,
    "waiting_message": WaitingMessagePayload,
}
"""Client -> server events by name (the Socket.IO event name is the discriminator)."""


class ProtocolError(Exception):
    """A client payload that cannot be used; `message` is safe to send back and to log."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code: ErrorCode = code
        self.message = message


def parse_client_event(event: str, data: Any) -> _Payload:
    """The typed payload of a client event, or ProtocolError saying what is wrong."""
    model = CLIENT_EVENTS.get(event)
    if model is None:
        raise ProtocolError("invalid", f"unknown event {event[:40]!r}")
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ProtocolError("invalid", f"{event}: payload must be an object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'payload'}: {err['msg']}"
            for err in exc.errors(include_input=False)[:5]
        )
        raise ProtocolError("invalid", f"{event}: {problems}") from None


def ok(**fields: Any) -> dict[str, Any]:
    """A successful ack."""
    return {"ok": True, **fields}


def error(code: ErrorCode, message: str) -> dict[str, Any]:
    """A refused ack: `code` for programs, `message` for people."""
    return {"ok": False, "error": {"code": code, "message": message}}


# Server -> client payloads. The gateway builds them as dicts; the Python client validates
# every one it receives against these models, so any test run with it checks the server's
# output against the documented shapes.


class _Message(BaseModel):
    model_config = ConfigDict(extra="allow")


class StateMessage(_Message):
    rev: int
    session: dict[str, Any]
    you: dict[str, Any]
    participants: list[dict[str, Any]]
    breakouts: dict[str, Any]
    waiting: list[dict[str, Any]] | None = None
    expected: list[dict[str, Any]] | None = None
    server_time: datetime
    """When the server sent this view, by its clock: receivers count breakout time from it."""


class SignalMessage(_Message):
    type: Literal["offer", "answer"]
    sdp: str


class ChatMessage(_Message):
    model_config = ConfigDict(populate_by_name=True, extra="allow")

    from_: str = Field(alias="from")
    name: str
    text: str
    room: str
    at: str


class NoticeMessage(_Message):
    kind: str
    text: str


class EndedMessage(_Message):
    reason: str = "ended"


class MediaResetMessage(_Message):
    """The relay lost this participant's media path (its media worker restarted): close the
    peer connection and send a new first offer. Status, room and mutes are unchanged."""

    reason: str


class ConfigMessage(_Message):
    """Sent first on every connection: the ICE servers the client's media must use, and
    the clinic's other live nodes (URLs) to reconnect to if this one goes away."""

    ice_servers: list[dict[str, Any]]
    nodes: list[str] = []


class ReconnectMessage(_Message):
    """This node is draining: connect again (to another node, or the same URL behind a load
    balancer) after `after_ms`; status, room and mutes are kept for the grace period."""

    reason: str
    after_ms: int = 0


SERVER_EVENTS: dict[str, type[_Message]] = {
    "config": ConfigMessage,
    "state": StateMessage,
    "signal": SignalMessage,
    "chat": ChatMessage,
    "notice": NoticeMessage,
    "ended": EndedMessage,
    "media_reset": MediaResetMessage,
    "reconnect": ReconnectMessage,
}
"""Server -> client events by name, with the model each payload must fit."""
