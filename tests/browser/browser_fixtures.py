"""Chromium for the browser tests: fake camera and microphone, no network beyond the machine.

Conftest-free: test modules import the fixtures they use (like tests/integration).
Chromium is Debian's (/usr/bin/chromium, or env CIRCLE_TEST_CHROMIUM); Playwright never
downloads one. Without it the tests skip, except under CI where they fail (tests/ci.py).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.ci import unavailable

ROOT = Path(__file__).resolve().parents[2]
WEB = ROOT / "client" / "web"
SHOTS = ROOT / "test-artifacts" / "screenshots"
CHROMIUM = os.environ.get("CIRCLE_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
]


def require_chromium() -> None:
    if Path(CHROMIUM).is_file() and os.access(CHROMIUM, os.X_OK):
        return
    unavailable(f"chromium not found at {CHROMIUM} (set CIRCLE_TEST_CHROMIUM)")


def ensure_web_built() -> None:
    """Build client/web when dist is missing or older than its sources (as scripts/bootstrap)."""
    index = WEB / "dist" / "index.html"
    sources = [p for p in [WEB / "index.html", WEB / "package-lock.json", *(WEB / "src").rglob("*")]
               if p.is_file()]
    newest = max(p.stat().st_mtime for p in sources)
    if index.is_file() and index.stat().st_mtime >= newest:
        return
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail("client/web/dist is missing or stale and npm is not installed")
    if not (WEB / "node_modules").is_dir():
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=WEB, check=True)
    subprocess.run([npm, "run", "build", "--silent"], cwd=WEB, check=True)


@dataclass
class Person:
    """One browser context (one participant) and what its page logged."""

    name: str
    page: Any
    context: Any
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    async def shot(self, name: str) -> Path:
        SHOTS.mkdir(parents=True, exist_ok=True)
        path = SHOTS / f"{name}.png"
        await self.page.screenshot(path=str(path), full_page=True)
        return path

    async def debug(self, expression: str) -> Any:
        return await self.page.evaluate(f"async () => await window.circleDebug.{expression}")


class Browser:
    def __init__(self, browser: Any) -> None:
        self.browser = browser
        self.people: list[Person] = []

    async def open(self, name: str, url: str, *, width: int = 1280, height: int = 860,
                   before: Callable[[Any], Awaitable[None]] | None = None) -> Person:
        """A new participant's page at `url`; `before(page)` runs first (routes to set)."""
        context = await self.browser.new_context(
            viewport={"width": width, "height": height},
            permissions=["camera", "microphone"],
        )
        page = await context.new_page()
        if before is not None:
            await before(page)
        person = Person(name, page, context)

        def on_console(msg: Any) -> None:
            if msg.type == "error":
                person.errors.append(f"console: {msg.text}")
            elif msg.type == "warning":
                person.warnings.append(msg.text)

        page.on("console", on_console)
        page.on("pageerror", lambda exc: person.errors.append(f"pageerror: {exc}"))
        await page.goto(url)
        self.people.append(person)
        return person

    def console_errors(self) -> dict[str, list[str]]:
        return {p.name: p.errors for p in self.people if p.errors}


@pytest.fixture
async def chromium() -> AsyncIterator[Browser]:
    require_chromium()
    ensure_web_built()
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                           headless=True)
        wrapper = Browser(browser)
        try:
            yield wrapper
        finally:
            await browser.close()


async def eventually(check: Callable[[], Awaitable[Any]], timeout: float = 15.0,
                     what: str = "condition") -> Any:
    """Poll until `check` returns something truthy; return it."""
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met in {timeout} s (last: {result!r})")
        await asyncio.sleep(0.1)


PLAYING_JS = """async (pid) => {
  const v = document.querySelector(`figure[data-pid="${pid}"] video`);
  if (!v || !v.srcObject) return {ok: false, why: 'no video'};
  const t0 = v.currentTime;
  const frames = await new Promise((resolve) => {
    let n = 0;
    if (!v.requestVideoFrameCallback) return resolve(-1);
    const cb = () => { n += 1; v.requestVideoFrameCallback(cb); };
    v.requestVideoFrameCallback(cb);
    setTimeout(() => resolve(n), 600);
  });
  return {ok: v.videoWidth > 0 && v.currentTime > t0 && frames > 0,
          width: v.videoWidth, t0, t1: v.currentTime, frames};
}"""


async def handle_of(therapist: Person, pid: str) -> str:
    """What clients' pages call `pid` (their tiles' data-pid): read from a therapist's page."""
    view = await therapist.debug("state()")
    for p in [*view.get("participants", []), *view.get("waiting", [])]:
        if p["id"] == pid:
            return str(p["handle"])
    raise AssertionError(f"{pid} is not in the therapist's view")


async def sees_video(person: Person, pid: str, timeout: float = 20.0) -> dict[str, Any]:
    """`person` has a tile for `pid` whose <video> is playing (size known, time advancing)."""

    async def check() -> Any:
        result = await person.page.evaluate(PLAYING_JS, pid)
        return result if result["ok"] else None

    try:
        return dict(await eventually(check, timeout, f"{person.name} sees {pid}'s video"))
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{await diagnose(person, pid)}") from None


async def diagnose(person: Person, pid: str) -> str:
    """What the page knows about its media (for a failing media assertion)."""
    info = await person.page.evaluate(
        "async () => ({pc: window.circleDebug.pc(), inbound: await window.circleDebug.inbound()})")
    video = await person.page.evaluate(PLAYING_JS, pid)
    pc = info.get("pc") or {}
    brief = {k: v for k, v in pc.items() if k not in ("local", "remote")}
    return (f"{person.name}: video {video}; errors {person.errors}; warnings {person.warnings}; "
            f"pc {brief}; inbound {info.get('inbound')}")
