"""The web client brings its media back by itself when the relay's worker dies mid-session.

Debian Chromium (fake camera/mic) and a Python therapist against `circle serve` with two
media workers; the worker serving the session is killed with SIGKILL. The page gets
`media_reset`, closes its peer connection, offers again, and both sides see each other's
video again within seconds, with no reconnect banner and no trip to the waiting room.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import pytest

from client.participant import MediaOptions
from tests.integration.media_fixtures import wait_until
from tests.integration.server_fixtures import Api, CircleServer, api, module_server, settle  # noqa: F401

from .browser_fixtures import Browser, chromium, sees_video  # noqa: F401
from .test_web_client import join_link, through_device_check

pytestmark = [pytest.mark.browser, pytest.mark.integration]

RESUME_WITHIN_S = 5.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CircleServer]:
    yield from module_server(tmp_path_factory, CIRCLE_MEDIA_WORKERS="2")


async def test_the_page_renegotiates_after_its_media_worker_is_killed(
    api: Api, chromium: Browser  # noqa: F811
) -> None:
    sid = await api.create_session(title="Evening process group")
    therapist = await api.join(sid, "t1", "Dr Kim Park", role="therapist",
                               media=MediaOptions(audio=True, video=True))
    try:
        await therapist.wait_for(lambda s: s["you"]["status"] == "admitted")
        page = await chromium.open("client", await join_link(api, sid, "c1", "Ann Lee"))
        await through_device_check(page)
        await therapist.wait_for(lambda s: len(s["waiting"]) == 1)
        assert (await therapist.call("admit", {"participant_id": "c1"}))["ok"]
        dr = therapist.handle_of("t1")  # what the client's page calls the therapist
        await sees_video(page, dr)

        async def therapist_sees_ann() -> bool:
            stats = (await therapist.received()).get("c1")
            return stats is not None and stats.video_frames > 0

        await wait_until(therapist_sees_ann, 20)
        serving = next(pid for pid, sessions in (await api.media_workers()).values()
                       if sessions >= 1)
        os.kill(serving, signal.SIGKILL)
        killed_at = time.monotonic()
        async def therapist_told() -> bool:
            return therapist.media_resets >= 1

        await wait_until(therapist_told, RESUME_WITHIN_S)
        await sees_video(page, dr, timeout=RESUME_WITHIN_S)
        await wait_until(therapist_sees_ann, RESUME_WITHIN_S)
        resumed_s = time.monotonic() - killed_at
        print(f"browser media resumed {resumed_s:.2f} s after the worker was killed")
        assert resumed_s < RESUME_WITHIN_S + 1
        assert not await page.page.get_by_text("Connection lost: reconnecting").is_visible()
        assert therapist.state is not None
        assert [p["id"] for p in therapist.state["participants"]] == ["t1", "c1"]
        assert therapist.state["waiting"] == []
        assert chromium.console_errors() == {}
    finally:
        await settle(therapist)

