"""Threats from docs/security.md ("Threats and their tests"), against a real `circle serve`.

A client that runs therapist-only commands, forged and stale join tokens, and the join
page's headers against leaking its token. Real server subprocess, real python-socketio
clients, the HTTP invite API; no mocks.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable
from typing import Any

import jwt
import pytest
import socketio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from client.participant import CircleClient
from server.crypto.keyring import KeyRing
from signaling.core.policy import THERAPIST_ONLY
from signaling.core.translate import command_for
from signaling.protocol import CLIENT_EVENTS, parse_client_event

from .clock import now
from .server_fixtures import Api, settle

pytestmark = pytest.mark.integration

THERAPIST, ATTACKER, WAITING = "t1", "c1", "c2"


def samples(therapist: str, attacker: str, waiting: str, room: str = "r1"
            ) -> dict[str, dict[str, Any]]:
    """A valid payload for every client event, aimed where it would do harm: at the
    therapist, at the waiting client, at the whole session. A new event in
    `signaling.protocol.CLIENT_EVENTS` needs a sample here (test_every_client_event_has_a_
    valid_payload_sample says so); whether it is therapist-only is read from the policy."""
    return {
        "admit": {"participant_id": waiting},
        "admit_all": {},
        "deny": {"participant_id": waiting, "reason": "not this group"},
        "mute": {"participant_id": therapist, "kind": "audio", "muted": True},
        "remove": {"participant_id": therapist},
        "lock": {"locked": True},
        "end": {},
        "signal": {"type": "offer", "sdp": "v=0\r\n"},
        "chat": {"text": "hello"},
        "hand": {"raised": True},
        "leave": {},
        "breakouts_save": {"auto": {"count": 2, "strategy": "random"}, "minutes": 5},
        "breakouts_open": {"rooms": [{"name": "Kitchen table",
                                      "participant_ids": [attacker, waiting],
                                      "roles": {attacker: "protagonist"}}], "minutes": 5},
        "breakout_move": {"participant_id": therapist, "room": room},
        "breakout_visit": {"room": room},
        "breakout_rotate": {},
        "breakout_swap": {"room": room},
        "breakout_extend": {"minutes": 60},
        "breakouts_close": {"grace_s": 0},
        "breakout_broadcast": {"text": "everyone back to the main room"},
        "breakout_help": {},
        "waiting_message": {"text": "you will not be admitted today",
                            "participant_id": waiting},
        "second_device": {"participant_id": therapist, "allow": True},
        "send_to_waiting": {"participant_id": attacker},
        "aside_open": {"participant_id": attacker},
        "aside_close": {"participant_id": therapist},
        "help": {},
        "checkin": {"location": "home", "region": "CA", "consent": True},
        "share_start": {},
        "share_stop": {"participant_id": therapist},
        "share_policy": {"clients_may_share": True},
        "e2ee_keys": {"keys": [{"to": "p1", "epoch": 1, "kid": "AAAAAA", "wrapped": "eA"}]},
    }


def therapist_only_events(room: str = "r1") -> dict[str, dict[str, Any]]:
    """Client events whose command the policy reserves for therapists, with their samples."""
    found = {}
    for event, payload in samples(THERAPIST, ATTACKER, WAITING, room).items():
        if event in CLIENT_EVENTS:
            command = command_for(parse_client_event(event, payload), seed=0)
            if isinstance(command, THERAPIST_ONLY):
                found[event] = payload
    return found


def test_every_client_event_has_a_valid_payload_sample() -> None:
    table = samples(THERAPIST, ATTACKER, WAITING)
    missing = sorted(set(CLIENT_EVENTS) - set(table))
    assert not missing, f"add a payload sample for {missing} to samples() in {__file__}"
    assert not set(table) - set(CLIENT_EVENTS), "samples for events that no longer exist"
    for event, payload in table.items():
        parse_client_event(event, payload)  # raises ProtocolError if the sample is invalid


def test_every_therapist_only_command_is_reached_by_a_sample() -> None:
    reached = {type(command_for(parse_client_event(event, payload), seed=0))
               for event, payload in samples(THERAPIST, ATTACKER, WAITING).items()
               if event in CLIENT_EVENTS}
    unreached = [kind.__name__ for kind in THERAPIST_ONLY if kind not in reached]
    assert not unreached, (f"therapist-only commands no client event sample produces: "
                           f"{unreached}; add the event's sample to samples() in {__file__}")
    assert len(therapist_only_events()) >= len(THERAPIST_ONLY)


def as_before(view: dict[str, Any]) -> dict[str, Any]:
    """A view without what always moves (rev, send time) and without the therapist's
    raised hand (the sync point below)."""
    out = {k: v for k, v in view.items() if k not in ("rev", "server_time")}
    if view["you"]["role"] == "therapist":
        out["you"] = {**view["you"], "hand": False}
    out["participants"] = [{**p, "hand": False} if p["role"] == "therapist" else p
                           for p in view["participants"]]
    return out


async def hand(therapist: CircleClient, raised: bool) -> dict[str, Any]:
    """Raise or lower the therapist's hand; its view once that shows. A sync point: every
    view pushed before it has arrived by then (one socket, in order)."""
    assert (await therapist.call("hand", {"raised": raised}))["ok"]
    return await therapist.wait_for(lambda s: s["you"]["hand"] is raised)


async def test_an_admitted_client_cannot_run_any_therapist_only_command(api: Api) -> None:
    """Every therapist-only command from an admitted client, aimed where it would do harm,
    first with the breakouts closed and then open (so moving, visiting, extending and
    closing have a real room to act on): each is refused `forbidden`, and neither the
    therapist's view nor the attacker's moves, nor does anyone get a notice."""
    sid = await api.create_session()
    therapist = await api.join(sid, THERAPIST, "Dr Kim Park", role="therapist")
    client = await api.join(sid, ATTACKER, "Mal Lory")
    waiting: CircleClient | None = None
    try:
        await therapist.wait_for(lambda s: len(s["waiting"]) == 1)
        assert (await therapist.call("admit", {"participant_id": ATTACKER}))["ok"]
        await client.wait_for(lambda s: s["you"]["status"] == "admitted")
        waiting = await api.join(sid, WAITING, "Ann Lee")
        await waiting.wait_for(lambda s: s["you"]["status"] == "waiting")
        await therapist.wait_for(lambda s: [w["id"] for w in s["waiting"]] == [WAITING])
        await attack_all(therapist, client, waiting, room="r1")

        opened = await therapist.call("breakouts_open", {
            "rooms": [{"name": "Kitchen table", "participant_ids": [ATTACKER]}],
            "minutes": 30})
        assert opened["ok"], opened
        view = await therapist.wait_for(lambda s: s["breakouts"]["open"])
        room = view["breakouts"]["rooms"][0]["id"]
        await client.wait_for(lambda s: s["you"]["room"] == room)
        await attack_all(therapist, client, waiting, room=room)
    finally:
        await settle(therapist, client, waiting)


async def refused_after_rate_limit(client: CircleClient, event: str,
                                   payload: dict[str, Any]) -> dict[str, Any]:
    """The ack of `event`, sent again while the connection's bucket says slow down: the
    attacks outnumber its burst, and the refusal that matters is the policy's."""
    deadline = time.monotonic() + 10
    while True:
        ack = await client.call(event, payload)
        if ack.get("error", {}).get("code") != "rate_limited" or time.monotonic() > deadline:
            return ack
        await asyncio.sleep(0.1)


