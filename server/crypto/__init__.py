"""Cryptography for records at rest: the key ring, record sealing and the ledger's hash chain."""

from server.crypto.keyring import KeyRing, KeyRingError

__all__ = ["KeyRing", "KeyRingError"]
