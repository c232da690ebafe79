"""A real coturn (Debian's `turnserver`) on loopback, started from deploy/coturn/turnserver.conf.

The shipped config is used as it is, with only what a test machine must change: the two
listening ports (free ones, chosen by the kernel), the certificate (self-signed, in the
test's directory), the secret, the log and pid files; and added: listen and relay on
127.0.0.1 only, its own user database file, `verbose` (coturn logs allocations and each
session's byte counts only then). With `loopback_peers`, also `allow-loopback-peers` and
`allowed-peer-ip=127.0.0.1`: the relay under test is on this machine, where the shipped
config (rightly) refuses to relay to. scripts/services.sh `ensure_coturn` installs it.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from aioice import stun

from tests.ci import unavailable
from tests.integration.server_fixtures import stop_process
from tests.tls import self_signed

CONF = Path(__file__).resolve().parents[2] / "deploy" / "coturn" / "turnserver.conf"
START_TIMEOUT_S = 15.0


def turnserver_binary() -> str:
    found = os.environ.get("CIRCLE_TEST_TURNSERVER") or shutil.which("turnserver")
    if not found:
        unavailable("turnserver not found (scripts/services.sh ensure_coturn installs coturn)")
    return found


def free_udp_tcp_port() -> int:
    """A port the kernel chose that is free for both UDP and TCP on 127.0.0.1 (released)."""
    for _ in range(20):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = int(udp.getsockname()[1])
            with socket.socket() as tcp, contextlib.suppress(OSError):
                tcp.bind(("127.0.0.1", port))
                return port
    raise AssertionError("no port free for both UDP and TCP in 20 tries")


def replace(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, f"{CONF.name}: expected one line {old!r}"
    return text.replace(old, new)


@dataclass
class Coturn:
    process: subprocess.Popen[bytes]
    port: int
    """TURN over UDP and TCP."""
    tls_port: int
    secret: str
    directory: Path
    cert: Path

    @property
    def log_path(self) -> Path:
        return self.directory / "turn.log"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def url(self, transport: str = "udp") -> str:
        return f"turn:127.0.0.1:{self.port}?transport={transport}"

    @property
    def tls_url(self) -> str:
        return f"turns:127.0.0.1:{self.tls_port}"

    def wait_for_log(self, needle: str, timeout: float = 15.0) -> str:
        """The first log line containing `needle` (coturn writes as things happen)."""
        deadline = time.monotonic() + timeout
        while True:
            for line in self.log().splitlines():
                if needle in line:
                    return line
            if time.monotonic() > deadline:
                raise AssertionError(f"coturn never logged {needle!r}:\n{self.log()[-3000:]}")
            time.sleep(0.1)


def render(directory: Path, port: int, tls_port: int, secret: str,
           loopback_peers: bool) -> tuple[Path, Path]:
    cert, key = self_signed(directory)
    text = CONF.read_text()
    text = replace(text, "\nlistening-port=3478\n", f"\nlistening-port={port}\n")
    text = replace(text, "\ntls-listening-port=5349\n", f"\ntls-listening-port={tls_port}\n")
    text = replace(text, "\ncert=/etc/coturn/fullchain.pem\n", f"\ncert={cert}\n")
    text = replace(text, "\npkey=/etc/coturn/privkey.pem\n", f"\npkey={key}\n")
    text = replace(text, "\nstatic-auth-secret=CHANGE_ME\n", f"\nstatic-auth-secret={secret}\n")
    text = replace(text, "\nlog-file=/var/log/turnserver/turn.log\n",
                   f"\nlog-file={directory / 'turn.log'}\n")
    text += (f"\n# --- test machine ---\nlistening-ip=127.0.0.1\nrelay-ip=127.0.0.1\n"
             f"pidfile={directory / 'turn.pid'}\nuserdb={directory / 'turndb'}\nverbose\n")
    if loopback_peers:
        text += "allow-loopback-peers\nallowed-peer-ip=127.0.0.1\n"
    conf = directory / "turnserver.conf"
    conf.write_text(text)
    return conf, cert


def stun_answers(port: int, timeout: float = 0.3) -> bool:
    """coturn answers a STUN Binding request on 127.0.0.1:`port` (UDP): it is up."""
    request = stun.Message(message_method=stun.Method.BINDING,
                           message_class=stun.Class.REQUEST)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.sendto(bytes(request), ("127.0.0.1", port))
            data, _ = sock.recvfrom(2048)
        except OSError:
            return False
    answer = stun.parse_message(data)
    return answer.transaction_id == request.transaction_id


@contextlib.contextmanager
def coturn(directory: Path, *, loopback_peers: bool) -> Iterator[Coturn]:
    """coturn in the foreground, up (answering STUN); another try if its port was taken."""
    binary = turnserver_binary()
    directory.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_hex(16)
    for _ in range(3):
        port, tls_port = free_udp_tcp_port(), free_udp_tcp_port()
        conf, cert = render(directory, port, tls_port, secret, loopback_peers)
        (directory / "turn.log").unlink(missing_ok=True)
        with (directory / "stdout.log").open("wb") as out:
            process = subprocess.Popen([binary, "-c", str(conf)], stdout=out,
                                       stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT_S
        while process.poll() is None and time.monotonic() < deadline:
            if stun_answers(port):
                try:
                    yield Coturn(process, port, tls_port, secret, directory, cert)
                finally:
                    stop_process(process)
                return
            time.sleep(0.05)
        stop_process(process)
        log = (directory / "turn.log").read_text(errors="replace") if (
            directory / "turn.log").exists() else ""
        if "Address already in use" not in log:
            raise AssertionError(f"coturn did not start:\n{log[-3000:]}")
    raise AssertionError("coturn found no free port in 3 tries")
