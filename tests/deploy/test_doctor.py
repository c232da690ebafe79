"""`circle doctor` on real installations, and `circle serve`'s plain-HTTP warning.

A data dir made by a real `circle serve` passes every check; then one thing at a time is
broken (a world-readable keys file, an empty web app directory, a Redis, a database and a
TURN server that do not answer, a TURN secret coturn does not share, a bad setting) and
each gives exit 1 and a line that says what is wrong and what to do. TURN is a real coturn
on loopback (tests/deploy/coturn.py).
"""

from __future__ import annotations

import http.client
import os
import re
import secrets
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import ifaddr
import pytest

from server.serve_lock import wait_for_listening
from tests.ci import unavailable
from tests.integration.server_fixtures import CIRCLE, CircleServer, server_environ, stop_process

from .coturn import Coturn, coturn

pytestmark = pytest.mark.deploy


@pytest.fixture(scope="module")
def healthy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir as a first start leaves it: keys, database, checkpoints, an API key."""
    srv = CircleServer(tmp_path_factory.mktemp("healthy") / "data", env={"CIRCLE_MEDIA": "false"})
    srv.api_key = srv.create_key()
    srv.start()
    try:  # up: start-up (database, checkpoints) is done once it answers
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
        conn.request("GET", "/healthz")
        assert conn.getresponse().status == 200
        conn.close()
    finally:
        srv.stop()
    assert "beyond this machine" not in srv.log_text(), "no warning on loopback"
    return srv.data_dir


@pytest.fixture(scope="module")
def turn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Coturn]:
    with coturn(tmp_path_factory.mktemp("coturn"), loopback_peers=False) as running:
        yield running


def copy_of(data_dir: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "data"
    shutil.copytree(data_dir, copy)  # modes kept (copy2)
    return copy


def doctor(data_dir: Path, *before: str, **env: str) -> tuple[int, list[str]]:
    done = subprocess.run([CIRCLE, *before, "doctor", "--data-dir", str(data_dir)],
                          capture_output=True, text=True, timeout=60, env=server_environ(**env))
    assert not done.stderr.strip(), done.stderr  # everything it says is on stdout, one a line
    return done.returncode, done.stdout.splitlines()


def line(lines: list[str], check: str) -> str:
    """The one line of the check named `check` (a regular expression)."""
    found = [ln for ln in lines if re.match(rf"\S+ +{check}:", ln)]
    assert len(found) == 1, (check, lines)
    return found[0]


def closed_port(kind: socket.SocketKind = socket.SOCK_STREAM) -> int:
    """A port the kernel chose, closed again: nothing answers there."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_healthy_data_dir_passes_every_check(healthy: Path) -> None:
    status, lines = doctor(healthy)
    assert status == 0, lines
    checks = lines[:-1]
    assert [ln.split(":")[0].split(None, 1)[1] for ln in checks] == [
        "settings", "exposure", "data dir", "keys file", "database", "web app",
        "checkpoint file"]
    assert all(ln.startswith("ok ") for ln in checks), lines
    assert re.search(r"schema version (\d+) of \1, \d+ ledger stream", line(lines, "database"))
    assert lines[-1] == f"circle doctor: all {len(checks)} checks passed"


def test_a_world_readable_keys_file_is_a_problem(healthy: Path, tmp_path: Path) -> None:
    data = copy_of(healthy, tmp_path)
    (data / "keys.json").chmod(0o644)
    status, lines = doctor(data)
    assert status == 1
    assert line(lines, "keys file") == (
        f"PROBLEM  keys file: {data / 'keys.json'} can be read by group or others (-rw-r--r--)"
        f" -> chmod 600 {data / 'keys.json'}")
    assert lines[-1].startswith("circle doctor: 1 problem(s)")


def test_a_data_dir_others_can_open_is_a_problem(healthy: Path, tmp_path: Path) -> None:
    data = copy_of(healthy, tmp_path)
    data.chmod(0o755)
    status, lines = doctor(data)
    assert status == 1
    assert line(lines, "data dir").endswith(f"circle serve refuses it -> chmod 700 {data}")


def test_a_missing_web_app_is_a_problem(healthy: Path, tmp_path: Path) -> None:
    """Set in a settings file, as the service's EnvironmentFile= (circle --env-file)."""
    empty = tmp_path / "web"
    empty.mkdir()
    settings = tmp_path / "circle.env"
    settings.write_text(f"# as in /etc/circle/circle.env\nCIRCLE_WEB_DIR={empty}\n"
                        'CIRCLE_ICE_SERVERS=[{"urls":["stun:turn.example.org:3478"]}]\n')
    status, lines = doctor(healthy, "--env-file", str(settings))
    assert status == 1
    found = line(lines, "web app")
    assert found.startswith(f"PROBLEM  web app: no built browser app in {empty} (no index.html)")
    assert "install Circle from its wheel or sdist" in found


def test_an_unreachable_redis_is_a_problem(healthy: Path) -> None:
    port = closed_port()
    status, lines = doctor(healthy, CIRCLE_REDIS_URL=f"redis://:hunter2@127.0.0.1:{port}/0")
    assert status == 1
    found = line(lines, "redis")
    assert found.startswith(f"PROBLEM  redis: no answer from redis://***@127.0.0.1:{port}/0")
    assert "hunter2" not in "\n".join(lines), "a password is never printed"


