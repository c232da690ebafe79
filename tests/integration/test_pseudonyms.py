"""Clients never learn another participant's id, end to end: clinics use record numbers as
participant ids, so nothing a client's socket receives (views, chat, notices, the relay's
SDP with its msid and stream ids) and nothing in its join link may carry one."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from client.participant import CircleClient, MediaOptions

from .server_fixtures import Api, settle

pytestmark = pytest.mark.integration

AV = MediaOptions(audio=True, video=True)
THERAPIST = "EMP-0042"
ANN, BOB = "MRN-1001", "MRN-1002"
EVERYONE = (THERAPIST, ANN, BOB)


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 20.0) -> None:
    """Poll a media condition (stats have no event to wait on) until it holds."""
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


def recorder(client: CircleClient) -> list[tuple[str, Any]]:
    received: list[tuple[str, Any]] = []
    client.on_message.append(lambda event, data: received.append((event, data)))
    return received


def sees_video_of(viewer: CircleClient, *publishers: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        stats = await viewer.received()
        return all(p in stats and stats[p].video_frames > 0 for p in publishers)

    return check


async def test_clients_never_receive_another_participants_id(api: Api) -> None:
    sid = await api.create_session()
    links = {pid: await api.invite(sid, pid, name, role)
             for pid, name, role in ((THERAPIST, "Dr Kim Park", "therapist"),
                                     (ANN, "Ann Lee", "client"), (BOB, "Bob Stone", "client"))}
    for pid, invite in links.items():
        body = base64.urlsafe_b64decode(invite["token"].split(".")[1] + "==").decode()
        assert pid not in body and "Lee" not in body and "Stone" not in body and "Kim" not in body

    therapist = CircleClient(api.server.url, links[THERAPIST]["token"], media=AV)
    ann = CircleClient(api.server.url, links[ANN]["token"], media=AV)
    bob = CircleClient(api.server.url, links[BOB]["token"], media=AV)
    seen = {ANN: recorder(ann), BOB: recorder(bob)}
    try:
        for person in (therapist, ann, bob):
            await person.connect()
        await therapist.wait_for(lambda s: len(s["waiting"]) == 2)
        assert (await therapist.call("admit_all"))["ok"]
        handles = {pid: therapist.handle_of(pid) for pid in EVERYONE}
        assert len(set(handles.values())) == 3

        # Media flows, named by handle: Ann's stats (stream ids) and her offers' msid.
        await eventually(sees_video_of(ann, handles[THERAPIST], handles[BOB]))
        await eventually(sees_video_of(therapist, ANN, BOB))
        offers = [d["sdp"] for event, d in seen[ANN] if event == "signal" and d["type"] == "offer"]
        assert any(f"a=msid:{handles[BOB]} " in sdp for sdp in offers), "streams carry handles"

        # Chat, a hand, a therapist's mute, help and breakouts all reach the clients.
        assert (await ann.call("chat", {"text": "hello"}))["ok"]
        await bob.wait_until(lambda: bool(bob.chats))
        assert bob.chats[0]["from"] == handles[ANN] and bob.chats[0]["name"] == "Ann"
        await therapist.wait_until(lambda: bool(therapist.chats))
        assert therapist.chats[0]["from"] == ANN, "clinicians see the real id"
        assert (await bob.call("hand", {"raised": True}))["ok"]
        assert (await therapist.call("mute", {"participant_id": BOB, "kind": "audio",
                                              "muted": True}))["ok"]
        plan = {"rooms": [{"name": "Sister", "participant_ids": [ANN, BOB],
                           "roles": {ANN: "protagonist", BOB: "antagonist"},
                           "scenario": "Asking for help"}], "minutes": 5}
        assert (await therapist.call("breakouts_open", plan))["ok"]
        in_room = await ann.wait_for(lambda s: s["breakouts"]["open"])
        assert in_room["breakouts"]["rooms"][0]["roles"] == {
            handles[ANN]: "protagonist", handles[BOB]: "antagonist"}
        assert (await ann.call("breakout_help", {}))["ok"]
        await therapist.wait_until(lambda: any(n["kind"] == "help" for n in therapist.notices))
        assert (await therapist.call("breakouts_close", {"grace_s": 0}))["ok"]
        await bob.wait_for(lambda s: not s["breakouts"]["open"])
    finally:
        await settle(therapist, ann, bob)

    for me, messages in seen.items():
        kinds = {event for event, _ in messages}
        assert {"config", "state", "chat", "signal"} <= kinds, kinds
        text = json.dumps(messages)
        for other in EVERYONE:
            if other != me:
                assert other not in text, f"{me}'s socket received {other}'s id"
        assert handles[THERAPIST] in text, "peers are there, by handle"
