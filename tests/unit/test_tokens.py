"""Join tokens are judged by the server's clock, whatever the machine's clock says, and a
join link carries nothing readable about the person it is for."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import jwt
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


def test_a_join_link_carries_nothing_readable_about_the_person() -> None:
    tokens = service_at([datetime.now(UTC)])
    issued = tokens.issue(session_id="s1", participant_id="MRN-0042137", name="Ann Lee",
                          role="therapist", ttl_s=600)
    body = base64.urlsafe_b64decode(issued.token.split(".")[1] + "==").decode()
    for secret in ("MRN-0042137", "0042137", "Ann", "Lee", "therapist"):
        assert secret not in body and secret not in issued.token
    assert set(jwt.decode(issued.token, options={"verify_signature": False})) == {
        "who", "sid", "jti", "aud", "iat", "exp"}
    claims = tokens.verify(issued.token)
    assert (claims.participant_id, claims.name, claims.role) == ("MRN-0042137", "Ann Lee",
                                                                  "therapist")


def test_a_sealed_who_moved_into_another_token_does_not_open() -> None:
    """Same key, valid signature: only the `who` of another invite, which is bound to its
    own session and token id."""
    key = Ed25519PrivateKey.generate()
    tokens = JoinTokenService(key, key.public_key())
    therapist = tokens.issue(session_id="s1", participant_id="t1", name="Dr", role="therapist",
                             ttl_s=600)
    client = tokens.issue(session_id="s2", participant_id="c1", name="Ann", role="client",
                          ttl_s=600)
    forged = jwt.decode(client.token, options={"verify_signature": False})
    forged["who"] = jwt.decode(therapist.token, options={"verify_signature": False})["who"]
    with pytest.raises(TokenRejected, match=INVALID):
        tokens.verify(jwt.encode(forged, key, algorithm="EdDSA"))
