"""Sealed attendance rows of ended sessions, reused only while the session's stream is unchanged.

A finished session's rows never change, yet projecting them means reading, decrypting and
replaying every record of it; a month of a busy IOP program is some 90,000 records. So the
rows of an ended session are kept, per session, in the `attendance_rows` table:

* sealed with AES-256-GCM under the current data key, bound (associated data) to the
  session id, the seq of the stream head they were projected at and the key id, under a
  label of their own (`ROWS_LABEL`), so nothing of them is readable at rest and an entry
  cannot be moved to another session or position, nor pass for a ledger record;
* used only while the stream's stored head is still at that seq *and* chain MAC (sealed
  inside the entry): an event appended since, a rolled-back or rewritten stream, all are a
  miss, and the rows are projected again from the ledger, fully checked (`Ledger.load_many`);
* used only for exports under the same rules (clinic zone, late and left-early thresholds)
  and the same code: the entry carries a fingerprint of the rules and of every source file
  of the projection (`server/attendance`, `signaling/core`), so an upgrade that changes a
  rule or a column recomputes rather than serving rows of the old rules;
* made only for a session that has ended and whose every record is at or before the
  export's `as_of`: the rows of a live session depend on `as_of` and are never kept.

An entry that does not decrypt is a miss (and is overwritten). The table is a derivation:
`circle verify` does not read it, and emptying it costs one slower export.
"""

from __future__ import annotations

import hashlib
import json
import logging
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any, Final, Protocol

from cryptography.exceptions import InvalidTag

import signaling.core
from server.attendance.rows import AttendanceRow
from server.attendance.service import Rules
from server.crypto.keyring import KeyRing
from server.crypto.sealing import seal, unseal
from server.ledger import LoadedStream
from server.storage.rows_cache_store import SealedRows
from signaling.core import events as e

log = logging.getLogger("circle.attendance.cache")

ROWS_LABEL: Final = b"circle-attendance-rows-v1"
FORMAT: Final = 1
_ENDED: Final = e.SessionEnded.type_name


class StreamReader(Protocol):
    """What the cache needs of the ledger (`server.ledger.Ledger`)."""

    async def head_positions(self, streams: Sequence[str]) -> dict[str, tuple[int, bytes]]: ...

    async def load_many(self, streams: Sequence[str]) -> dict[str, LoadedStream]: ...


class RowStore(Protocol):
    """Where sealed entries live (`server.storage.rows_cache_store.SqlRowCacheStore`)."""

    async def get_many(self, session_ids: Sequence[str]) -> dict[str, SealedRows]: ...

    async def put_many(self, entries: Sequence[SealedRows]) -> None: ...


# -- rows as JSON values, from AttendanceRow's own type hints ------------------------------------

Decoder = Callable[[Any], Any]