async def attack_all(therapist: CircleClient, client: CircleClient, waiting: CircleClient,
                     room: str) -> None:
    attacks = therapist_only_events(room)
    # Sync point: the therapist raises a hand; the views that show it are the last ones
    # before the attacks (to the therapist, and to the attacker, who sees peers' hands).
    before = await hand(therapist, True)
    client_view = await client.wait_for(lambda s: s["rev"] == before["rev"])
    notices = len(client.notices), len(waiting.notices)

    for event, payload in attacks.items():
        ack = await refused_after_rate_limit(client, event, payload)
        assert ack["ok"] is False, (event, ack)
        assert ack["error"]["code"] == "forbidden", (event, ack)
        assert isinstance(ack["error"]["message"], str) and ack["error"]["message"]

    # And lowers it: the first views after every refused command was decided. Had any of
    # them changed the session, it shows.
    after = await hand(therapist, False)
    assert as_before(after) == as_before(before)
    assert after["rev"] == before["rev"] + 1, "one event in between: the hand"
    seen = await client.wait_for(lambda s: s["rev"] == after["rev"])
    assert as_before(seen) == as_before(client_view), "nor did the attacker's own view"
    # Nothing unrecorded went out either (broadcasts, waiting-room messages): the first
    # notice each gets after the attacks is a marker the therapist sent after them.
    assert (await therapist.call("waiting_message", {"text": "marker",
                                                     "participant_id": WAITING}))["ok"]
    await waiting.wait_until(lambda: len(waiting.notices) > notices[1])
    assert [n["text"] for n in waiting.notices[notices[1]:]] == ["marker"]
    assert (await therapist.call("breakout_broadcast", {"text": "marker"}))["ok"]
    await client.wait_until(lambda: len(client.notices) > notices[0])
    assert [n["text"] for n in client.notices[notices[0]:]] == ["marker"]
    assert waiting.status == "waiting"


