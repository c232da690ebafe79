"""Media coordination never makes a session's owner wait on the relay.

A fake relay whose `apply_plan` blocks until released stands in for a slow peer close:
the observer's `update` must return at once, newer plans must replace queued ones, and a
client's SDP must wait until the plans queued before it reached the relay.
"""

from __future__ import annotations

import asyncio
from typing import Any

from signaling.core import commands as c
from signaling.edge.media import MediaCoordinator
from signaling.ports import MediaPlan, SignalType

from .core_helpers import Session, therapist


class SlowRelay:
    def __init__(self) -> None:
        self.applied: list[MediaPlan] = []
        self.log: list[str] = []
        self.release = asyncio.Event()

    async def apply_plan(self, plan: MediaPlan) -> None:
        await self.release.wait()
        self.applied.append(plan)
        self.log.append(f"plan {sorted(plan.grants)}")

    async def signal(self, session_id: str, participant_id: str, kind: SignalType,
                     sdp: str) -> str | None:
        self.log.append(f"signal {participant_id}")
        return "answer-sdp"

    async def close_session(self, session_id: str) -> None:
        self.log.append("close")


class Emits:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str, Any]] = []

    async def to_participant(self, session_id: str, participant_id: str, event: str,
                             data: Any) -> bool:
        await asyncio.sleep(0)  # a socket write yields, as python-socketio's does
        self.sent.append((participant_id, event, data))
        return True


def coordinator() -> tuple[MediaCoordinator, SlowRelay, Emits]:
    relay, emits = SlowRelay(), Emits()
    return MediaCoordinator(emits, hub=None, relay=relay), relay, emits  # type: ignore[arg-type]


async def test_update_returns_at_once_and_the_newest_plan_wins() -> None:
    media, relay, _ = coordinator()
    s = Session.created()
    s.join("t1", "therapist")
    media.update(s.state)  # the pump takes this plan and blocks in apply_plan
    await asyncio.sleep(0)
    s.join("c1")
    s.ok(therapist(), c.Admit("c1"))
    media.update(s.state)
    s.join("c2")
    s.ok(therapist(), c.Admit("c2"))
    media.update(s.state)  # replaces the plan with c1 before it was sent
    assert relay.applied == []
    relay.release.set()
    await media.close()
    assert [sorted(p.grants) for p in relay.applied] == [["t1"], ["c1", "c2", "t1"]]


async def test_an_offer_waits_for_the_plans_queued_before_it() -> None:
    media, relay, emits = coordinator()
    s = Session.created()
    s.join("t1", "therapist")
    media.update(s.state)
    offer = asyncio.ensure_future(media.signal("s1", "t1", c.Signal("offer", "v=0")))
    await asyncio.sleep(0.01)
    assert relay.log == [] and not offer.done(), "no SDP reaches the relay before its plan"
    relay.release.set()
    assert (await offer) == {"ok": True}
    assert relay.log == ["plan ['t1']", "signal t1"]
    assert emits.sent == [("t1", "signal", {"type": "answer", "sdp": "answer-sdp"})]


async def test_an_ended_session_closes_its_media_once() -> None:
    media, relay, _ = coordinator()
    relay.release.set()
    s = Session.created()
    s.join("t1", "therapist")
    media.update(s.state)
    s.ok(therapist(), c.End())
    media.update(s.state)
    media.update(s.state)
    await media.close()
    assert relay.log == ["close"], "the close replaced the plan not yet sent; sent once"


class OffersRightAfterAnswering(SlowRelay):
    """A worker's answer and its next offer arrive together: the offer is sent while the
    answer is still on its way to the client."""

    def __init__(self, media: list[MediaCoordinator]) -> None:
        super().__init__()
        self.media = media
        self.offer: asyncio.Future[None] | None = None
        self.release.set()

    async def signal(self, session_id: str, participant_id: str, kind: SignalType,
                     sdp: str) -> str | None:
        self.offer = asyncio.ensure_future(self.media[0].send_signal(
            session_id, participant_id, "offer", "relay-offer-sdp"))
        await asyncio.sleep(0)
        return "answer-sdp"


async def test_a_relay_offer_never_overtakes_the_answer_to_the_clients_offer() -> None:
    holder: list[MediaCoordinator] = []
    relay, emits = OffersRightAfterAnswering(holder), Emits()
    media = MediaCoordinator(emits, hub=None, relay=relay)  # type: ignore[arg-type]
    holder.append(media)
    assert (await media.signal("s1", "t1", c.Signal("offer", "v=0"))) == {"ok": True}
    assert relay.offer is not None
    await relay.offer
    assert [data["type"] for _, _, data in emits.sent] == ["answer", "offer"]
