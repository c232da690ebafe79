"""TURN end to end: Circle mints credentials, a real coturn accepts them, media goes through it.

A real coturn from deploy/coturn/turnserver.conf (tests/deploy/coturn.py), a real `circle
serve` with CIRCLE_TURN_SECRET and CIRCLE_TURN_URLS, and a Python client that may use
only TURN-relayed candidates (iceTransportPolicy "relay", aiortc's RTCConfiguration): its
offer carries relay candidates only, so any frame it sends or gets went through coturn,
whose log shows the allocation and the bytes relayed. All on 127.0.0.1.

Runs once (tests/deploy is not in scripts/test's moved-clock reruns): coturn checks a
credential's expiry against the machine's own clock, which the suite cannot move.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aioice import stun
from aioice.turn import create_turn_endpoint

from client.participant import MediaOptions
from server.doctor import turn_check
from server.turn import TurnCredentials, turn_password
from tests.integration.clock import now
from tests.integration.server_fixtures import Api, CircleServer, settle

from .coturn import Coturn, coturn

pytestmark = pytest.mark.deploy

AV = MediaOptions(audio=True, video=True)
RELAY_ONLY = MediaOptions(audio=True, video=True, relay_only=True)
FRAMES = 15
"""A second of video (the Python client sends 15 frames a second)."""


@pytest.fixture(scope="module")
def turn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Coturn]:
    with coturn(tmp_path_factory.mktemp("coturn"), loopback_peers=True) as running:
        yield running


@pytest.fixture(scope="module")
def turn_server(turn: Coturn, tmp_path_factory: pytest.TempPathFactory
                ) -> Iterator[CircleServer]:
    srv = CircleServer(tmp_path_factory.mktemp("circle") / "data", env={
        "CIRCLE_TURN_SECRET": turn.secret,
        "CIRCLE_TURN_URLS": f"{turn.url('udp')},{turn.url('tcp')}",
        "CIRCLE_TURN_TTL_S": "3600",
        "CIRCLE_MEDIA_WORKERS": "0",
    })
    srv.api_key = srv.create_key()
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
async def api(turn_server: CircleServer) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as http:
        yield Api(turn_server, http)


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


def turn_entry(config: dict[str, Any]) -> dict[str, Any]:
    servers = [s for s in config["ice_servers"] if "username" in s]
    assert len(servers) == 1, config
    return dict(servers[0])


async def test_media_flows_through_coturn_with_minted_credentials(
        api: Api, turn: Coturn) -> None:
    sid = await api.create_session()
    therapist = await api.join(sid, "t-park", "Dr Kim Park", role="therapist", media=AV)
    client = await api.join(sid, "c-1042", "Ann Lee", media=RELAY_ONLY)
    try:
        # Each connection's config: the TURN URLs with credentials of its own. (`config` is
        # sent first, but python-socketio hands each event to a task of its own.)
        async def configured() -> bool:
            return all(c.config["ice_servers"] for c in (therapist, client))

        await eventually(configured, timeout=10)
        mine, theirs = turn_entry(client.config), turn_entry(therapist.config)
        assert mine["urls"] == [turn.url("udp"), turn.url("tcp")]
        assert mine["username"] != theirs["username"]
        expiry, _, tag = str(mine["username"]).partition(":")
        assert abs(int(expiry) - (now().timestamp() + 3600)) < 300
        assert "c-1042" not in tag and "1042" not in tag and tag
        assert mine["credential"] == turn_password(turn.secret, str(mine["username"]))

        await therapist.wait_for(lambda s: len(s["waiting"]) == 1)
        assert (await therapist.call("admit_all"))["ok"]

        async def frames() -> tuple[int, int]:
            """Video frames the therapist decoded from the client, and the client from the
            therapist (each went through coturn: the client has no other path)."""
            at_therapist = (await therapist.received()).get("c-1042")
            at_client = (await client.received()).get(therapist.handle_of("t-park"))
            return (at_therapist.video_frames if at_therapist else 0,
                    at_client.video_frames if at_client else 0)

        async def a_second_of_video_each_way() -> bool:
            return min(await frames()) >= FRAMES

        await eventually(a_second_of_video_each_way)
        sent, received = await frames()
        assert client.media is not None
        sdp = client.media.peer_connection.localDescription.sdp
        candidates = re.findall(r"^a=candidate:.* typ (\w+)", sdp, flags=re.M)
        assert candidates and set(candidates) == {"relay"}, sdp
        relay_addresses = set(re.findall(r"^a=candidate:\S+ \d+ udp \d+ (\S+ \d+) typ relay",
                                         sdp, flags=re.M))
        assert relay_addresses, "a relayed UDP candidate on the TURN server"
    finally:
        await settle(therapist, client)
    # coturn's own account: the allocation with this participant's credentials, and (when
    # it is released at the client's close) the bytes it relayed to and from its peer.
    user = str(mine["username"])
    turn.wait_for_log(f"user <{user}>: incoming packet ALLOCATE processed, success")
    usage = turn.wait_for_log(f"peer usage: realm=<circle.example.org>, username=<{user}>")
    counts = {k: int(v) for k, v in re.findall(r"(rp|rb|sp|sb)=(\d+)", usage)}
    # Packets from the peer (the Circle relay) to the client, and from the client to it:
    # at least one per video frame decoded at the other end.
    assert counts["rp"] >= received and counts["sp"] >= sent, (usage, sent, received)


async def test_the_shipped_config_refuses_to_relay_to_loopback(tmp_path: Path) -> None:
    """As shipped (no test additions), coturn takes Circle's credentials but refuses to
    relay to 127.0.0.1: the deny list keeps it from being a proxy into the host."""
    with coturn(tmp_path / "coturn", loopback_peers=False) as shipped:
        mint = TurnCredentials(shipped.secret, (shipped.url(),), 600, now, lambda v: "probe")
        username = mint.username("s", "p")
        refused: list[Exception] = []

        class Peer(asyncio.DatagramProtocol):
            def error_received(self, exc: Exception) -> None:
                refused.append(exc)

        transport, _ = await create_turn_endpoint(
            Peer, ("127.0.0.1", shipped.port), username, turn_password(shipped.secret, username))
        try:
            transport.sendto(b"hello", ("127.0.0.1", 9))

            async def was_refused() -> bool:
                return bool(refused)

            await eventually(was_refused, timeout=10)
        finally:
            transport.close()
        assert isinstance(refused[0], stun.TransactionFailed), refused
        assert refused[0].response.attributes["ERROR-CODE"][0] == 403


async def test_coturn_itself_refuses_a_credential_once_it_has_expired(turn: Coturn) -> None:
    """A credential's lifetime is enforced by the TURN server, not only by what Circle
    hands out: the same minting with an expiry a minute past is refused (401), while one
    still valid allocates. coturn compares with the machine's clock, so this uses it too."""
    wall = datetime.now(UTC)

    def minted(at: datetime) -> tuple[str, str]:
        mint = TurnCredentials(turn.secret, (turn.url(),), 60, lambda: at, lambda v: "probe")
        username = mint.username("s", "p")
        return username, turn_password(turn.secret, username)

    valid = await turn_check(turn.url(), *minted(wall))
    assert valid.status == "ok", valid.line()
    expired = await turn_check(turn.url(), *minted(wall - timedelta(seconds=120)))
    assert expired.status == "problem" and "refused Circle's credentials (401" in expired.detail, \
        expired.line()