# -- join tokens ------------------------------------------------------------------------


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def compact(header: dict[str, Any], claims: dict[str, Any], sign: Callable[[bytes], bytes]
            ) -> str:
    """A JWS in compact form, signed by `sign` over `header.claims` (any alg, even none)."""
    signing_input = (b64(json.dumps(header).encode()) + "." + b64(json.dumps(claims).encode()))
    return signing_input + "." + b64(sign(signing_input.encode()))


def hs256(secret: bytes) -> Callable[[bytes], bytes]:
    return lambda data: hmac.new(secret, data, hashlib.sha256).digest()


def eddsa(key: Ed25519PrivateKey) -> Callable[[bytes], bytes]:
    return key.sign


def flipped(signature: str) -> str:
    """The signature with its first bytes changed."""
    first = "A" if signature[0] != "A" else "B"
    return first * 4 + signature[4:]


async def refusal(url: str, auth: Any) -> tuple[str, str] | None:
    """(code, message) of the server's refusal at Socket.IO connect; None if it let us in."""
    sio = socketio.AsyncClient(reconnection=False)
    refused: list[tuple[str, str]] = []

    async def on_refused(data: Any) -> None:
        details = data.get("data") if isinstance(data, dict) else None
        code = details.get("code") if isinstance(details, dict) else None
        refused.append((str(code), str(data.get("message", "")) if isinstance(data, dict)
                        else ""))

    sio.on("connect_error", on_refused)
    try:
        await sio.connect(url, auth=auth, transports=["websocket"], wait_timeout=10,
                          retry=False)
    except socketio.exceptions.ConnectionError:
        await sio.eio.disconnect()
        assert refused, "refused without a reason"
        return refused[0]
    await sio.disconnect()
    return None


