"""TURN credentials for each participant, in coturn's `use-auth-secret` scheme (TURN REST).

With CIRCLE_TURN_SECRET (coturn's `static-auth-secret`) and CIRCLE_TURN_URLS, every
`config` message carries one more ICE server: the TURN URLs with a username
`<unix expiry>:<opaque tag>` and a credential base64(HMAC-SHA1(secret, username)). coturn
recomputes the credential from the username and refuses it after the expiry, so a leaked
pair works for `ttl_s` at most and no password list is kept anywhere. The tag is a keyed
pseudonym of (session, participant): coturn's logs see neither, and the same person gets
another tag in another session.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from server.clock import Clock

TURN_URL = re.compile(
    r"^(?P<scheme>turns?):(?P<host>\[[0-9A-Fa-f:.]+\]|[^?:\[\]/]+)(?::(?P<port>[0-9]{1,5}))?"
    r"(?:\?transport=(?P<transport>udp|tcp))?$"
)
"""RFC 7065 TURN URIs as browsers and aiortc accept them: turn:host[:port][?transport=]."""

DEFAULT_PORTS = {"turn": 3478, "turns": 5349}


@dataclass(frozen=True)
class TurnUrl:
    scheme: str
    host: str
    port: int
    transport: str
    """udp or tcp; a `turns:` URL is always TLS over TCP."""

    @property
    def tls(self) -> bool:
        return self.scheme == "turns"


def parse_turn_url(url: str) -> TurnUrl:
    """The parts of a turn:/turns: URL, or ValueError saying what is wrong with it."""
    found = TURN_URL.match(url.strip())
    if found is None:
        raise ValueError(f"{url!r} is not a TURN URL (turn:host[:port][?transport=udp|tcp] "
                         "or turns:host[:port])")
    scheme = found["scheme"]
    port = int(found["port"] or DEFAULT_PORTS[scheme])
    if not 0 < port < 65536:
        raise ValueError(f"{url!r}: port {port} is out of range")
    transport = "tcp" if scheme == "turns" else (found["transport"] or "udp")
    return TurnUrl(scheme, found["host"].strip("[]"), port, transport)


def turn_password(secret: str, username: str) -> str:
    """coturn's `use-auth-secret` credential for `username`."""
    digest = hmac.new(secret.encode("utf-8"), username.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


@dataclass(frozen=True)
class TurnCredentials:
    """Mints the TURN ICE server of one participant's `config` message."""

    secret: str
    urls: Sequence[str]
    ttl_s: int
    clock: Clock
    pseudonym: Callable[[str], str]
    """A keyed, one-way tag of a string (the key ring's); never the participant id itself."""

    def username(self, session_id: str, participant_id: str) -> str:
        expiry = int(self.clock().timestamp()) + self.ttl_s
        return f"{expiry}:{self.pseudonym(f'turn {session_id} {participant_id}')}"

    def ice_server(self, session_id: str, participant_id: str) -> dict[str, Any]:
        username = self.username(session_id, participant_id)
        return {"urls": list(self.urls), "username": username,
                "credential": turn_password(self.secret, username)}


def client_config(ice_servers: Sequence[dict[str, Any]], turn: TurnCredentials | None
                  ) -> Callable[[str, str], dict[str, Any]]:
    """The `config` message of one participant's connection (gateway's `client_config`):
    the clinic's fixed ICE servers, plus fresh TURN credentials when TURN is configured."""

    def config(session_id: str, participant_id: str) -> dict[str, Any]:
        servers = [dict(server) for server in ice_servers]
        if turn is not None:
            servers.append(turn.ice_server(session_id, participant_id))
        return {"ice_servers": servers}

    return config