def _decoder(hint: Any) -> Decoder | None:
    """How to turn the JSON form of a `hint` value back; None: as it is. Raises TypeError
    for a type this codec does not know (caching is then off, see `_layout`)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):
        inner = [a for a in args if a is not type(None)]
        if len(inner) != 1:
            raise TypeError(f"unsupported union {hint!r}")
        decode = _decoder(inner[0])
        return None if decode is None else (lambda v: None if v is None else decode(v))
    if origin is tuple:
        item = _decoder(args[0])
        return tuple if item is None else (lambda v: tuple(item(x) for x in v))
    if origin is typing.Literal or hint in (str, int, bool, float):
        return None
    if hint is datetime:
        return datetime.fromisoformat
    if hint is date:
        return date.fromisoformat
    if hint is Decimal:
        return Decimal
    raise TypeError(f"unsupported field type {hint!r}")


def _encode(value: Any) -> Any:
    if isinstance(value, date):  # datetime too
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, tuple):
        return [_encode(v) for v in value]
    return value


@cache
def _layout() -> tuple[tuple[str, ...], tuple[tuple[int, Decoder], ...]] | None:
    """Field names of AttendanceRow and the decoders of those that need one; None when a
    field has a type the codec does not know (then nothing is cached, nothing breaks)."""
    hints = typing.get_type_hints(AttendanceRow)
    names = tuple(hints)
    try:
        decoders = tuple((i, d) for i, n in enumerate(names) if (d := _decoder(hints[n])))
    except TypeError as exc:
        log.warning("attendance row cache off: %s", exc)
        return None
    return names, decoders


def encode_rows(rows: Sequence[AttendanceRow]) -> list[list[Any]]:
    layout = _layout()
    if layout is None:
        raise TypeError("rows cannot be encoded")
    names = layout[0]
    return [[_encode(getattr(row, n)) for n in names] for row in rows]


def decode_rows(values: Sequence[list[Any]]) -> list[AttendanceRow]:
    layout = _layout()
    if layout is None:
        raise TypeError("rows cannot be decoded")
    names, decoders = layout
    rows = []
    for row in values:
        for i, decode in decoders:
            row[i] = decode(row[i])
        rows.append(AttendanceRow(**dict(zip(names, row, strict=True))))
    return rows


# -- the fingerprint -----------------------------------------------------------------------------


@cache
def code_digest() -> str:
    """A digest of every source file the rows are a function of: the projection (this
    package) and the session core it replays (`signaling/core`)."""
    digest = hashlib.sha256()
    for package in (Path(__file__).parent, Path(signaling.core.__file__).parent):
        for path in sorted(package.glob("*.py")):
            digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    hints = typing.get_type_hints(AttendanceRow)
    digest.update(repr(sorted((n, str(h)) for n, h in hints.items())).encode())
    return digest.hexdigest()


def fingerprint(rules: Rules) -> str:
    """What an entry must have been made under to be used under `rules` by this code."""
    return hashlib.sha256(f"{FORMAT};{code_digest()};{rules.key}".encode()).hexdigest()


def final_at(records: Sequence[Mapping[str, Any]]) -> datetime | None:
    """When the record of an ended session stops changing (its latest event); None while
    the session has not ended."""
    if not any(r.get("type") == _ENDED for r in records):
        return None
    times = [datetime.fromisoformat(r["at"]) for r in records if isinstance(r.get("at"), str)]
    return max(times, default=None)


# -- the reader ----------------------------------------------------------------------------------


class CachedRows:
    """A `service.RowReader`: sealed rows for unchanged ended sessions, the ledger for the rest."""

    def __init__(self, ledger: StreamReader, store: RowStore, keyring: KeyRing) -> None:
        self._ledger = ledger
        self._store = store
        self._keys = keyring
        self.hits = 0
        self.misses = 0
        self.stored = 0

    async def rows(
        self, session_ids: Sequence[str], as_of: datetime, rules: Rules
    ) -> dict[str, list[AttendanceRow]]:
        """Rows per session id; every id is a key ([] for a session without records)."""
        usable = _layout() is not None
        mark = fingerprint(rules)
        positions = await self._ledger.head_positions(session_ids)
        entries = await self._store.get_many(list(positions)) if usable else {}
        found: dict[str, list[AttendanceRow]] = {}
        for sid in session_ids:
            entry, position = entries.get(sid), positions.get(sid)
            if entry is not None and position is not None:
                rows = self._open(entry, position, mark, as_of)
                if rows is not None:
                    found[sid] = rows
        self.hits += len(found)
        misses = [sid for sid in session_ids if sid not in found]
        self.misses += len(misses)
        if not misses:
            return found
        loaded = await self._ledger.load_many(misses)
        fresh: list[SealedRows] = []
        for sid in misses:
            stream = loaded[sid]
            rows = rules.project(stream.records, as_of)
            found[sid] = rows
            ended = final_at(stream.records)
            if usable and stream.position is not None and ended is not None and ended <= as_of:
                fresh.append(self._seal(sid, stream.position, mark, ended, rows))
        await self._store.put_many(fresh)
        self.stored += len(fresh)
        return found

    def _seal(self, sid: str, position: tuple[int, bytes], mark: str, ended: datetime,
              rows: list[AttendanceRow]) -> SealedRows:
        seq, mac = position
        body = json.dumps({"fingerprint": mark, "head_mac": mac.hex(),
                           "final_at": ended.isoformat(), "rows": encode_rows(rows)},
                          separators=(",", ":"), ensure_ascii=False).encode()
        key_id = self._keys.current_key_id
        nonce, ciphertext = seal(self._keys.data_key(key_id), key_id, sid, seq, body,
                                 label=ROWS_LABEL)
        return SealedRows(sid, seq, key_id, nonce, ciphertext)

    def _open(self, entry: SealedRows, position: tuple[int, bytes], mark: str,
              as_of: datetime) -> list[AttendanceRow] | None:
        """The entry's rows if it is current for this stream position, rules and `as_of`."""
        seq, mac = position
        if entry.head_seq != seq:
            return None
        try:
            key = self._keys.data_key(entry.key_id)
            body = json.loads(unseal(key, entry.key_id, entry.session_id, entry.head_seq,
                                     entry.nonce, entry.ciphertext, label=ROWS_LABEL))
        except (KeyError, InvalidTag, ValueError):
            log.warning("attendance row cache: an entry does not open; recomputing it")
            return None
        if (body.get("fingerprint") != mark or body.get("head_mac") != mac.hex()
                or datetime.fromisoformat(body["final_at"]) > as_of):
            return None
        return decode_rows(body["rows"])
