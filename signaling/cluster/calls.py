"""Request and reply between nodes over the bus.

A call carries an id, the caller's node id and a deadline; the callee answers into the
caller's inbox. A call that finds its deadline passed is not run (an admit sent to a node
that was stuck for a minute must not happen a minute late), and a caller that hears
nothing in time gets `CallFailed`, never a silent hang: the command is then answered with
a retryable error, so nothing is lost without somebody being told.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

from signaling.ports import Bus, BusUnavailable, JsonRecord

log = logging.getLogger("circle.cluster.calls")

Serve = Callable[[str, dict[str, Any]], Awaitable[Any]]
"""(kind, body) -> the JSON-ready result."""


class CallFailed(Exception):
    """The other node did not answer in time, or the bus could not carry the call."""


class NotOwner(Exception):
    """Raised by a served call: this node does not own the session (the caller retries)."""


class Calls:
    """Outstanding calls of this node, and the serving of calls made to it."""

    def __init__(self, bus: Bus, timeout_s: float = 5.0,
                 wall: Callable[[], float] = time.time) -> None:
        self._bus = bus
        self._timeout_s = timeout_s
        self._wall = wall
        self._pending: dict[str, asyncio.Future[JsonRecord]] = {}
        self._serving: set[asyncio.Task[None]] = set()

    async def call(self, node_id: str, kind: str, body: dict[str, Any],
                   timeout_s: float | None = None) -> Any:
        """Run `kind` on `node_id`; its result, or NotOwner, or CallFailed."""
        timeout = self._timeout_s if timeout_s is None else timeout_s
        call_id = secrets.token_hex(8)
        reply: asyncio.Future[JsonRecord] = asyncio.get_running_loop().create_future()
        self._pending[call_id] = reply
        message = {"op": "call", "id": call_id, "from": self._bus.node_id, "kind": kind,
                   "deadline": self._wall() + timeout, "body": body}
        try:
            await self._bus.send(node_id, message)
            answer = await asyncio.wait_for(reply, timeout)
        except BusUnavailable as exc:
            raise CallFailed("the cluster bus is unavailable") from exc
        except TimeoutError:
            raise CallFailed(f"node {node_id} did not answer in {timeout:.1f} s") from None
        finally:
            self._pending.pop(call_id, None)
        if answer.get("not_owner"):
            raise NotOwner(node_id)
        if answer.get("failed"):
            raise CallFailed(f"node {node_id} could not run {kind}")
        return answer.get("result")

    def resolve(self, message: JsonRecord) -> None:
        """A reply arrived (late ones, for calls that timed out, are dropped)."""
        reply = self._pending.get(str(message.get("id")))
        if reply is not None and not reply.done():
            reply.set_result(message)

    def serve(self, message: JsonRecord, run: Serve) -> None:
        """Run an incoming call in a task of its own: the inbox must keep flowing."""
        task = asyncio.ensure_future(self._serve(message, run))
        self._serving.add(task)
        task.add_done_callback(self._serving.discard)

    async def _serve(self, message: JsonRecord, run: Serve) -> None:
        caller, call_id = str(message.get("from")), message.get("id")
        kind = str(message.get("kind"))
        deadline = message.get("deadline")
        if isinstance(deadline, int | float) and self._wall() > deadline:
            log.warning("a %s call arrived after its deadline; not run", kind)
            return
        answer: dict[str, Any] = {"op": "reply", "id": call_id}
        try:
            answer["result"] = await run(kind, dict(message.get("body") or {}))
        except NotOwner:
            answer["not_owner"] = True
        except Exception as exc:
            log.error("serving a %s call failed: %s", kind, type(exc).__name__)
            answer["failed"] = True
        try:
            await self._bus.send(caller, answer)
        except BusUnavailable:
            log.warning("could not answer a %s call: the bus is unavailable", kind)

    async def close(self) -> None:
        for task in list(self._serving):
            task.cancel()
        await asyncio.gather(*self._serving, return_exceptions=True)
