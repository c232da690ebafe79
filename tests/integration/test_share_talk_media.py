"""Screen share and talk time with real aiortc peers on loopback (issue 14, parts 1 and 7).

The plans come from the core (`plan_for` over a session driven by commands), so the test
covers the rule (a therapist stops a client's share) down to the packets the relay drops.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest

from signaling.core import commands as c
from signaling.core.media_plan import plan_for
from tests.integration.media_fixtures import SESSION, Harness, advance, grant, plan, wait_until
from tests.unit.core_helpers import Session, client, therapist

pytestmark = pytest.mark.integration


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    h = Harness()
    yield h
    await h.close()


async def test_a_share_is_forwarded_to_the_room_and_a_therapist_stops_it_at_the_relay(
    harness: Harness,
) -> None:
    s = Session.created()
    s.join("t1", "therapist", "Dr Kim Park")
    s.join("c1", "client", "Ann Lee")
    s.ok(therapist(), c.Admit("c1"))
    s.ok(therapist(), c.SetSharePolicy(True))
    sharer = s.state.participants["c1"].handle
    screen = f"{sharer}-screen"
    await harness.relay.apply_plan(plan_for(s.state))
    await harness.join("c1", publish_screen=True)
    await harness.join("t1")
    await wait_until(harness.sees("t1", sharer))
    relay_c1 = harness.relay.peer(SESSION, "c1")
    assert relay_c1 is not None
    assert set(relay_c1.ingresses) == {"audio", "video", "screen"}
    screen_in = relay_c1.ingresses["screen"]

    # Not shared yet: the screen's packets reach the relay and stop there.
    dropped = screen_in.packets_dropped

    async def screen_dropped() -> bool:
        return screen_in.packets_dropped > dropped + 10

    await wait_until(screen_dropped)
    assert screen not in await harness.stats("t1")
    assert harness.published["c1"] == {"audio", "video"}, "a screen is not the camera"

    s.ok(client("c1"), c.StartShare())
    await harness.relay.apply_plan(plan_for(s.state))

    async def screen_shown() -> bool:
        got = (await harness.stats("t1")).get(screen)
        return got is not None and got.video_frames >= 5

    await wait_until(screen_shown)
    # The camera keeps its own track beside the screen.
    await advance(5, harness.packets("t1", sharer, "video"))

    s.ok(therapist(), c.StopShare("c1"))
    await harness.relay.apply_plan(plan_for(s.state))
    relay_t1 = harness.relay.peer(SESSION, "t1")
    assert relay_t1 is not None
    screen_out = relay_t1.egresses[("c1", "screen")]
    sent = screen_out.packets_sent
    # The window: the same publisher's camera keeps flowing to the same viewer.
    await advance(30, harness.packets("t1", sharer, "video"))
    assert screen_out.packets_sent == sent
    await wait_until(screen_dropped)


async def test_talk_time_is_measured_from_the_audio_level() -> None:
    harness = Harness(talk_report_s=1.0)
    try:
        await harness.relay.apply_plan(plan(grant("loud"), grant("quiet"), grant("viewer")))
        joined = time.monotonic()
        # About -15 dBov (a voice) and -79 dBov (a muted room): aiortc writes each frame's
        # RMS level into the RFC 6464 extension, as browsers do.
        await harness.join("loud", video=False, audio_amplitude=8000)
        await harness.join("quiet", video=False, audio_amplitude=5)
        await harness.join("viewer", audio=False, video=False)
        await wait_until(harness.sees("viewer", "loud", "quiet", frames=0))

        async def spoke_a_while() -> bool:
            return harness.talk.get("loud", 0.0) >= 4.0

        await wait_until(spoke_a_while, timeout=20)
        elapsed = time.monotonic() - joined
        loud = harness.relay.peer(SESSION, "loud")
        assert loud is not None
        audio_in = loud.ingresses["audio"]
        # Every packet of the loud one is speech; the reports lag by at most an interval.
        assert audio_in.speech_packets == audio_in.packets_received
        assert harness.talk["loud"] <= elapsed + 0.1
        assert harness.talk["loud"] >= audio_in.packets_received * 0.02 - 1.0 - 0.1
        quiet = harness.relay.peer(SESSION, "quiet")
        assert quiet is not None and quiet.ingresses["audio"].packets_received > 100
        assert quiet.ingresses["audio"].speech_packets == 0
        assert harness.talk.get("quiet", 0.0) == 0.0
    finally:
        await harness.close()
