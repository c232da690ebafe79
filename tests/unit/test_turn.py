"""TURN REST credentials (server/turn.py) and their settings: coturn's `use-auth-secret`."""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from server.config import Settings
from server.turn import TurnCredentials, client_config, parse_turn_url, turn_password

NOW = datetime(2031, 3, 4, 5, 6, 7, tzinfo=UTC)
"""An arbitrary instant: the credentials are computed from the injected clock only."""
SECRET = secrets.token_hex(8)


def tag(value: str) -> str:
    """Stands in for the key ring's keyed pseudonym."""
    return hashlib.sha256(value.encode()).hexdigest()[:16]


def creds(ttl_s: int = 3600, at: datetime = NOW) -> TurnCredentials:
    return TurnCredentials("north-clinic-secret", ("turn:turn.example.org:3478",), ttl_s,
                           lambda: at, tag)


def test_the_credential_is_base64_hmac_sha1_of_the_username() -> None:
    # Computed independently: echo -n 1767225600:tag | openssl dgst -binary -sha1
    #   -hmac north-clinic-secret | base64
    assert turn_password("north-clinic-secret", "1767225600:tag") == "WUszZN5yL1XFAx/7c8P8hf5IQxM="


def test_username_is_expiry_then_an_opaque_tag_never_the_participant_id() -> None:
    server = creds(ttl_s=7200).ice_server("s-1", "c-1042")
    expiry, _, who = server["username"].partition(":")
    assert int(expiry) == int((NOW + timedelta(seconds=7200)).timestamp())
    assert who == tag("turn s-1 c-1042")
    assert "c-1042" not in server["username"]
    assert server["credential"] == turn_password("north-clinic-secret", server["username"])
    assert server["urls"] == ["turn:turn.example.org:3478"]


def test_each_participant_and_session_gets_its_own_credentials() -> None:
    mint = creds()
    ann, bob = mint.ice_server("s-1", "c-1"), mint.ice_server("s-1", "c-2")
    later = mint.ice_server("s-2", "c-1")
    assert len({ann["username"], bob["username"], later["username"]}) == 3
    assert len({ann["credential"], bob["credential"], later["credential"]}) == 3


def test_credentials_expire_from_the_clock_of_the_moment_they_are_minted() -> None:
    first = creds(at=NOW).username("s", "p")
    an_hour_on = creds(at=NOW + timedelta(hours=1)).username("s", "p")
    assert int(an_hour_on.split(":")[0]) - int(first.split(":")[0]) == 3600


def test_config_adds_turn_to_the_fixed_ice_servers() -> None:
    stun = {"urls": ["stun:stun.example.org:3478"]}
    config = client_config([stun], creds())("s-1", "c-1")
    assert config["ice_servers"][0] == stun
    assert config["ice_servers"][1]["username"].endswith(tag("turn s-1 c-1"))
    assert client_config([stun], None)("s-1", "c-1") == {"ice_servers": [stun]}


@pytest.mark.parametrize(("url", "parts"), [
    ("turn:turn.example.org", ("turn", "turn.example.org", 3478, "udp")),
    ("turn:203.0.113.7:3479?transport=tcp", ("turn", "203.0.113.7", 3479, "tcp")),
    ("turns:turn.example.org", ("turns", "turn.example.org", 5349, "tcp")),
    ("turn:[2001:db8::7]:3478?transport=udp", ("turn", "2001:db8::7", 3478, "udp")),
])
def test_turn_urls_parse(url: str, parts: tuple[str, str, int, str]) -> None:
    parsed = parse_turn_url(url)
    assert (parsed.scheme, parsed.host, parsed.port, parsed.transport) == parts


@pytest.mark.parametrize("url", ["stun:turn.example.org", "https://turn.example.org",
                                 "turn:", "turn:host:99999", "turn:host?transport=sctp"])
def test_bad_turn_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError, match=r"TURN URL|out of range"):
        parse_turn_url(url)


def test_settings_read_comma_separated_urls_and_keep_the_secret_secret() -> None:
    settings = Settings(turn_secret=SECRET, turn_urls="turn:a.example:3478, turns:a.example")
    assert settings.turn_urls == ["turn:a.example:3478", "turns:a.example"]
    assert SECRET not in repr(settings)
    assert settings.turn_ttl_s == 86400


@pytest.mark.parametrize("given", [{"turn_secret": SECRET},
                                   {"turn_urls": "turn:a.example:3478"},
                                   {"turn_secret": "", "turn_urls": "turn:a.example"}])
def test_secret_and_urls_go_together(given: dict[str, str]) -> None:
    with pytest.raises(ValidationError, match="go together"):
        Settings(**given)


def test_a_bad_url_in_the_settings_names_itself() -> None:
    with pytest.raises(ValidationError, match=re.escape("'stun:a.example' is not a TURN URL")):
        Settings(turn_secret=SECRET, turn_urls="stun:a.example")
