"""One seat per person against a real `circle serve` (issue 12, part 3).

A second live connection with the same join link does not take the seat: it waits, the
therapist sees "second device" and decides, and the first keeps its place until then. The
same browser coming back after a drop proves itself with the resume secret the server gave
it and takes its seat back at once; one whose earlier connection is gone resumes as before.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest
import socketio

from client.participant import CircleClient
from client.reconnect import Backoff

from .server_fixtures import Api, settle

pytestmark = pytest.mark.integration

FAST = Backoff(base_s=0.05, cap_s=0.5)


def seat_of(view: dict[str, Any], pid: str) -> dict[str, Any]:
    return next(p for p in view["participants"] if p["id"] == pid)


async def admitted_pair(api: Api, sid: str) -> tuple[CircleClient, CircleClient, str]:
    """Therapist t1 and client c1 (admitted); and c1's join token."""
    therapist = await api.join(sid, "t1", "Dr Kim Park", role="therapist")
    token = (await api.invite(sid, "c1", "Ann Lee"))["token"]
    ann = CircleClient(api.server.url, token)
    await ann.connect()
    await therapist.wait_for(lambda s: [w["id"] for w in s["waiting"]] == ["c1"])
    assert (await therapist.call("admit", {"participant_id": "c1"}))["ok"]
    await ann.wait_for(lambda s: s["you"]["status"] == "admitted")
    return therapist, ann, token


async def test_a_second_device_waits_for_the_therapist(api: Api) -> None:
    sid = await api.create_session()
    therapist, ann, token = await admitted_pair(api, sid)
    second = CircleClient(api.server.url, token)
    third = CircleClient(api.server.url, token)
    try:
        # The same link opened elsewhere: it waits; the first keeps its seat.
        await second.connect()
        waiting = await second.wait_for(lambda s: s["you"].get("second_device") == "waiting")
        assert second.second_device and second.status == "admitted"
        assert waiting["participants"] == [] and waiting["session"]["title"] == ""
        assert "name" not in waiting["you"] and "waiting" not in waiting
        assert second.resume, "every accepted connection gets its own resume secret"
        prompt = await therapist.wait_for(lambda s: bool(s.get("second_devices")))
        assert [(d["id"], d["name"]) for d in prompt["second_devices"]] == [("c1", "Ann Lee")]
        assert prompt["waiting"] == [] and seat_of(prompt, "c1")["connected"]
        notice = await therapist.wait_notice("second_device")
        assert notice["participant_id"] == "c1"
        await ann.wait_notice("another_device")

        # The first keeps chatting; the waiting device gets no chat, no media, no rights.
        assert (await ann.call("chat", {"text": "still here"}))["ok"]
        assert (await therapist.wait_chat())["text"] == "still here"
        for event, data in (("chat", {"text": "let me in"}), ("hand", {"raised": True}),
                            ("signal", {"type": "offer", "sdp": "v=0"}),
                            ("admit", {"participant_id": "c1"})):
            refused = await second.call(event, data)
            assert refused["error"]["code"] == "forbidden", (event, refused)
            assert "another device" in refused["error"]["message"]
        assert second.chats == []
        assert ann.connected and ann.status == "admitted" and not ann.second_device

        # Keep the first: the waiting device is told and closed; nothing else changes.
        keep = await therapist.call("second_device", {"participant_id": "c1", "allow": False})
        assert keep == {"ok": True}
        refusal = await second.wait_notice("second_device_refused")
        assert refusal["text"] == "The therapist kept your place on your other device."
        await second.wait_until(lambda: second.gave_up is not None and not second.connected)
        assert second.gave_up is not None and second.gave_up.code == "refused"
        await therapist.wait_for(lambda s: s["second_devices"] == [])
        assert ann.connected and (await ann.call("hand", {"raised": True}))["ok"]

        # Another device; this time the therapist lets it take the seat.
        await third.connect()
        await third.wait_for(lambda s: s["you"].get("second_device") == "waiting")
        await therapist.wait_for(lambda s: [d["id"] for d in s["second_devices"]] == ["c1"])
        allow = await therapist.call("second_device", {"participant_id": "c1", "allow": True})
        assert allow == {"ok": True}
        moved = await ann.wait_notice("continued_elsewhere")
        assert moved["text"] == "This session continued on another device."
        await ann.wait_until(lambda: ann.gave_up is not None and not ann.connected)
        assert ann.gave_up is not None and ann.gave_up.code == "replaced"
        seated = await third.wait_for(lambda s: "second_device" not in s["you"])
        assert seated["you"]["status"] == "admitted" and seated["you"]["room"] == "main"
        assert seated["you"]["hand"] is True, "the seat itself moved, hand and all"
        assert {p["name"] for p in seated["participants"]} == {"Dr", "Ann"}
        after = await therapist.wait_for(lambda s: s["second_devices"] == [])
        assert after["waiting"] == [], "no re-admit"
        assert seat_of(after, "c1")["connected"]
        assert (await third.call("chat", {"text": "on my phone now"}))["ok"]
        await therapist.wait_until(lambda: therapist.chats[-1]["text"] == "on my phone now")
        # The first connection's close came back as a disconnect: it moved nothing.
        assert seat_of(therapist.state or {}, "c1")["connected"] and third.connected
    finally:
        await settle(therapist, ann, second, third)


