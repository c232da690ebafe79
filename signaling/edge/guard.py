"""python-socketio's server, refusing what Circle's protocol never uses.

Circle has no binary events, but python-socketio accepts a binary packet header announcing
any number of attachments and buffers each attachment until the count is reached: one join
link could make the server hold a megabyte per frame until disconnect. Here a binary header
or attachment closes the connection before anything is buffered. A malformed frame, on a
bare transport too, closes it as well, with one log line per kind a minute instead of
python-socketio's traceback per frame.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import socketio

log = logging.getLogger("circle.socket")

BINARY_PACKET_TYPES = ("5", "6")
"""Socket.IO's BINARY_EVENT and BINARY_ACK, as the first character of a text frame."""
LOG_EVERY_S = 60.0


class ThrottledLog(logging.Filter):
    """Lets each distinct message through once a minute, without its traceback: frames an
    Engine.IO transport cannot parse are logged by python-engineio itself, per frame."""

    def __init__(self) -> None:
        super().__init__()
        self._last: dict[str, float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        now = time.monotonic()
        key = str(record.msg)
        if now - self._last.get(key, -LOG_EVERY_S) < LOG_EVERY_S:
            return False
        self._last[key] = now
        record.exc_info = None
        record.exc_text = None
        return True


class GuardedServer(socketio.AsyncServer):  # type: ignore[misc]
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        throttle = ThrottledLog()
        for logger in {self.logger, self.eio.logger}:
            logger.addFilter(throttle)
        self._last_logged: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        self.refused: dict[str, int] = {"binary": 0, "malformed": 0}
        """Connections closed, by reason (for tests and /metrics)."""

    async def _handle_eio_message(self, eio_sid: str, data: Any) -> None:
        if isinstance(data, bytes) or (isinstance(data, str)
                                       and data[:1] in BINARY_PACKET_TYPES):
            await self._refuse(eio_sid, "binary")
            return
        try:
            await super()._handle_eio_message(eio_sid, data)
        except (ValueError, KeyError, IndexError, TypeError):
            await self._refuse(eio_sid, "malformed")

    async def _refuse(self, eio_sid: str, reason: str) -> None:
        self.refused[reason] += 1
        now = time.monotonic()
        if now - self._last_logged.get(reason, -LOG_EVERY_S) >= LOG_EVERY_S:
            extra = self._suppressed.pop(reason, 0)
            log.warning("closed a connection that sent a %s Socket.IO packet%s", reason,
                        f" ({extra} more since the last report)" if extra else "")
            self._last_logged[reason] = now
        else:
            self._suppressed[reason] = self._suppressed.get(reason, 0) + 1
        await self.eio.disconnect(eio_sid)
