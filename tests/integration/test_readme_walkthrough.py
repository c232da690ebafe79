"""The README's five-minute walk-through, run as written against `scripts/serve`.

The shell blocks of the README's walk-through section are joined into one bash script and
run in a fresh directory beside a real server started by README command 1. Only the
environment differs from a newcomer's terminal: `CIRCLE_URL` points at the test server's
port (the README reads it), `.venv` links to this checkout's, and when the suite runs on a
moved clock a `date` shim on PATH moves the walk-through's `date -u` by the same offset.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from server.serve_lock import wait_for_listening
from tests.ci import unavailable

from .clock import OFFSET_ENV
from .server_fixtures import server_environ, stop_process

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SECTION = "## Five-minute walk-through"
WALKTHROUGH_TIMEOUT_S = 120


def walkthrough_blocks(readme: str) -> list[str]:
    """The ```sh blocks of the walk-through section, in order."""
    section = readme.split(SECTION, 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.*?)```", section, flags=re.S)


def date_shim(bin_dir: Path, offset_s: float) -> None:
    """A `date` that reads the machine's clock moved by `offset_s` (the servers' clock)."""
    real = shutil.which("date")
    assert real, "date(1) is part of coreutils"
    bin_dir.mkdir()
    shim = bin_dir / "date"
    shim.write_text(f'#!/bin/sh\nexec {real} -d "@$(( $({real} +%s) + {int(offset_s)} ))" "$@"\n')
    shim.chmod(0o755)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """`scripts/serve --port 0` in a fresh directory: (that directory, the server's URL)."""
    if shutil.which("curl") is None:
        unavailable("curl is missing (scripts/services.sh ensure_curl installs it)")
    work = tmp_path / "newcomer"
    work.mkdir()
    (work / ".venv").symlink_to(Path(sys.prefix), target_is_directory=True)
    with (tmp_path / "serve.log").open("ab") as log:
        process = subprocess.Popen(
            [str(ROOT / "scripts" / "serve"), "--port", "0"],
            cwd=work, stdout=log, stderr=subprocess.STDOUT,
            env=server_environ(),
        )
    try:
        port = wait_for_listening(process.pid, work / "circle-data",
                                  alive=lambda: process.poll() is None)
        yield work, f"http://127.0.0.1:{port}"
    finally:
        stop_process(process)


def test_the_walkthrough_is_three_shell_blocks_with_computed_dates() -> None:
    blocks = walkthrough_blocks((ROOT / "README.md").read_text())
    assert len(blocks) == 3
    text = "\n".join(blocks)
    assert "date -u +%Y-%m-%dT%H:%M:%SZ" in text
    assert not re.search(r"\b20\d\d-\d\d-\d\d", text), "no fixed date in the walk-through"
    assert not re.search(r"localhost:\d+|127\.0\.0\.1:\d+/", text.replace(
        "URL=${CIRCLE_URL:-http://127.0.0.1:8080}", "")), "every request goes to $URL"


def test_the_readme_walkthrough_runs_as_written(served: tuple[Path, str],
                                                tmp_path: Path) -> None:
    work, url = served
    script = "set -euo pipefail\n" + "\n".join(walkthrough_blocks((ROOT / "README.md").read_text()))
    env = server_environ(CIRCLE_URL=url)
    env.pop("VIRTUAL_ENV", None)
    offset = float(os.environ.get(OFFSET_ENV) or 0)
    if offset:
        date_shim(tmp_path / "bin", offset)
        env["PATH"] = f"{tmp_path / 'bin'}{os.pathsep}{env['PATH']}"
    bash = shutil.which("bash")
    assert bash is not None
    done = subprocess.run([bash, "-c", script], cwd=work, env=env, capture_output=True,
                          text=True, timeout=WALKTHROUGH_TIMEOUT_S)
    out = done.stdout
    assert done.returncode == 0, f"stdout:\n{out}\nstderr:\n{done.stderr}"

    invites = {name: json.loads((work / f"{name}.json").read_text())
               for name in ("therapist", "client")}
    assert all(invite["token"] and invite["join_url"].startswith(url)
               for invite in invites.values()), invites
    assert "waiting" in out and "admitted in main" in out
    frames = [int(n) for n in re.findall(r"received from \S+: (\d+) video frames", out)]
    assert frames and max(frames) > 0, "the client decoded the other side's video"

    table = out[out.index("session_id,service_date"):]
    rows = {r["participant_id"]: r for r in csv.DictReader(io.StringIO(table))
            if r.get("participant_id") in ("t-park", "c-1042")}
    assert set(rows) == {"t-park", "c-1042"}, table
    exported = json.loads((work / "attendance.json").read_text())["rows"]
    by_id = {r["participant_id"]: r for r in exported}
    assert by_id["c-1042"]["status"] == "left_early", "admitted, then left after seconds"
    assert float(by_id["c-1042"]["minutes_present"]) > 0
    assert by_id["c-1042"]["modality"] == "audio-video"
    assert by_id["c-1042"]["service_date"] == rows["c-1042"]["service_date"]
    assert "ledger OK" in out
