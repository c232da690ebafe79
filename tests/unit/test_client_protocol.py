"""The Python client checks every server message against signaling.protocol."""

from __future__ import annotations

from client.participant import CircleClient


async def test_a_message_that_does_not_fit_is_recorded_and_not_applied() -> None:
    client = CircleClient("http://127.0.0.1:9", "token")
    state = client.sio.handlers["/"]["state"]
    await state({"rev": "not a number", "you": {}})
    assert client.state is None
    assert client.protocol_errors and client.protocol_errors[0].startswith("state:")
    good = {"rev": 3, "session": {}, "you": {"status": "waiting"}, "participants": [],
            "breakouts": {"open": False}, "server_time": "2026-11-02T15:00:00+00:00"}
    await state(good)
    assert client.state == good and len(client.protocol_errors) == 1
    await client.sio.handlers["/"]["notice"]({"kind": "help", "text": "x", "room": "r1"})
    assert client.notices == [{"kind": "help", "text": "x", "room": "r1"}], "extras are kept"
