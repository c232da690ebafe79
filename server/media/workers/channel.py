"""Length-prefixed JSON frames over a Unix socket pair: the worker channel's transport.

`send` never waits: the control plane writes a frame into the socket's buffer and goes on
(a worker that is slow to read cannot stall a session's command path). Frames larger than
`MAX_FRAME_BYTES` are refused at both ends rather than buffered without bound.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from typing import Generic, TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError

MAX_FRAME_BYTES = 4 * 1024 * 1024
"""An SDP for fifteen participants is tens of KiB; anything near this is a bug."""

_HEADER = struct.Struct("!I")
In = TypeVar("In")


class ChannelClosed(Exception):
    """The other end went away (its process exited, or it sent something unreadable)."""


class Channel(Generic[In]):
    """One end of the channel: typed frames out, typed frames of `In` back."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 incoming: TypeAdapter[In]) -> None:
        self._reader = reader
        self._writer = writer
        self._incoming = incoming

    @classmethod
    async def over(cls, sock: socket.socket, incoming: TypeAdapter[In]) -> Channel[In]:
        reader, writer = await asyncio.open_unix_connection(sock=sock)
        return cls(reader, writer, incoming)

    def send(self, message: BaseModel) -> None:
        """Queue one frame; raises ChannelClosed once the other end is gone."""
        if self._writer.is_closing():
            raise ChannelClosed("channel closed")
        body = message.model_dump_json().encode()
        if len(body) > MAX_FRAME_BYTES:
            raise ValueError(f"frame of {len(body)} bytes exceeds {MAX_FRAME_BYTES}")
        self._writer.write(_HEADER.pack(len(body)) + body)

    async def receive(self) -> In:
        """The next frame; ChannelClosed at end of stream or on a malformed frame."""
        try:
            header = await self._reader.readexactly(_HEADER.size)
            (size,) = _HEADER.unpack(header)
            if size > MAX_FRAME_BYTES:
                raise ChannelClosed(f"frame of {size} bytes announced")
            body = await self._reader.readexactly(size)
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            raise ChannelClosed("end of stream") from exc
        try:
            return self._incoming.validate_json(body)
        except ValidationError as exc:
            raise ChannelClosed(f"malformed frame ({exc.error_count()} errors)") from None

    def close(self) -> None:
        self._writer.close()
