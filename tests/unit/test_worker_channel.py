"""The media worker channel: typed frames over a socket pair, refused when malformed."""

from __future__ import annotations

import asyncio
import socket
import struct

import pytest

from server.media.workers import messages as m
from server.media.workers.channel import MAX_FRAME_BYTES, Channel, ChannelClosed
from signaling.ports import MediaGrant, MediaPlan


async def pair() -> tuple[Channel[m.ToWorker], Channel[m.FromWorker], socket.socket]:
    a, b = socket.socketpair()
    raw = b.dup()
    return await Channel.over(a, m.TO_WORKER), await Channel.over(b, m.FROM_WORKER), raw


async def test_plans_and_signals_cross_in_order_and_typed() -> None:
    worker_end, control_end, _ = await pair()
    plan = MediaPlan("s1", {"c1": MediaGrant("c1", "main", True, False)})
    control_end.send(m.ApplyPlan.of(plan))
    control_end.send(m.Signal(request=7, session_id="s1", participant_id="c1", kind="offer",
                              sdp="v=0\r\n"))
    first, second = await worker_end.receive(), await worker_end.receive()
    assert isinstance(first, m.ApplyPlan) and first.plan() == plan
    assert isinstance(second, m.Signal) and (second.request, second.kind) == (7, "offer")
    worker_end.send(m.SignalReply(request=7, error="no media path"))
    reply = await control_end.receive()
    assert isinstance(reply, m.SignalReply) and reply.error == "no media path"


async def test_end_of_stream_and_malformed_frames_close_the_channel() -> None:
    worker_end, _control_end, raw = await pair()
    raw.sendall(struct.pack("!I", 7) + b'{"x": 1')
    with pytest.raises(ChannelClosed, match="malformed"):
        await worker_end.receive()
    worker_end2, _control_end2, raw2 = await pair()
    raw2.sendall(struct.pack("!I", MAX_FRAME_BYTES + 1))
    with pytest.raises(ChannelClosed, match="announced"):
        await worker_end2.receive()
    worker_end3, control_end3, raw3 = await pair()
    control_end3.close()
    raw3.close()
    with pytest.raises(ChannelClosed, match="end of stream"):
        await asyncio.wait_for(worker_end3.receive(), 5)


async def test_an_oversized_frame_is_refused_at_the_sender() -> None:
    _, control_end, _ = await pair()
    huge = m.Signal(request=1, session_id="s", participant_id="p", kind="offer",
                    sdp="a" * (MAX_FRAME_BYTES + 1))
    with pytest.raises(ValueError, match="exceeds"):
        control_end.send(huge)
