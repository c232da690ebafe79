"""`python -m client` joins, waits, is admitted, chats, and reports what it received."""

from __future__ import annotations

import asyncio
import sys

import pytest

from client.participant import MediaOptions

from .server_fixtures import Api, settle

pytestmark = pytest.mark.integration


async def test_command_line_client_joins_and_reports(api: Api) -> None:
    sid = await api.create_session()
    therapist = await api.join(sid, "t1", "Dr Kim Park", role="therapist",
                               media=MediaOptions(audio=True, video=True))
    invite = await api.invite(sid, "c1", "Ann Lee")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "client", "--token", invite["token"], "--url", api.server.url,
        "--seconds", "6", "--audio-only", "--say", "hello from the CLI",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        await therapist.wait_for(lambda s: len(s["waiting"]) == 1, timeout=15)
        assert (await therapist.call("admit", {"participant_id": "c1"}))["ok"]
        chat = await therapist.wait_chat(timeout=15)
        assert chat["text"] == "hello from the CLI"
        out, err = await asyncio.wait_for(process.communicate(), timeout=30)
    finally:
        if process.returncode is None:
            process.kill()
        await settle(therapist)
    text = out.decode()
    assert process.returncode == 0, err.decode()
    assert "waiting" in text and "admitted in main" in text
    # A client knows peers by first name and handle, never by participant id.
    dr = f"received from Dr ({therapist.handle_of('t1')}): "
    assert dr in text and "t1" not in text, text
    frames = int(text.split(dr)[1].split(" video frames")[0])
    assert frames > 0, text


async def test_command_line_client_explains_a_refusal(api: Api) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "client", "--token", "not-a-token", "--url", api.server.url,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode == 2
    assert "refused: this join link is not valid" in err.decode()