async def test_a_waiting_device_that_leaves_withdraws_and_a_third_replaces_a_second(
    api: Api,
) -> None:
    sid = await api.create_session()
    therapist, ann, token = await admitted_pair(api, sid)
    second = CircleClient(api.server.url, token)
    third = CircleClient(api.server.url, token)
    try:
        await second.connect()
        await therapist.wait_for(lambda s: [d["id"] for d in s["second_devices"]] == ["c1"])
        await third.connect()
        await third.wait_for(lambda s: s["you"].get("second_device") == "waiting")
        await second.wait_notice("second_device_replaced")
        await second.wait_until(lambda: second.gave_up is not None)
        assert second.gave_up is not None and second.gave_up.code == "replaced"
        assert (await third.call("leave"))["ok"]
        await third.wait_until(lambda: not third.connected)
        await therapist.wait_for(lambda s: s["second_devices"] == [])
        assert ann.connected and ann.status == "admitted"
        assert seat_of(therapist.state or {}, "c1")["connected"]
    finally:
        await settle(therapist, ann, second, third)


async def test_the_waiting_device_takes_the_seat_when_the_first_goes(api: Api) -> None:
    sid = await api.create_session()
    therapist, ann, token = await admitted_pair(api, sid)
    second = CircleClient(api.server.url, token)
    try:
        await second.connect()
        await therapist.wait_for(lambda s: [d["id"] for d in s["second_devices"]] == ["c1"])
        await ann.close()  # its earlier connection is gone: nobody needs to decide
        seated = await second.wait_for(lambda s: "second_device" not in s["you"])
        assert seated["you"]["status"] == "admitted" and seated["participants"]
        view = await therapist.wait_for(lambda s: s["second_devices"] == [])
        assert view["waiting"] == [] and seat_of(view, "c1")["connected"]
        status, data = await api.request(
            "GET", api.attendance_query(sid, session=sid, format="json"))
        assert status == 200
        (row,) = [r for r in data["rows"] if r["participant_id"] == "c1"]
        assert row["disconnects"] == 0, "the seat moved; it never dropped"
    finally:
        await settle(therapist, ann, second)


class Link:
    """One proxied TCP connection. `cut` loses it for the client only: the client sees its
    transport close, while the server's side stays open and silent, as after a network
    drop the server has not noticed yet."""

    def __init__(self, down: tuple[asyncio.StreamReader, asyncio.StreamWriter],
                 up: tuple[asyncio.StreamReader, asyncio.StreamWriter]) -> None:
        self.down, self.up = down, up
        self.cut_off = False
        self.server_closing = asyncio.Event()
        """The server spoke on a cut link, or closed it: its close of a socket it had not
        seen drop (a close frame; the TCP close follows the close handshake's timeout)."""

    async def run(self) -> None:
        await asyncio.gather(self._pipe(self.down[0], self.up[1], to_server=True),
                             self._pipe(self.up[0], self.down[1], to_server=False))

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    *, to_server: bool) -> None:
        try:
            while data := await reader.read(65536):
                if self.cut_off:
                    if not to_server:
                        self.server_closing.set()
                    continue
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            if not to_server:
                self.server_closing.set()
            if not self.cut_off or not to_server:
                writer.close()

    def cut(self) -> None:
        self.cut_off = True
        self.down[1].transport.abort()


