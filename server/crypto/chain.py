"""The keyed hash chain over each ledger stream, and the message its signed head covers.

The chain uses HMAC with a key of its own (not a data key, not derivable from the database):
someone who can write the database but not read the key ring cannot rebuild the chain after
deleting, inserting or editing a record.
"""

from __future__ import annotations

import hashlib
import hmac

from server.crypto.framing import encode_seq, frame

_GENESIS = b"circle-genesis"
_HEAD_LABEL = b"circle-head-v1"


def genesis_mac(chain_key: bytes, stream: str) -> bytes:
    """mac_0 of a stream: binds the chain to its stream before the first record."""
    return hmac.new(chain_key, _GENESIS + stream.encode(), hashlib.sha256).digest()


def next_mac(
    chain_key: bytes,
    previous: bytes,
    stream: str,
    seq: int,
    key_id: str,
    nonce: bytes,
    ciphertext: bytes,
) -> bytes:
    """mac_n = HMAC(chain_key, mac_{n-1} || framed(stream, seq, key_id, nonce, ciphertext))."""
    body = frame(stream.encode(), encode_seq(seq), key_id.encode(), nonce, ciphertext)
    return hmac.new(chain_key, previous + body, hashlib.sha256).digest()


def head_message(stream: str, seq: int, mac: bytes) -> bytes:
    """The bytes the Ed25519 ledger key signs for a stream's head."""
    return frame(_HEAD_LABEL, stream.encode(), encode_seq(seq), mac)
