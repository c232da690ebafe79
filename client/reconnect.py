"""How a participant finds its way back: node lists, the backoff schedule, retry rules.

Pure functions (no I/O, randomness passed in) so the schedule can be tested exactly with a
seeded `random.Random`; `client.participant` runs them. The web client has the same rules
in client/web/src/backoff.ts and nodes.ts.
"""

from __future__ import annotations

import base64
import binascii
import json
import random
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import count
from urllib.parse import urlencode, urlsplit, urlunsplit


@dataclass(frozen=True)
class Backoff:
    """Capped exponential backoff with full jitter.

    Attempt n waits a uniform random time in [0, min(cap_s, base_s * 2**n)]: the ceiling
    grows so a node that is down is not hammered, and the whole range is random so that a
    draining node's clients do not all arrive at the next node in the same instant.
    """

    base_s: float = 0.25
    cap_s: float = 5.0

    def ceiling_s(self, attempt: int) -> float:
        # min() before the power would overflow: 2**1100 is not a float.
        return min(self.cap_s, self.base_s * 2.0 ** min(attempt, 64))


DEFAULT_BACKOFF = Backoff()

@dataclass(frozen=True)
class Attempt:
    """One reconnection attempt: wait `delay_s`, then connect to `nodes[node]`."""

    delay_s: float
    node: int


def reconnect_schedule(node_count: int, current: int, rng: random.Random,
                       backoff: Backoff = DEFAULT_BACKOFF) -> Iterator[Attempt]:
    """The attempts after losing node `current`, endlessly: the next node first, then on
    around the list (the node just lost is tried last in each round; with one node, e.g.
    a load balancer's address, every attempt goes to it)."""
    if node_count < 1:
        raise ValueError("no node to connect to")
    for attempt in count():
        yield Attempt(delay_s=rng.uniform(0.0, backoff.ceiling_s(attempt)),
                      node=(current + 1 + attempt) % node_count)


def parse_nodes(values: Iterable[str]) -> tuple[str, ...]:
    """Node URLs from repeated and/or comma-separated arguments, in order, without repeats."""
    nodes: list[str] = []
    for value in values:
        for part in value.split(","):
            url = part.strip().rstrip("/")
            if not url:
                continue
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ValueError(f"not an http(s) node URL: {url!r}")
            if url not in nodes:
                nodes.append(url)
    if not nodes:
        raise ValueError("no node URL given")
    return tuple(nodes)


def merge_nodes(given: Sequence[str], offered: object) -> tuple[str, ...]:
    """`given` (what the user named) followed by the server's `config.nodes` not in it.

    The user's URLs stay first and are never dropped: the server lists the nodes by their
    own addresses, which a client outside the clinic's network may not reach, while a load
    balancer's address it was given does. Entries that are not http(s) URLs are ignored.
    """
    if not isinstance(offered, list):
        return tuple(given)
    extra: list[str] = []
    for url in offered:
        if not isinstance(url, str):
            continue
        try:
            node = parse_nodes([url])[0]
        except ValueError:
            continue
        if node not in given and node not in extra:
            extra.append(node)
    return (*given, *extra)


def session_of(token: str) -> str | None:
    """The session id (`sid` claim) of a join token, read without verifying it.

    Only a routing hint (`?session=` lets nginx send all of a session's connections to one
    node); the server verifies the token itself. None when the token is not a readable JWT.
    """
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (binascii.Error, ValueError):
        return None
    sid = claims.get("sid") if isinstance(claims, dict) else None
    return sid if isinstance(sid, str) and sid else None


def with_session(url: str, session_id: str | None) -> str:
    """`url` with `?session=<id>` added (kept as is without a session id)."""
    if session_id is None:
        return url
    parts = urlsplit(url)
    query = "&".join(q for q in (parts.query, urlencode({"session": session_id})) if q)
    return urlunsplit(parts._replace(query=query))


def is_transient_refusal(code: str, message: str) -> bool:
    """A refusal worth retrying: no answer at all, or a conflict the server says will pass.

    The server words such conflicts "..., try again" (a session being reloaded or handed to
    another node); every other refusal (expired, revoked, removed, ended) is final.
    """
    return code == "unreachable" or (code == "conflict" and message.rstrip().endswith("try again"))


STABLE_S = 10.0
"""A connection up this long has settled: an unannounced server disconnect after it is news."""


def takes_turns(opened_after_unannounced: bool, uptime_s: float,
                stable_s: float = STABLE_S) -> bool:
    """Whether an unannounced server disconnect means another connection with the same join
    link (another window, another device) is taking the seat, so this one must stop.

    A node that drains says so first (the `reconnect` event); without it, the server closes
    a connection when a newer one of the same participant replaces it. The first such
    disconnect is followed (it may be a node going away without notice); a second one soon
    after the reconnection it caused is the other connection being replaced by ours, and
    following that too would have the two replace each other for ever.
    """
    return opened_after_unannounced and uptime_s < stable_s