class Proxy:
    """A TCP proxy on loopback (port chosen by the kernel) in front of the server."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.links: list[Link] = []
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.url = ""

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up = await asyncio.open_connection("127.0.0.1", self.target_port)
        link = Link((reader, writer), up)
        self.links.append(link)
        await link.run()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for link in self.links:
            for _, writer in (link.down, link.up):
                with contextlib.suppress(Exception):
                    writer.transport.abort()


async def test_a_dropped_client_with_its_resume_secret_resumes_at_once(api: Api) -> None:
    sid = await api.create_session()
    proxy = Proxy(api.server.port)
    await proxy.start()
    therapist = await api.join(sid, "t1", "Dr Kim Park", role="therapist")
    token = (await api.invite(sid, "c1", "Ann Lee"))["token"]
    ann = CircleClient(proxy.url, token, backoff=FAST)
    views: list[tuple[socketio.AsyncClient, dict[str, Any]]] = []
    ann.on_state.append(lambda view: views.append((ann.sio, view)))
    try:
        await ann.connect()
        await therapist.wait_for(lambda s: [w["id"] for w in s["waiting"]] == ["c1"])
        assert (await therapist.call("admit", {"participant_id": "c1"}))["ok"]
        await ann.wait_for(lambda s: s["you"]["status"] == "admitted")
        first_secret, first_socket = ann.resume, ann.sio
        (link,) = proxy.links

        link.cut()  # the client loses its connection; the server does not notice
        await ann.wait_until(lambda: ann.reconnects == 1 and ann.connected
                             and any(sio is ann.sio for sio, _ in views), timeout=15)
        assert ann.sio is not first_socket and ann.resume != first_secret, "a new secret"
        back = next(view for sio, view in reversed(views) if sio is ann.sio)
        assert back["you"]["status"] == "admitted" and "second_device" not in back["you"]
        assert back["you"]["room"] == "main" and back["participants"]
        # The server had not seen the drop: it closes the old socket only now, replaced.
        await asyncio.wait_for(link.server_closing.wait(), 10)
        view = therapist.state or {}
        assert view["second_devices"] == [] and view["waiting"] == []
        assert seat_of(view, "c1")["connected"]
        assert (await ann.call("chat", {"text": "back"}))["ok"]
        assert (await therapist.wait_chat())["text"] == "back"
        status, data = await api.request(
            "GET", api.attendance_query(sid, session=sid, format="json"))
        assert status == 200
        (row,) = [r for r in data["rows"] if r["participant_id"] == "c1"]
        assert row["disconnects"] == 0, "no drop was ever recorded: the seat was resumed"
    finally:
        await settle(therapist, ann)
        await proxy.close()


async def test_a_client_whose_earlier_connection_is_gone_resumes_without_a_new_admit(
    api: Api,
) -> None:
    sid = await api.create_session()
    therapist, ann, token = await admitted_pair(api, sid)
    other = CircleClient(api.server.url, token)  # another device: it has no secret
    try:
        await ann.drop()
        await therapist.wait_for(lambda s: not seat_of(s, "c1")["connected"])
        await other.connect()
        view = await other.wait_for(lambda s: s["you"]["status"] == "admitted")
        assert "second_device" not in view["you"] and view["you"]["room"] == "main"
        after = await therapist.wait_for(lambda s: seat_of(s, "c1")["connected"])
        assert after["waiting"] == [] and after["second_devices"] == [], "no new admit"
    finally:
        await settle(therapist, ann, other)