def test_an_unreachable_database_is_a_problem(healthy: Path) -> None:
    port = closed_port()
    status, lines = doctor(healthy, CIRCLE_DATABASE_URL=(
        f"postgresql+asyncpg://circle:hunter2@127.0.0.1:{port}/circle"))
    assert status == 1
    found = line(lines, "database")
    assert found.startswith(f"PROBLEM  database: cannot reach PostgreSQL at 127.0.0.1:{port}/"
                            "circle: ")
    assert found.endswith("-> check CIRCLE_DATABASE_URL, that the database runs and accepts "
                          "this user")
    assert "hunter2" not in "\n".join(lines)


def test_a_bad_setting_is_named(healthy: Path) -> None:
    status, lines = doctor(healthy, CIRCLE_PORT="eighty")
    assert status == 1
    assert line(lines, "settings").startswith("PROBLEM  settings: CIRCLE_PORT: ")


def test_turn_that_takes_circles_credentials_passes(healthy: Path, turn: Coturn) -> None:
    status, lines = doctor(healthy, CIRCLE_TURN_SECRET=turn.secret,
                           CIRCLE_TURN_URLS=f"{turn.url('udp')},{turn.url('tcp')}")
    assert status == 0, lines
    for transport in ("udp", "tcp"):
        (found,) = [ln for ln in lines if f" {turn.url(transport)}:" in ln]
        assert re.match(rf"ok +turn: {re.escape(turn.url(transport))}: allocated a relay "
                        r"127\.0\.0\.1:\d+ with Circle's credentials", found)
    turn.wait_for_log(":circle-doctor>: incoming packet ALLOCATE processed, success")


def test_turn_over_tls_passes_when_its_certificate_is_trusted(healthy: Path,
                                                              turn: Coturn) -> None:
    trusted = {"SSL_CERT_FILE": str(turn.cert)}  # the test's self-signed certificate
    status, lines = doctor(healthy, CIRCLE_TURN_SECRET=turn.secret,
                           CIRCLE_TURN_URLS=turn.tls_url, **trusted)
    assert status == 0, lines
    status, lines = doctor(healthy, CIRCLE_TURN_SECRET=turn.secret,
                           CIRCLE_TURN_URLS=turn.tls_url)
    assert status == 1
    assert "certificate" in line(lines, "turn")


def test_a_turn_secret_coturn_does_not_share_is_a_problem(healthy: Path, turn: Coturn) -> None:
    status, lines = doctor(healthy, CIRCLE_TURN_SECRET="not-" + turn.secret,
                           CIRCLE_TURN_URLS=turn.url())
    assert status == 1
    found = line(lines, "turn")
    assert "refused Circle's credentials (401" in found
    assert "CIRCLE_TURN_SECRET must equal coturn's static-auth-secret" in found


def test_an_unreachable_turn_server_is_a_problem(healthy: Path) -> None:
    url = f"turn:127.0.0.1:{closed_port(socket.SOCK_DGRAM)}?transport=udp"
    status, lines = doctor(healthy, CIRCLE_TURN_SECRET=secrets.token_hex(8),
                           CIRCLE_TURN_URLS=url)
    assert status == 1
    assert line(lines, "turn").startswith(f"PROBLEM  turn: {url}: ")
    assert "check that coturn runs there" in line(lines, "turn")


# -- circle serve's warning -----------------------------------------------------------------


def own_address() -> str:
    """One of this machine's own non-loopback IPv4 addresses (packets to it stay here)."""
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            if isinstance(ip.ip, str) and not ip.ip.startswith(("127.", "169.254.")):
                return ip.ip
    unavailable("this machine has no non-loopback IPv4 address to bind a test server to")


def serve_log(tmp_path: Path, host: str, **env: str) -> str:
    """The log of `circle serve --host HOST` up to listening (then stopped)."""
    tmp_path.mkdir()
    data, log_path = tmp_path / "data", tmp_path / "serve.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [CIRCLE, "serve", "--host", host, "--port", "0", "--data-dir", str(data)],
            stdout=log, stderr=subprocess.STDOUT,
            env=server_environ(CIRCLE_MEDIA="false", **env))
    try:
        wait_for_listening(process.pid, data, alive=lambda: process.poll() is None)
    finally:
        stop_process(process)
    return log_path.read_text()


def test_serve_warns_when_reachable_over_plain_http(tmp_path: Path) -> None:
    host = own_address()
    log = serve_log(tmp_path / "plain", host)
    (warning,) = [ln for ln in log.splitlines() if "beyond this machine" in ln]
    assert f"WARNING circle: listening on {host}, beyond this machine, over plain HTTP" in warning
    assert "Put nginx with TLS in front" in warning
    behind_tls = serve_log(tmp_path / "tls", host, CIRCLE_PUBLIC_URL="https://circle.example.org")
    assert "beyond this machine" not in behind_tls
    assert os.path.exists(tmp_path / "tls" / "data")
