"""One checkpoint file: every stream's head as the server last saw it, signed, written atomically.

The file lives outside the database (beside the keys by default), so someone who can write
the database, even replace it with an older copy, cannot also move the checkpoint back: its
signature is made with the ledger's Ed25519 key from the key ring, over the whole set of heads
and a counter that grows with every write.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from server.ledger import canonical_json

FORMAT = 1
_LABEL = b"circle-checkpoint-v1\n"
"""Prefixed to what is signed, so a checkpoint signature can never pass as a head's."""
_MAC_BYTES = 32
_SIGNATURE_BYTES = 64


class CheckpointInvalid(Exception):
    """A checkpoint file that cannot be trusted: unreadable, malformed, or badly signed."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"checkpoint file {path}: {reason}")
        self.path = path
        self.reason = reason


@dataclass(frozen=True)
class Mark:
    """A stream's head (seq, chain MAC) as the server saw it after an append.

    `moved_back_to` is set when the server later found the database below this mark (the
    seq it found; 0: the stream was gone): the mark is then kept as evidence, never advanced.
    """

    seq: int
    mac: bytes
    moved_back_to: int | None = None


@dataclass(frozen=True)
class Checkpoint:
    """The signed content of one checkpoint file.

    `lineage` is a random id a file gets at its first write and keeps (its copy shares it),
    `since` the time of that first write: a lineage that started recently on a server that
    has run for long means the file was deleted and made anew.
    """

    lineage: str
    node: str
    counter: int
    since: datetime
    written_at: datetime
    streams: Mapping[str, Mark]


def new_lineage() -> str:
    """A fresh lineage id for a checkpoint file that has none to continue."""
    return secrets.token_hex(8)


def encode(checkpoint: Checkpoint, key: Ed25519PrivateKey) -> bytes:
    """The file's bytes: the checkpoint as JSON, signed over its canonical form."""
    body = _body(checkpoint)
    signed = {**body, "signature": _b64(key.sign(_LABEL + canonical_json(body)))}
    return json.dumps(signed, indent=1, sort_keys=True).encode("utf-8")


def decode(raw: bytes, key: Ed25519PublicKey, path: Path) -> Checkpoint:
    """The checkpoint in `raw`, after checking its signature; `CheckpointInvalid` otherwise."""
    try:
        doc = json.loads(raw)
    except ValueError:
        raise CheckpointInvalid(path, "not JSON (damaged or replaced)") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("signature"), str):
        raise CheckpointInvalid(path, "not a checkpoint file (no signature)")
    signature = doc.pop("signature")
    try:
        key.verify(_unb64(signature, _SIGNATURE_BYTES), _LABEL + canonical_json(doc))
    except (InvalidSignature, ValueError):
        raise CheckpointInvalid(
            path, "signature does not verify: the file was altered, or not written with this "
            "key ring"
        ) from None
    if doc.get("format") != FORMAT:
        raise CheckpointInvalid(path, f"unsupported checkpoint format {doc.get('format')!r}")
    try:
        return Checkpoint(
            lineage=str(doc["lineage"]),
            node=str(doc["node"]),
            counter=_int(doc["counter"]),
            since=datetime.fromisoformat(doc["since"]),
            written_at=datetime.fromisoformat(doc["written_at"]),
            streams={name: _mark(entry) for name, entry in doc["streams"].items()},
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        # Signed by our key but unreadable: a bug or a future format, never an attacker.
        raise CheckpointInvalid(path, f"malformed content ({exc!r})") from None


def read_checkpoint(path: Path, key: Ed25519PublicKey) -> Checkpoint | None:
    """The checkpoint in `path`, None if there is no such file; `CheckpointInvalid` if bad."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CheckpointInvalid(path, f"cannot be read ({exc.strerror or exc})") from None
    return decode(raw, key, path)


def write_atomic(path: Path, data: bytes) -> None:
    """Replace `path` with `data` so that a crash leaves the old file or the new, never half.

    Temporary file in the same directory (owner-only from creation), fsync, rename, fsync of
    the directory: the rename is durable once this returns.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def _body(checkpoint: Checkpoint) -> dict[str, Any]:
    streams: dict[str, Any] = {}
    for name, mark in checkpoint.streams.items():
        entry: dict[str, Any] = {"seq": mark.seq, "mac": _b64(mark.mac)}
        if mark.moved_back_to is not None:
            entry["moved_back_to"] = mark.moved_back_to
        streams[name] = entry
    return {
        "format": FORMAT,
        "lineage": checkpoint.lineage,
        "node": checkpoint.node,
        "counter": checkpoint.counter,
        "since": checkpoint.since.isoformat(),
        "written_at": checkpoint.written_at.isoformat(),
        "streams": streams,
    }


def _mark(entry: dict[str, Any]) -> Mark:
    moved = entry.get("moved_back_to")
    return Mark(
        _int(entry["seq"]), _unb64(entry["mac"], _MAC_BYTES), None if moved is None else _int(moved)
    )


def _int(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"expected an integer, got {value!r}")
    return value


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _unb64(text: str, size: int) -> bytes:
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, TypeError):
        raise ValueError("bad base64") from None
    if len(raw) != size:
        raise ValueError(f"expected {size} bytes, got {len(raw)}")
    return raw
