"""The key ring: every secret the server holds, in one owner-only JSON file.

Keys have separate jobs so that one leak does not give everything away: data keys encrypt
records (rotated; old ones kept for reading), the chain key MACs the ledger, the ledger key
signs stream heads, the token key signs join tokens, and the log key turns participant ids
into pseudonyms for logs.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import os
import secrets
import stat
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

_FORMAT = 1
_KEY_BYTES = 32
_PSEUDONYM_HEX = 16


class KeyRingError(Exception):
    """The key file is unusable (unreadable, malformed, or readable by others)."""


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _unb64(text: str, what: str) -> bytes:
    raw = base64.b64decode(text, validate=True)
    if len(raw) != _KEY_BYTES:
        raise KeyRingError(f"{what}: expected {_KEY_BYTES} bytes, got {len(raw)}")
    return raw


def _raw_private(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())


class KeyRing:
    """Data keys (by id), chain key, Ed25519 ledger and token keys, and the log key."""

    def __init__(
        self,
        path: Path,
        data_keys: dict[str, bytes],
        current_key_id: str,
        chain_key: bytes,
        ledger_signing_key: Ed25519PrivateKey,
        token_signing_key: Ed25519PrivateKey,
        log_key: bytes,
    ) -> None:
        if current_key_id not in data_keys:
            raise KeyRingError(f"current data key {current_key_id!r} is not in the ring")
        self._path = path
        self._data_keys = dict(data_keys)
        self._current = current_key_id
        self.chain_key = chain_key
        self.ledger_signing_key = ledger_signing_key
        self.token_private_key = token_signing_key
        self._log_key = log_key

    # -- loading and saving -------------------------------------------------------------

    @classmethod
    def load_or_create(cls, path: Path) -> KeyRing:
        """Read the key file, or create it (mode 0600, parent directory included).

        Creation links a fully written temporary file into place, so two processes starting
        at once cannot both believe their freshly made keys are the persisted ones.
        """
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not path.exists():
            fresh = cls(
                path,
                {"k1": secrets.token_bytes(_KEY_BYTES)},
                "k1",
                secrets.token_bytes(_KEY_BYTES),
                Ed25519PrivateKey.generate(),
                Ed25519PrivateKey.generate(),
                secrets.token_bytes(_KEY_BYTES),
            )
            tmp = fresh._write_temp()
            try:
                os.link(tmp, path)
            except FileExistsError:
                pass  # another process won the race: its keys are the real ones
            finally:
                tmp.unlink()
            _fsync_dir(path.parent)
        return cls._read(path)

    @classmethod
    def _read(cls, path: Path) -> KeyRing:
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise KeyRingError(
                f"{path} is accessible by group or others (mode {stat.filemode(mode)}); "
                "run chmod 600 on it"
            )
        try:
            doc: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
            if doc.get("format") != _FORMAT:
                raise KeyRingError(f"{path}: unsupported key file format {doc.get('format')!r}")
            return cls(
                path,
                {kid: _unb64(v, f"data key {kid}") for kid, v in doc["data_keys"].items()},
                doc["current_data_key"],
                _unb64(doc["chain_key"], "chain key"),
                Ed25519PrivateKey.from_private_bytes(
                    _unb64(doc["ledger_signing_key"], "ledger key")
                ),
                Ed25519PrivateKey.from_private_bytes(_unb64(doc["token_signing_key"], "token key")),
                _unb64(doc["log_key"], "log key"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise KeyRingError(f"{path}: malformed key file ({exc})") from exc

    def _document(self) -> dict[str, Any]:
        return {
            "format": _FORMAT,
            "data_keys": {kid: _b64(k) for kid, k in self._data_keys.items()},
            "current_data_key": self._current,
            "chain_key": _b64(self.chain_key),
            "ledger_signing_key": _b64(_raw_private(self.ledger_signing_key)),
            "token_signing_key": _b64(_raw_private(self.token_private_key)),
            "log_key": _b64(self._log_key),
        }

    def _write_temp(self) -> Path:
        """Write the ring to an fsynced owner-only temporary file next to the key file."""
        tmp = self._path.with_name(f".{self._path.name}.{secrets.token_hex(6)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(self._document(), fh, indent=2, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        return tmp

    # -- data keys ----------------------------------------------------------------------

    @property
    def current_key_id(self) -> str:
        """The id of the data key new records are encrypted with."""
        return self._current

    def data_key(self, key_id: str) -> bytes:
        """The data key `key_id`; re-reads the file once if another process rotated.

        Raises `KeyError` if the key is in neither memory nor the file.
        """
        if key_id not in self._data_keys:
            with contextlib.suppress(OSError, KeyRingError):
                self._data_keys.update(self._read(self._path)._data_keys)
        return self._data_keys[key_id]

    def rotate_data_key(self) -> str:
        """Add a new data key, make it current and persist atomically; returns its id.

        Old keys stay in the ring: records are never re-encrypted, so they are still needed.
        Keys another process added since this ring was loaded are merged in, not dropped.
        """
        with contextlib.suppress(OSError, KeyRingError):
            self._data_keys.update(self._read(self._path)._data_keys)
        key_id = f"k{len(self._data_keys) + 1}"
        while key_id in self._data_keys:
            key_id = f"k{secrets.token_hex(4)}"
        self._data_keys[key_id] = secrets.token_bytes(_KEY_BYTES)
        self._current = key_id
        os.replace(self._write_temp(), self._path)
        _fsync_dir(self._path.parent)
        return key_id

    @property
    def key_ids(self) -> list[str]:
        """Every data key id in the ring."""
        return sorted(self._data_keys)

    # -- signing and pseudonyms -----------------------------------------------------------

    @property
    def ledger_public_key(self) -> Ed25519PublicKey:
        """Verifies signed ledger heads."""
        return self.ledger_signing_key.public_key()

    @property
    def token_public_key(self) -> Ed25519PublicKey:
        """Verifies join tokens (PyJWT, algorithm EdDSA)."""
        return self.token_private_key.public_key()

    def pseudonym(self, value: str) -> str:
        """A short keyed tag for `value` (e.g. a participant id) so logs carry no PHI.

        The same value always maps to the same tag, so log lines can be correlated, but the
        tag cannot be reversed or recomputed without the log key.
        """
        digest = hmac.new(self._log_key, value.encode("utf-8"), hashlib.sha256).hexdigest()
        return digest[:_PSEUDONYM_HEX]


def _fsync_dir(directory: Path) -> None:
    """Make a rename or link in `directory` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
