"""Issue 16 against a real `circle serve`: the signaling of end-to-end encrypted sessions.

The Python client cannot encrypt media (aiortc has no hook on encoded frames), so it is
refused from e2ee sessions with the reason; given a public key it can still take part in
the key exchange without media, which is how these tests see what the server routes.
The browsers' encryption itself is tested in Chromium (tests/browser/test_e2ee_browser.py).
"""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from client.participant import CircleClient, JoinRefused

from .server_fixtures import Api, settle

pytestmark = pytest.mark.integration


def new_public_key() -> str:
    point = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        Encoding.X962, PublicFormat.UncompressedPoint)
    return base64.urlsafe_b64encode(point).rstrip(b"=").decode()


async def keyed(api: Api, sid: str, pid: str, name: str, role: str = "client") -> CircleClient:
    token = (await api.invite(sid, pid, name, role))["token"]
    member = CircleClient(api.server.url, token, e2ee_key=new_public_key())
    await member.connect()
    return member


async def test_the_python_client_is_refused_from_an_e2ee_session_with_the_reason(
    api: Api,
) -> None:
    sid = await api.create_session(e2ee=True)
    status, summary = await api.request("GET", f"/api/v1/sessions/{sid}")
    assert status == 200 and summary["e2ee"] is True
    token = (await api.invite(sid, "c1", "Ann Lee"))["token"]
    with pytest.raises(JoinRefused) as refused:
        await CircleClient(api.server.url, token).connect()
    assert refused.value.code == "conflict"
    assert "end-to-end encrypted and this app cannot encrypt media" in refused.value.message
    with pytest.raises(ValueError, match="cannot encrypt media"):
        CircleClient(api.server.url, token, media=object(), e2ee_key=new_public_key())  # type: ignore[arg-type]
    _, plain = await api.request("GET", f"/api/v1/sessions/{await api.create_session()}")
    assert plain["e2ee"] is False, "the clinic default here is off"


async def test_wrapped_keys_reach_admitted_roommates_and_nobody_else(api: Api) -> None:
    sid = await api.create_session(e2ee=True)
    kim = await keyed(api, sid, "t1", "Dr Kim Park", "therapist")
    ann = await keyed(api, sid, "c1", "Ann Lee")
    bo = await keyed(api, sid, "c2", "Bo Diaz")
    try:
        await kim.wait_for(lambda s: {w["id"] for w in s["waiting"]} == {"c1", "c2"})
        assert (await kim.call("admit", {"participant_id": "c1"}))["ok"]
        view = await ann.wait_for(lambda s: s["you"]["status"] == "admitted"
                                  and len(s["participants"]) == 2)
        assert view["session"]["e2ee"] is True
        handles = {p["name"]: p["handle"] for p in view["participants"]}
        assert all(p["key"] for p in view["participants"]), "roommates' public keys"
        bo_handle = (await kim.wait_for(
            lambda s: any(w["id"] == "c2" for w in s["waiting"])))["waiting"][0]["handle"]

        keys = [{"to": to, "epoch": 3, "kid": "q83vEQ", "wrapped": "c2VhbGVk"}
                for to in (handles["Dr"], bo_handle)]
        ack = await ann.call("e2ee_keys", {"keys": keys})
        assert ack == {"ok": True, "delivered": 1}, "not to Bo: he is still waiting"
        got = await kim.wait_for(lambda s: bool(kim.media_keys))
        assert got is not None
        assert kim.media_keys == [{"from": "c1", "handle": handles["Ann"],
                                   "key": view["you"]["key"], "epoch": 3, "kid": "q83vEQ",
                                   "wrapped": "c2VhbGVk"}]
        assert bo.media_keys == []
        refused = await bo.call("e2ee_keys", {"keys": keys})
        assert refused["error"]["code"] == "forbidden"
        bad = await ann.call("e2ee_keys", {"keys": [{"to": "c1", "epoch": 1, "kid": "x",
                                                     "wrapped": "!"}]})
        assert bad["error"]["code"] == "invalid"
    finally:
        await settle(kim, ann, bo)
