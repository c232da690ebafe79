"""Join tokens are judged by the server's clock, whatever the machine's clock says."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from server.auth.tokens import EXPIRED, INVALID, JoinTokenService
from server.clock import WallClock
from signaling.ports import TokenRejected


def service_at(moment: list[datetime]) -> JoinTokenService:
    key = Ed25519PrivateKey.generate()
    return JoinTokenService(key, key.public_key(), clock=lambda: moment[0])


@pytest.mark.parametrize("years", [-1, 0, 1])
def test_a_token_lives_exactly_its_ttl_on_a_moved_clock(years: int) -> None:
    now = [datetime.now(UTC) + timedelta(days=365 * years)]
    tokens = service_at(now)
    issued = tokens.issue(session_id="s1", participant_id="c1", name="Ann", role="client",
                          ttl_s=600)
    assert tokens.verify(issued.token).participant_id == "c1"
    now[0] = issued.expires_at + timedelta(seconds=4)  # within the leeway
    assert tokens.verify(issued.token).session_id == "s1"
    now[0] = issued.expires_at + timedelta(seconds=6)
    with pytest.raises(TokenRejected, match=EXPIRED):
        tokens.verify(issued.token)


def test_a_token_from_the_future_is_not_valid() -> None:
    now = [datetime.now(UTC)]
    tokens = service_at(now)
    issued = tokens.issue(session_id="s1", participant_id="c1", name="Ann", role="client",
                          ttl_s=600, now=now[0] + timedelta(minutes=1))
    with pytest.raises(TokenRejected, match=INVALID):
        tokens.verify(issued.token)


def test_the_wall_clock_is_utc_plus_its_offset() -> None:
    before = datetime.now(UTC)
    moved = WallClock(offset_s=-86400)()
    after = datetime.now(UTC)
    assert moved.tzinfo is UTC
    assert before - timedelta(days=1) <= moved <= after - timedelta(days=1)
