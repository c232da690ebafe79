"""The typed messages between the control plane and a media worker, both directions.

The channel is deliberately narrow: media plans, SDP, session closes, what media was seen
and when it flowed, and stats. Keyframe requests never cross it: a subscriber's PLI and a
new subscriber's wait for a keyframe are handled inside the worker that holds both ends.
Nothing in it carries a name or any other PHI: participants are the ids the plans already
use, and no message is ever logged with its content.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from signaling.ports import MediaGrant, MediaPlan


class _Message(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Grant(_Message):
    participant_id: str
    room: str
    send_audio: bool
    send_video: bool
    handle: str = ""
    send_screen: bool = False


# -- control plane -> worker ----------------------------------------------------------------


class ApplyPlan(_Message):
    """The session's whole current plan (idempotent: the newest one wins)."""

    type: Literal["apply_plan"] = "apply_plan"
    session_id: str
    grants: tuple[Grant, ...]

    @classmethod
    def of(cls, plan: MediaPlan) -> ApplyPlan:
        return cls(session_id=plan.session_id, grants=tuple(
            Grant(participant_id=g.participant_id, room=g.room, send_audio=g.send_audio,
                  send_video=g.send_video, handle=g.handle, send_screen=g.send_screen)
            for g in plan.grants.values()))

    def plan(self) -> MediaPlan:
        return MediaPlan(self.session_id, {g.participant_id: MediaGrant(
            g.participant_id, g.room, g.send_audio, g.send_video, g.handle, g.send_screen)
            for g in self.grants})


class Signal(_Message):
    """A client's offer or answer; the worker replies with `SignalReply(request=...)`."""

    type: Literal["signal"] = "signal"
    request: int
    session_id: str
    participant_id: str
    kind: Literal["offer", "answer"]
    sdp: str


class CloseSession(_Message):
    type: Literal["close_session"] = "close_session"
    session_id: str


# -- worker -> control plane ----------------------------------------------------------------


class Ready(_Message):
    type: Literal["ready"] = "ready"
    pid: int


class SignalReply(_Message):
    type: Literal["signal_reply"] = "signal_reply"
    request: int
    answer: str | None = None
    error: str | None = None
    """Why the SDP was refused (short, never SDP content); None when it was taken."""


class RelayOffer(_Message):
    """A relay-initiated offer to deliver to the participant's socket."""

    type: Literal["relay_offer"] = "relay_offer"
    session_id: str
    participant_id: str
    sdp: str


class Published(_Message):
    """The kinds of RTP seen from a participant so far (basis of attendance `modality`)."""

    type: Literal["published"] = "published"
    session_id: str
    participant_id: str
    kinds: tuple[Literal["audio", "video"], ...]


class Flow(_Message):
    """A kind of a participant's media started or stopped flowing allowed, `ago_s` ago."""

    type: Literal["flow"] = "flow"
    session_id: str
    participant_id: str
    kind: Literal["audio", "video"]
    flowing: bool
    ago_s: float


class Talk(_Message):
    """Seconds each participant spoke since the worker's previous report (speakers only)."""

    type: Literal["talk"] = "talk"
    session_id: str
    seconds: dict[str, float]


class Stats(_Message):
    """The worker's own counters, sent about once a second."""

    type: Literal["stats"] = "stats"
    sessions: int
    peers: int
    forwarded_packets: int
    dropped_packets: int
    loop_lag_ms: float


ToWorker = Annotated[ApplyPlan | Signal | CloseSession,
                     Field(discriminator="type")]
FromWorker = Annotated[Ready | SignalReply | RelayOffer | Published | Flow | Talk | Stats,
                       Field(discriminator="type")]
TO_WORKER: TypeAdapter[ToWorker] = TypeAdapter(ToWorker)
FROM_WORKER: TypeAdapter[FromWorker] = TypeAdapter(FromWorker)
