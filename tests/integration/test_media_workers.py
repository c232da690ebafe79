"""Media workers: sessions spread over worker processes, and a worker killed mid-session.

Real `circle serve` with CIRCLE_MEDIA_WORKERS=2, real aiortc participants on loopback. The
worker serving a session is found from /metrics (`circle_media_worker_info`) and killed
with SIGKILL; the server restarts it, and every participant renegotiates on its own after
`media_reset`: nobody is re-admitted and attendance still says what each one sent.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

from client.participant import CircleClient, MediaOptions

from .media_fixtures import wait_until
from .server_fixtures import Api, CircleServer, module_server, settle

pytestmark = pytest.mark.integration

AV = MediaOptions(audio=True, video=True)
RESUME_WITHIN_S = 5.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CircleServer]:
    yield from module_server(tmp_path_factory, CIRCLE_MEDIA_WORKERS="2",
                             CIRCLE_MEDIA_FLOW_SAMPLE_S="0.5")


async def group(api: Api, sid: str, clients: list[tuple[str, str]]
                ) -> tuple[CircleClient, list[CircleClient]]:
    therapist = await api.join(sid, "t1", "Dr Kim Park", role="therapist", media=AV)
    joined = [await api.join(sid, pid, name, media=AV) for pid, name in clients]
    await therapist.wait_for(lambda s: len(s["waiting"]) == len(clients))
    assert (await therapist.call("admit_all"))["ok"]
    return therapist, joined


async def rows(api: Api, sid: str) -> dict[str, dict[str, Any]]:
    status, data = await api.request("GET", api.attendance_query(sid, session=sid,
                                                                 format="json"))
    assert status == 200
    return {r["participant_id"]: r for r in data["rows"]}


def everyone_sees_everyone(people: dict[str, CircleClient]) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        therapist = people["t1"]
        for pid, person in people.items():
            stats = await person.received()
            others = [p if person is therapist else therapist.handle_of(p)
                      for p in people if p != pid]
            if not all(o in stats and stats[o].video_frames > 0 and stats[o].audio_frames > 0
                       for o in others):
                return False
        return True

    return check


async def test_sessions_are_spread_over_the_workers(api: Api) -> None:
    first, second = await api.create_session(), await api.create_session(title="Other group")
    a_therapist, (ann,) = await group(api, first, [("c1", "Ann Lee")])
    b_therapist, (bob,) = await group(api, second, [("c2", "Bob Stone")])
    try:
        await wait_until(everyone_sees_everyone({"t1": a_therapist, "c1": ann}), 15)
        await wait_until(everyone_sees_everyone({"t1": b_therapist, "c2": bob}), 15)
        sessions = await api.metric("circle_media_worker_sessions")
        assert sessions == {'worker="0"': 1.0, 'worker="1"': 1.0}, sessions
        forwarded = await api.metric("circle_media_worker_forwarded_packets_total")

        async def both_forward() -> bool:
            now = await api.metric("circle_media_worker_forwarded_packets_total")
            return all(now.get(k, 0) > 0 for k in ('worker="0"', 'worker="1"'))

        await wait_until(both_forward, 5, interval=0.2)  # stats arrive once a second
        assert set(forwarded) == {'worker="0"', 'worker="1"'}
        lag = await api.metric("circle_media_worker_loop_lag_seconds")
        assert set(lag) == {'worker="0"', 'worker="1"'}
    finally:
        await settle(a_therapist, ann, b_therapist, bob)


async def test_a_killed_worker_is_restarted_and_media_resumes_without_readmission(
    api: Api,
) -> None:
    sid = await api.create_session()
    therapist, (ann, bob) = await group(api, sid, [("c1", "Ann Lee"), ("c2", "Bob Stone")])
    people = {"t1": therapist, "c1": ann, "c2": bob}
    try:
        await wait_until(everyone_sees_everyone(people), 15)
        workers = await api.media_workers()
        serving = next(w for w, (_, sessions) in workers.items() if sessions >= 1)
        pids = {w: pid for w, (pid, _) in workers.items()}
        before = await rows(api, sid)

        os.kill(pids[serving], signal.SIGKILL)
        killed_at = time.monotonic()
        async def all_told() -> bool:
            return all(c.media_resets >= 1 for c in people.values())

        await wait_until(all_told, RESUME_WITHIN_S)
        await wait_until(everyone_sees_everyone(people), RESUME_WITHIN_S)
        resumed_s = time.monotonic() - killed_at
        print(f"media resumed {resumed_s:.2f} s after the worker was killed")
        assert resumed_s < RESUME_WITHIN_S, f"media back after {resumed_s:.1f} s"

        for person in people.values():
            assert person.state is not None and person.state["you"]["status"] == "admitted"
            assert person.state["you"]["room"] == "main"
        assert therapist.state is not None and therapist.state["waiting"] == []
        # The media's stop and restart are recorded (attendance counts minutes of media),
        # but nobody dropped or was admitted again.
        after = await rows(api, sid)
        assert all(r["disconnects"] == 0 and r["status"] == "present" for r in after.values())
        assert {p: r["time_in"] for p, r in after.items()} == {
            p: r["time_in"] for p, r in before.items()}
        assert (await api.media_workers())[serving][0] != pids[serving], "a new process"
        restarts = await api.metric("circle_media_worker_restarts_total")
        assert restarts[f'worker="{serving}"'] == 1.0

        everyone = dict.fromkeys(people, "audio-video")

        async def recorded() -> bool:
            return {p: r["modality"] for p, r in (await rows(api, sid)).items()} == everyone

        await wait_until(recorded, 20, interval=0.25)
        assert (await therapist.call("end"))["ok"]
    finally:
        await settle(therapist, ann, bob)
    final = await rows(api, sid)
    assert {p: r["modality"] for p, r in final.items()} == everyone
    assert all(r["minutes_video"] > 0 and r["minutes_audio"] > 0 for r in final.values())