async def test_forged_altered_and_stale_join_tokens_are_refused_and_nobody_joins(
    api: Api,
) -> None:
    sid = await api.create_session()
    therapist = await api.join(sid, THERAPIST, "Dr Kim Park", role="therapist")
    try:
        real = (await api.invite(sid, ATTACKER, "Mal Lory", role="client"))["token"]
        header = jwt.get_unverified_header(real)
        claims = jwt.decode(real, options={"verify_signature": False})
        ring = KeyRing.load_or_create(api.server.data_dir / "keys.json")
        server_key = ring.token_private_key
        public = ring.token_public_key
        moment = int(now().timestamp())

        def with_claims(**changes: Any) -> dict[str, Any]:
            changed = {**claims, **changes}
            return {k: v for k, v in changed.items() if v is not None}

        def by_server(changed: dict[str, Any]) -> str:
            return compact(header, changed, eddsa(server_key))

        head, body, signature = real.split(".")
        other_claims = b64(json.dumps(with_claims(aud="circle-api")).encode())
        expired_at = moment - 3600
        attacks: dict[str, Any] = {
            "alg none": compact({**header, "alg": "none"}, claims, lambda data: b""),
            "alg None, signature kept": f"{b64(json.dumps({**header, 'alg': 'None'}).encode())}"
                                        f".{body}.{signature}",
            "HS256 keyed with the raw public key": compact(
                {**header, "alg": "HS256"}, claims,
                hs256(public.public_bytes(Encoding.Raw, PublicFormat.Raw))),
            "HS256 keyed with the PEM public key": compact(
                {**header, "alg": "HS256"}, claims,
                hs256(public.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))),
            "HS256 keyed with a guessed secret": compact(
                {**header, "alg": "HS256"}, claims, hs256(b"secret")),
            "HS256 keyed with the API key": compact(
                {**header, "alg": "HS256"}, claims, hs256(api.server.api_key.encode())),
            "EdDSA by another key": compact(header, claims, eddsa(Ed25519PrivateKey.generate())),
            "claims altered, signature kept": f"{head}.{other_claims}.{signature}",
            "right key, wrong audience": by_server(with_claims(aud="circle-api")),
            "right key, audience list without ours": by_server(with_claims(aud=["other"])),
            "right key, no audience": by_server(with_claims(aud=None)),
            "right key, not valid for an hour (nbf)": by_server(with_claims(nbf=moment + 3600)),
            "right key, expired an hour ago": by_server(with_claims(
                exp=expired_at, **({"iat": expired_at - 600} if "iat" in claims else {}))),
            "truncated": real[:-10],
            "signature flipped": f"{head}.{body}.{flipped(signature)}",
            "garbage": "garbage",
            "three dots": "a.b.c",
            "empty": "",
            "random base64": b64(secrets.token_bytes(300)),
            "huge": "e" * 60_000,
        }
        before = await hand(therapist, True)
        for what, token in attacks.items():
            result = await refusal(api.server.url, {"token": token})
            assert result is not None, f"{what}: let in"
            code, message = result
            assert code in ("forbidden", "invalid") and message, (what, result)
            if what.startswith("right key, expired"):
                assert "expired" in message, (what, message)
        for what, auth in {"no auth": None, "token not a string": {"token": 42},
                           "auth not an object": "token"}.items():
            result = await refusal(api.server.url, auth)
            assert result is not None and result[0] == "invalid" and result[1], (what, result)

        # Nobody joined: the therapist's view is as it was (no arrival, not even a refused
        # one: no event at all but the hand going down again).
        after = await hand(therapist, False)
        assert after["rev"] == before["rev"] + 1 and as_before(after) == as_before(before)
        assert after["waiting"] == [] and [p["id"] for p in after["participants"]] == [THERAPIST]
        # The control: the same claims signed by the server's own key do get in, so the
        # attacks above were refused for what was changed, not for how they were built.
        assert await refusal(api.server.url, {"token": by_server(claims)}) is None
        await therapist.wait_for(lambda s: [w["id"] for w in s["waiting"]] == [ATTACKER])
    finally:
        await settle(therapist)


# -- the join page ------------------------------------------------------------------------


def csp_directives(policy: str) -> dict[str, list[str]]:
    directives = {}
    for part in policy.split(";"):
        words = part.split()
        if words:
            directives[words[0].lower()] = [w.lower() for w in words[1:]]
    return directives


async def test_the_join_page_keeps_its_token_from_referrers_caches_and_frames(
    api: Api,
) -> None:
    sid = await api.create_session()
    token = (await api.invite(sid, ATTACKER, "Mal Lory"))["token"]
    async with api.http.get(f"{api.server.url}/join", params={"token": token}) as response:
        assert response.status == 200
        headers = response.headers
        page = await response.text()
    assert headers["Referrer-Policy"] == "no-referrer"
    assert "no-store" in [d.strip() for d in headers["Cache-Control"].split(",")]
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert "Content-Security-Policy" in headers
    csp = csp_directives(headers["Content-Security-Policy"])
    scripts = csp.get("script-src", csp.get("default-src"))
    assert scripts is not None, csp
    assert "'unsafe-inline'" not in scripts and "'unsafe-eval'" not in scripts, csp
    assert "*" not in scripts and "data:" not in scripts, csp
    # Clickjacking: no site may frame a page that holds a join token in its URL.
    assert csp.get("frame-ancestors") == ["'none'"], csp
    assert headers["X-Frame-Options"] == "DENY", "for browsers without frame-ancestors"
    assert token not in page, "the page does not echo the token"
