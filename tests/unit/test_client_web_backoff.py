"""The web client's reconnection rules (client/web/src/backoff.ts, nodes.ts, token.ts) give
what the Python client's (client/reconnect.py) give, fed the same random numbers.

The TypeScript is compiled with the project's own tsc (client/web/node_modules) and run
with node: no browser needed for pure functions.
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
from itertools import islice
from pathlib import Path
from typing import Any

import pytest

from client.reconnect import (
    Backoff,
    is_transient_refusal,
    merge_nodes,
    reconnect_schedule,
    takes_turns,
)
from tests.ci import unavailable

WEB = Path(__file__).resolve().parents[2] / "client" / "web"

SCRIPT = """
import { ceilingMs, delayMs, nodeFor, isTransientRefusal, takesTurns } from "./backoff.js";
import { mergeNodes, pageNodes } from "./nodes.js";
import { sessionOf } from "./token.js";
const input = JSON.parse(await new Promise((done) => {
  let text = "";
  process.stdin.on("data", (c) => { text += c; });
  process.stdin.on("end", () => done(text));
}));
const randoms = [...input.randoms];
const random = () => randoms.shift();
const schedule = [];
for (let n = 0; n < input.attempts; n++) {
  schedule.push([delayMs(n, random, input.backoff) / 1000, nodeFor(n, input.lost, input.count)]);
}
console.log(JSON.stringify({
  schedule,
  ceilings: input.ceilings.map((n) => ceilingMs(n) / 1000),
  transient: input.refusals.map(([code, text]) => isTransientRefusal(code ?? undefined, text)),
  turns: input.turns.map(([after, uptime]) => takesTurns(after, uptime * 1000)),
  merged: mergeNodes(input.given, input.offered, "https:"),
  page: input.pages.map(([listed, proto]) => pageNodes(listed, "https://page.example", proto)),
  sessions: input.tokens.map((t) => sessionOf(t)),
}));
"""


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    node, tsc = shutil.which("node"), WEB / "node_modules" / ".bin" / "tsc"
    if node is None or not tsc.exists():
        unavailable("node and client/web/node_modules (scripts/bootstrap runs npm ci)")
    out = tmp_path_factory.mktemp("web-backoff")
    subprocess.run([str(tsc), "--ignoreConfig", "--outDir", str(out), "--module", "esnext",
                    "--target", "es2022", "--moduleResolution", "bundler", "--strict",
                    "--skipLibCheck", "src/backoff.ts", "src/nodes.ts", "src/token.ts"],
                   cwd=WEB, check=True, capture_output=True)
    (out / "package.json").write_text('{"type": "module"}')
    return out


def run_web(compiled: Path, **inputs: Any) -> dict[str, Any]:
    node = shutil.which("node")
    assert node is not None, "the compiled fixture found node"
    done = subprocess.run([node, "--input-type=module", "-e", SCRIPT], cwd=compiled,
                          input=json.dumps(inputs), capture_output=True, text=True, check=True)
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_web_and_python_rules_agree(compiled: Path) -> None:
    seed, attempts, count, lost = 5, 9, 3, 1
    rng = random.Random(seed)
    randoms = [rng.random() for _ in range(attempts)]
    python = [(a.delay_s, a.node) for a in
              islice(reconnect_schedule(count, lost, random.Random(seed)), attempts)]
    # (Python's code, the web's): an unreachable node is a connect_error without a code.
    refusals = [("conflict", "conflict", "session is restarting, try again"),
                ("conflict", "conflict", "the session is locked"),
                ("forbidden", "forbidden", "expired; try again"), ("unreachable", None, "")]
    turns: list[tuple[bool, float]] = [(False, 0.1), (True, 0.1), (True, 60.0)]
    given, offered = ["https://lb.example"], ["https://a.example/", "http://b.example", 3,
                                              "https://lb.example"]
    tokens = ["x.eyJzaWQiOiJzXzQyIn0.y", "x.eyJzdWIiOiJjMSJ9.y", "nonsense", "x.%%%.y"]
    web = run_web(compiled, randoms=randoms, attempts=attempts, count=count, lost=lost,
                  backoff={"baseMs": 250, "capMs": 5000}, ceilings=list(range(8)),
                  refusals=[[code, m] for _, code, m in refusals], turns=turns, given=given,
                  offered=offered,
                  pages=[["https://a.example, https://b.example:8443/x,ftp://c", "https:"],
                         ["http://a.example", "https:"], ["", "https:"],
                         ["http://a.example", "http:"]],
                  tokens=tokens)

    assert [n for _, n in web["schedule"]] == [n for _, n in python]
    assert [n for _, n in python] == [2, 0, 1, 2, 0, 1, 2, 0, 1]
    # Equal up to rounding: the web counts in milliseconds.
    assert [d for d, _ in web["schedule"]] == pytest.approx([d for d, _ in python], rel=1e-12)
    assert web["ceilings"] == [Backoff().ceiling_s(n) for n in range(8)]
    assert web["transient"] == [is_transient_refusal(c, m) for c, _, m in refusals]
    assert web["transient"] == [True, False, False, True]
    assert web["turns"] == [takes_turns(a, u) for a, u in turns]
    # The web keeps origins only, and from an https page https ones only.
    assert web["merged"] == ["https://lb.example", "https://a.example"]
    assert list(merge_nodes(tuple(given), ["https://a.example"])) == web["merged"]
    assert web["page"] == [["https://a.example", "https://b.example:8443"],
                           ["https://page.example"], ["https://page.example"],
                           ["http://a.example"]]
    assert web["sessions"] == ["s_42", None, None, None]
