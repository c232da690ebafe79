"""What end-to-end encryption costs each browser: CPU of Chromium instances in a session,
with and without `e2ee`, in the same run (the machine is shared: compare the ratio).

Each participant is a Chromium instance of its own (Debian's, fake 640x480 camera and
microphone), so its CPU is that instance's process tree (browser, renderer with the
encryption worker, GPU and utility processes): utime + stime from /proc over a window,
after a warm-up. Rounds alternate plain and e2ee sessions on one `circle serve` (media
workers as deployed), so drift on the machine falls on both alike.

    python -m bench.e2ee_cpu --people 3 --rounds 2 --seconds 20
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp

from tests.browser.browser_fixtures import CHROMIUM, CHROMIUM_ARGS, Person, ensure_web_built
from tests.browser.test_web_client import through_device_check
from tests.integration.server_fixtures import Api, CircleServer

TICKS = os.sysconf("SC_CLK_TCK")

def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, utime + stime in ticks) of `pid`, None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()
    return int(fields[1]), int(fields[11]) + int(fields[12])


def tree_ticks(profile: Path) -> int:
    """CPU ticks of the Chromium instance using `profile` and all its descendants."""
    procs: dict[int, tuple[int, int]] = {}
    roots: set[int] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        stat = _stat(pid)
        if stat is None:
            continue
        procs[pid] = stat
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if f"--user-data-dir={profile}".encode() in cmdline:
            roots.add(pid)
    members = set(roots)
    grew = True
    while grew:
        grew = False
        for pid, (ppid, _) in procs.items():
            if ppid in members and pid not in members:
                members.add(pid)
                grew = True
    return sum(procs[pid][1] for pid in members if pid in procs)


@asynccontextmanager
async def instance(pw: Any, work: Path, name: str, url: str) -> AsyncIterator[Person]:
    profile = work / f"profile-{name}"
    context = await pw.chromium.launch_persistent_context(
        str(profile), executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True,
        viewport={"width": 1280, "height": 860}, permissions=["camera", "microphone"])
    try:
        page = context.pages[0] if context.pages else await context.new_page()
        await page.goto(url)
        person = Person(name, page, context)
        person.profile = profile  # type: ignore[attr-defined]
        yield person
    finally:
        await context.close()


async def link(api: Api, sid: str, pid: str, name: str, role: str = "client") -> str:
    invite = await api.invite(sid, pid, name, role)
    return f"{api.server.url}/join?token={invite['token']}"


async def outbound_video(person: Person) -> dict[str, Any]:
    """Width, height and frames per second the page's camera sender encodes."""
    return dict(await person.debug("videoOut()") or {})


async def one_round(pw: Any, api: Api, work: Path, e2ee: bool, people: int,
                    seconds: float) -> dict[str, Any]:
    sid = await api.create_session(e2ee=e2ee)
    async with contextlib.AsyncExitStack() as stack:
        therapist = await stack.enter_async_context(instance(
            pw, work, f"t-{sid}", await link(api, sid, "t1", "Dr Kim Park", "therapist")))
        await through_device_check(therapist)
        clients = []
        for n in range(1, people):
            person = await stack.enter_async_context(instance(
                pw, work, f"c{n}-{sid}", await link(api, sid, f"c{n}", f"Client {n}")))
            await through_device_check(person)
            clients.append(person)
        await therapist.page.get_by_role("button", name=f"Admit all ({len(clients)})").click()
        everyone = [therapist, *clients]
        await asyncio.sleep(8)  # warm-up: ICE, first keyframes, encoder ramp-up
        before = [tree_ticks(p.profile) for p in everyone]  # type: ignore[attr-defined]
        counts0 = [await _counts(p) for p in everyone]
        await asyncio.sleep(seconds)
        after = [tree_ticks(p.profile) for p in everyone]  # type: ignore[attr-defined]
        counts1 = [await _counts(p) for p in everyone]
        inbound = [await p.debug("inbound()") for p in everyone]
        video = await outbound_video(therapist)
    cores = [(a - b) / TICKS / seconds for a, b in zip(after, before, strict=True)]
    frames = [
        {k: (c1.get(k, 0) - c0.get(k, 0)) / seconds for k in ("encrypted", "decrypted")}
        for c0, c1 in zip(counts0, counts1, strict=True)
    ]
    return {"e2ee": e2ee, "cores_per_browser": cores, "frames_per_s": frames,
            "inbound": inbound, "video": video}


async def _counts(person: Person) -> dict[str, int]:
    state = await person.debug("e2ee()")
    return dict(state.get("counts", {})) if state else {}


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    ensure_web_built()
    from playwright.async_api import async_playwright

    with tempfile.TemporaryDirectory(prefix="circle-e2ee-bench-") as tmp:
        work = Path(tmp)
        server = CircleServer(work / "data")
        server.api_key = server.create_key()
        server.start()
        try:
            async with aiohttp.ClientSession() as http, async_playwright() as pw:
                api = Api(server, http)
                rounds = []
                for _ in range(args.rounds):
                    for e2ee in (False, True):
                        result = await one_round(pw, api, work, e2ee, args.people,
                                                 args.seconds)
                        print(json.dumps(result), flush=True)
                        rounds.append(result)
        finally:
            server.stop()
    plain = [c for r in rounds if not r["e2ee"] for c in r["cores_per_browser"]]
    sealed = [c for r in rounds if r["e2ee"] for c in r["cores_per_browser"]]
    summary = {
        "people": args.people, "rounds": args.rounds, "seconds": args.seconds,
        "plain_cores_per_browser_median": round(statistics.median(plain), 3),
        "e2ee_cores_per_browser_median": round(statistics.median(sealed), 3),
        "ratio_e2ee_to_plain": round(statistics.median(sealed) / statistics.median(plain), 3),
        "extra_cores_per_browser": round(statistics.median(sealed) - statistics.median(plain),
                                         3),
        "video": next((r["video"] for r in rounds if r["video"]), {}),
    }
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--people", type=int, default=3, help="browsers in the session")
    parser.add_argument("--rounds", type=int, default=2, help="plain + e2ee pairs")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured window")
    print(json.dumps(asyncio.run(main_async(parser.parse_args())), indent=2))


if __name__ == "__main__":
    main()
