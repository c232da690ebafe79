"""The relay reports when each publication's allowed media flows (real aiortc peers).

The listener (`Harness.flows`) gets one report per change: a start once the sampler sees
allowed packets, a stop at once on a mute or when the connection goes, a start again on
unmute; muted packets that keep arriving never count.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from tests.integration.media_fixtures import SESSION, Harness, grant, plan, wait_until

SAMPLE_S = 0.25


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    h = Harness(flow_sample_s=SAMPLE_S)
    yield h
    await h.close()


def reported(h: Harness, *reports: tuple[str, str, bool],
             since: int = 0) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return all(r in h.flows[since:] for r in reports)

    return check


async def test_flows_start_stop_on_mute_and_resume_on_unmute(harness: Harness) -> None:
    relay = harness.relay
    await relay.apply_plan(plan(grant("a"), grant("b")))
    await harness.join("a")
    await harness.join("b")
    await wait_until(reported(harness, ("a", "audio", True), ("a", "video", True),
                              ("b", "audio", True), ("b", "video", True)))
    assert len(harness.flows) == 4, f"only changes are reported: {harness.flows}"

    # A mute of a's video: its stop at once (a's client keeps sending video regardless).
    mark = len(harness.flows)
    await relay.apply_plan(plan(grant("a", video=False), grant("b")))
    await wait_until(reported(harness, ("a", "video", False), since=mark), timeout=1.0)
    assert harness.flows[mark:] == [("a", "video", False)]

    # Four samples later, with a's muted video still arriving, nothing more was said.
    peer = relay.peer(SESSION, "a")
    assert peer is not None
    video = peer.ingresses["video"]
    samples, dropped = relay.flow_samples, video.packets_dropped

    async def watched() -> bool:
        return relay.flow_samples >= samples + 4 and video.packets_dropped >= dropped + 20

    await wait_until(watched)
    assert harness.flows[mark:] == [("a", "video", False)], harness.flows[mark:]

    await relay.apply_plan(plan(grant("a"), grant("b")))
    await wait_until(reported(harness, ("a", "video", True), since=mark + 1))

    # b leaves: its flows end with the plan.
    mark = len(harness.flows)
    await relay.apply_plan(plan(grant("a")))
    await wait_until(reported(harness, ("b", "audio", False), ("b", "video", False),
                              since=mark), timeout=1.0)
