"""KeyRing: file creation and permissions, persistence, rotation, token keys, pseudonyms."""

from __future__ import annotations

import json
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
import pytest

from server.crypto.keyring import KeyRing, KeyRingError


def _path(tmp_path: Path) -> Path:
    return tmp_path / "nested" / "dir" / "keyring.json"


def test_creates_owner_only_file_and_directory(tmp_path: Path) -> None:
    ring = KeyRing.load_or_create(_path(tmp_path))
    mode = stat.S_IMODE(_path(tmp_path).stat().st_mode)
    assert mode == 0o600
    assert ring.current_key_id == "k1"
    assert [p.name for p in _path(tmp_path).parent.iterdir()] == ["keyring.json"]  # no temp


def test_reload_gives_the_same_keys(tmp_path: Path) -> None:
    first = KeyRing.load_or_create(_path(tmp_path))
    second = KeyRing.load_or_create(_path(tmp_path))
    assert second.data_key("k1") == first.data_key("k1")
    assert second.chain_key == first.chain_key
    assert second.pseudonym("p_1") == first.pseudonym("p_1")
    message = b"head"
    second.ledger_public_key.verify(first.ledger_signing_key.sign(message), message)


def test_keys_have_separate_jobs(tmp_path: Path) -> None:
    ring = KeyRing.load_or_create(_path(tmp_path))
    secrets = {ring.data_key("k1"), ring.chain_key}
    assert len(secrets) == 2 and all(len(s) == 32 for s in secrets)
    assert ring.ledger_public_key != ring.token_public_key


def test_rotation_persists_and_keeps_old_keys(tmp_path: Path) -> None:
    ring = KeyRing.load_or_create(_path(tmp_path))
    old = ring.data_key("k1")
    new_id = ring.rotate_data_key()
    assert ring.current_key_id == new_id != "k1"
    assert stat.S_IMODE(_path(tmp_path).stat().st_mode) == 0o600
    reloaded = KeyRing.load_or_create(_path(tmp_path))
    assert reloaded.current_key_id == new_id
    assert reloaded.data_key("k1") == old
    assert reloaded.key_ids == ["k1", new_id]


def test_a_stale_ring_finds_keys_rotated_elsewhere(tmp_path: Path) -> None:
    server = KeyRing.load_or_create(_path(tmp_path))
    cli = KeyRing.load_or_create(_path(tmp_path))
    rotated = cli.rotate_data_key()
    assert server.data_key(rotated) == cli.data_key(rotated)
    with pytest.raises(KeyError):
        server.data_key("k404")
    # The server rotating later must not drop the key the CLI added.
    server.rotate_data_key()
    assert rotated in KeyRing.load_or_create(_path(tmp_path)).key_ids


def test_refuses_a_file_others_can_read(tmp_path: Path) -> None:
    KeyRing.load_or_create(_path(tmp_path))
    _path(tmp_path).chmod(0o644)
    with pytest.raises(KeyRingError, match="chmod 600"):
        KeyRing.load_or_create(_path(tmp_path))


def test_refuses_a_malformed_file(tmp_path: Path) -> None:
    KeyRing.load_or_create(_path(tmp_path))
    doc = json.loads(_path(tmp_path).read_text())
    doc["chain_key"] = "c2hvcnQ="  # 5 bytes
    _path(tmp_path).write_text(json.dumps(doc))
    with pytest.raises(KeyRingError, match="chain key"):
        KeyRing.load_or_create(_path(tmp_path))


def test_token_keys_sign_eddsa_jwts(tmp_path: Path) -> None:
    ring = KeyRing.load_or_create(_path(tmp_path))
    claims = {"sub": "p_1", "sid": "s_1", "exp": datetime.now(UTC) + timedelta(minutes=5)}
    token = jwt.encode(claims, ring.token_private_key, algorithm="EdDSA")
    decoded = jwt.decode(token, ring.token_public_key, algorithms=["EdDSA"])
    assert decoded["sub"] == "p_1"
    other = KeyRing.load_or_create(tmp_path / "other.json")
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, other.token_public_key, algorithms=["EdDSA"])


def test_pseudonyms_are_stable_short_and_keyed(tmp_path: Path) -> None:
    ring = KeyRing.load_or_create(_path(tmp_path))
    other = KeyRing.load_or_create(tmp_path / "other.json")
    tag = ring.pseudonym("patient-jane-doe")
    assert tag == ring.pseudonym("patient-jane-doe")
    assert len(tag) == 16 and int(tag, 16) >= 0
    assert "jane" not in tag
    assert tag != ring.pseudonym("patient-john-doe")
    assert tag != other.pseudonym("patient-jane-doe")
