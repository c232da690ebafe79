"""The v1 wire contract: one pydantic model per Socket.IO event, in both directions.

This is the only module of the project that `client/` imports, so the Python client, the
gateway and docs/protocol.md describe the same shapes. Every client payload is parsed
here with extra fields forbidden and lengths capped, so malformed input is refused with
an `invalid` error before it reaches the core.
"""

from __future__ import annotations

import re
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

MAX_MEDIA_SECTIONS = 128
"""Per SDP. A client offers its own few tracks; its answer to the relay has one m-section per
publisher and kind the session ever forwarded to it (15 people with audio, video and a
shared screen: 45). Hundreds would cost a media worker tenths of a second each to parse."""


class SignalPayload(_Payload):
    type: Literal["offer", "answer"]
    sdp: Sdp

    @model_validator(mode="after")
    def _few_candidates(self) -> SignalPayload:
        if self.sdp.count("a=candidate:") > MAX_ICE_CANDIDATES:
            raise ValueError(f"more than {MAX_ICE_CANDIDATES} ICE candidates")
        if self.sdp.startswith("m=") + self.sdp.count("\nm=") > MAX_MEDIA_SECTIONS:
            raise ValueError(f"more than {MAX_MEDIA_SECTIONS} media sections")
        return self


class ChatPayload(_Payload):
    text: ChatText


E2EE_PUBLIC_KEY_PATTERN = r"^B[A-P][A-Za-z0-9_-]{85}$"
"""An uncompressed P-256 point (65 bytes, first 0x04) in base64url without padding: the
shape of an `auth.e2ee_key` (the browsers check the point itself when they import it)."""

Base64Url = Annotated[str, Field(min_length=1, max_length=256, pattern=r"^[A-Za-z0-9_-]+$")]


class MediaKeyPayload(_Payload):
    to: Annotated[str, Field(min_length=1, max_length=32, pattern=r"^p[0-9]+$")]
    """The recipient's handle."""
    epoch: Annotated[int, Field(ge=0, le=255)]
    kid: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{6}$")]
    """4 bytes, base64url: the sender's key id, carried in every encrypted frame."""
    wrapped: Base64Url


class E2eeKeysPayload(_Payload):
    """A sender's media key, wrapped once per roommate (end-to-end encrypted sessions)."""

    keys: Annotated[list[MediaKeyPayload], Field(min_length=1, max_length=64)]


class HandPayload(_Payload):
    raised: bool


REGION_PATTERN = r"^(?:[A-Z]{2}-[A-Z0-9]{1,3}|[A-Z]{2,3})$"
"""A state or province: `CA`, `ON`, `NSW` (2-3 capital letters), or ISO 3166-2 with its
country, `US-CA`, `CA-ON`, `FR-75`."""


class CheckinPayload(_Payload):
    """A client's or family member's check-in, while waiting or admitted; sending it again
    replaces the answers. `pledge`: the group's confidentiality pledge was ticked."""

    location: Literal["home", "other"]
    region: Annotated[str, Field(max_length=6)]
    consent: bool
    pledge: bool = False

    @model_validator(mode="after")
    def _region_code(self) -> CheckinPayload:
        if re.fullmatch(REGION_PATTERN, self.region) is None:
            raise ValueError("region: use a state or province code such as CA or US-CA")
        return self


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


class BreakoutSwapPayload(_Payload):
    room: Id


class BreakoutExtendPayload(_Payload):
    minutes: Annotated[int, Field(ge=1, le=180)]


class BreakoutsClosePayload(_Payload):
    grace_s: Annotated[int, Field(ge=0, le=600)] = 30


class BreakoutBroadcastPayload(_Payload):
    text: ChatText


class BreakoutHelpPayload(_Payload):
    pass


class SendToWaitingPayload(_Payload):
    """A clinician sends an admitted client or family member back to the waiting room."""

    participant_id: Id


class AsideOpenPayload(_Payload):
    """The calling clinician takes one admitted client into a private aside."""

    participant_id: Id


class AsideClosePayload(_Payload):
    """Close the caller's aside; another clinician names one of its two (or, with one
    aside open, nothing)."""

    participant_id: Id | None = None


class HelpPayload(_Payload):
    """A client asks the clinicians for help, from anywhere (waiting room included)."""


class ShareStartPayload(_Payload):
    """Share a screen in one's room (the offer's `a=content:slides` video section)."""


class ShareStopPayload(_Payload):
    """End one's own share, or (clinicians) `participant_id`'s."""

    participant_id: Id | None = None


class SharePolicyPayload(_Payload):
    """Clinicians: whether clients and family members may share a screen."""

    clients_may_share: bool


class WaitingMessagePayload(_Payload):
    """To one waiting client (`participant_id`) or, without it, to everyone waiting."""

    text: ChatText
    participant_id: Id | None = None


class SecondDevicePayload(_Payload):
    """A therapist's answer for a participant's waiting second device: `allow` lets it
    take the seat (the first connection is closed), else the first keeps it."""

    participant_id: Id
    allow: bool


CLIENT_EVENTS: dict[str, type[_Payload]] = {
    "share_start": ShareStartPayload,
    "share_stop": ShareStopPayload,
    "share_policy": SharePolicyPayload,
    "admit": AdmitPayload,
    "admit_all": AdmitAllPayload,
    "deny": DenyPayload,
    "mute": MutePayload,
    "remove": RemovePayload,
    "lock": LockPayload,
    "end": EndPayload,
    "signal": SignalPayload,
    "chat": ChatPayload,
    "e2ee_keys": E2eeKeysPayload,
    "hand": HandPayload,
    "checkin": CheckinPayload,
    "leave": LeavePayload,
    "breakouts_save": BreakoutPlanPayload,
    "breakouts_open": BreakoutsOpenPayload,
    "breakout_move": BreakoutMovePayload,
    "breakout_visit": BreakoutVisitPayload,
    "breakout_rotate": BreakoutRotatePayload,
    "breakout_swap": BreakoutSwapPayload,
    "breakout_extend": BreakoutExtendPayload,
    "breakouts_close": BreakoutsClosePayload,
    "breakout_broadcast": BreakoutBroadcastPayload,
    "breakout_help": BreakoutHelpPayload,
    "waiting_message": WaitingMessagePayload,
    "second_device": SecondDevicePayload,
    "send_to_waiting": SendToWaitingPayload,
    "aside_open": AsideOpenPayload,
    "aside_close": AsideClosePayload,
    "help": HelpPayload,
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
    second_devices: list[dict[str, Any]] | None = None
    """Therapists only: participants whose second device waits for a decision."""
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


class E2eeKeyMessage(_Message):
    """A roommate's media key, wrapped to this connection's public key by its browser."""

    model_config = ConfigDict(populate_by_name=True)

    from_: str = Field(alias="from")
    handle: str
    key: str
    epoch: int
    kid: str
    wrapped: str


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


class SeatMessage(_Message):
    """Sent once to every accepted connection, to it only: the secret that proves, on the
    next connect (`auth.resume`), that it is this connection's browser. While this
    connection holds the seat, presenting it takes the seat back at once after a drop."""

    resume: str


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
    "e2ee_key": E2eeKeyMessage,
    "notice": NoticeMessage,
    "ended": EndedMessage,
    "media_reset": MediaResetMessage,
    "reconnect": ReconnectMessage,
    "seat": SeatMessage,
}
"""Server -> client events by name, with the model each payload must fit."""
