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
_AD_LABEL = b"circle-record-v1"


def _associated_data(stream: str, seq: int, key_id: str) -> bytes:
    return frame(_AD_LABEL, stream.encode(), encode_seq(seq), key_id.encode())


def seal(key: bytes, key_id: str, stream: str, seq: int, plaintext: bytes) -> tuple[bytes, bytes]:
    """Encrypt `plaintext` for (stream, seq) under `key`; returns (nonce, ciphertext).

    The nonce is random (96 bits): keys are rotated long before the ~2**32 messages at which
    random GCM nonces start to risk a collision.
    """
    nonce = os.urandom(NONCE_BYTES)
    return nonce, AESGCM(key).encrypt(nonce, plaintext, _associated_data(stream, seq, key_id))


def unseal(
    key: bytes, key_id: str, stream: str, seq: int, nonce: bytes, ciphertext: bytes
) -> bytes:
    """Decrypt a sealed record; raises `cryptography.exceptions.InvalidTag` if anything moved."""
    return AESGCM(key).decrypt(nonce, ciphertext, _associated_data(stream, seq, key_id))
