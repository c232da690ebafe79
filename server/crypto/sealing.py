"""AES-256-GCM sealing of one ledger record, bound to its place in the ledger.

The associated data names (stream, seq, key_id): a ciphertext copied to another session or
another position, or relabelled with another key id, no longer decrypts. Write access to
the database alone therefore cannot move, reorder or splice records unnoticed.
"""

from __future__ import annotations

import os

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from server.crypto.framing import encode_seq, frame

NONCE_BYTES = 12
RECORD_LABEL = b"circle-record-v1"
"""Ledger records. Data derived from a stream is sealed under a label of its own, so it can
never pass for one of the stream's records (nor a record for it)."""


def _associated_data(label: bytes, stream: str, seq: int, key_id: str) -> bytes:
    return frame(label, stream.encode(), encode_seq(seq), key_id.encode())


def seal(
    key: bytes, key_id: str, stream: str, seq: int, plaintext: bytes,
    *, label: bytes = RECORD_LABEL,
) -> tuple[bytes, bytes]:
    """Encrypt `plaintext` for (stream, seq) under `key`; returns (nonce, ciphertext).

    The nonce is random (96 bits): keys are rotated long before the ~2**32 messages at which
    random GCM nonces start to risk a collision.
    """
    nonce = os.urandom(NONCE_BYTES)
    ad = _associated_data(label, stream, seq, key_id)
    return nonce, AESGCM(key).encrypt(nonce, plaintext, ad)


def unseal(
    key: bytes, key_id: str, stream: str, seq: int, nonce: bytes, ciphertext: bytes,
    *, label: bytes = RECORD_LABEL,
) -> bytes:
    """Decrypt a sealed record; raises `cryptography.exceptions.InvalidTag` if anything moved."""
    return AESGCM(key).decrypt(nonce, ciphertext, _associated_data(label, stream, seq, key_id))
