"""Build hook: the browser app (client/web) goes into the package, as `server/webapp_dist/`.

Everything else about the package is in pyproject.toml; this file only adds two steps to
setuptools' own commands, so that `pip install .`, `python -m build` and an install from
the sdist all give a server whose `/join` works:

- `build_py` (wheels, `pip install .`): when the web app's sources are here
  (client/web/package.json), runs `npm ci && npm run build` in client/web and copies
  client/web/dist into the build as `server/webapp_dist/`. Without the sources (an sdist)
  it copies the client/web/dist the sdist ships, so installing from an sdist needs no Node.
  Node.js missing where the sources are: the build stops and says so.
- `sdist`: builds the web app first, then ships client/web/dist and not its sources (see
  MANIFEST.in).

An editable install (`pip install -e .`, scripts/bootstrap) skips the web build: the
server then serves client/web/dist of the checkout, which scripts/bootstrap keeps built.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist
from setuptools.errors import SetupError

ROOT = Path(__file__).resolve().parent
WEB = ROOT / "client" / "web"
BUILT = WEB / "dist"
PACKAGED = Path("server", "webapp_dist")
"""Where the built app lands inside the package (server/webapp.py looks there first)."""

NODE_MAJOR = 20
"""Vite 8 (client/web) needs Node.js 20.19 or newer."""
NO_NODE = (
    "circle: the browser app (client/web) must be built into the package, and that needs "
    f"Node.js {NODE_MAJOR}+ with npm{{found}}. Install it and build "
    "again, or build the sdist or wheel on a machine that has it (python -m build) and "
    "install that here: the sdist ships the built app, so installing it needs no Node.js."
)


def build_web() -> Path:
    """Build client/web when its sources are here; returns the built app's directory."""
    if (WEB / "package.json").is_file():
        npm, node = shutil.which("npm"), shutil.which("node")
        if npm is None or node is None:
            raise SetupError(NO_NODE.format(found=", which is not on PATH"))
        version = subprocess.run([node, "--version"], capture_output=True, text=True,  # noqa: S603
                                 check=False).stdout.strip()
        major = version.lstrip("v").split(".")[0]
        if not major.isdigit() or int(major) < NODE_MAJOR:
            raise SetupError(NO_NODE.format(found=f"; PATH has Node.js {version or '?'} ({node})"))
        print(f"circle: building the browser app in {WEB} (npm ci && npm run build)")
        for step in (["ci", "--no-audit", "--no-fund", "--loglevel=error"], ["run", "build"]):
            # S603: a fixed argument list, npm found on PATH by the person building.
            done = subprocess.run([npm, *step], cwd=WEB, stdin=subprocess.DEVNULL,  # noqa: S603
                                  check=False)
            if done.returncode != 0:
                raise SetupError(f"circle: `npm {' '.join(step)}` in {WEB} failed "
                                 f"(exit {done.returncode}); its output is above")
    if not (BUILT / "index.html").is_file():
        raise SetupError(f"circle: no built browser app in {BUILT} and no sources to build "
                         "it from (client/web/package.json): use a full checkout or the sdist")
    return BUILT


class BuildPyWithWebApp(build_py):
    """setuptools' build_py, then the built browser app copied in as package data."""

    def run(self) -> None:
        super().run()
        if self.editable_mode:
            return  # served from the checkout's client/web/dist (scripts/bootstrap builds it)
        target = Path(self.build_lib) / PACKAGED
        shutil.rmtree(target, ignore_errors=True)  # no stale assets from an earlier build
        shutil.copytree(build_web(), target)


class SdistWithWebApp(sdist):
    """setuptools' sdist, with the browser app built first (MANIFEST.in ships it)."""

    def run(self) -> None:
        build_web()
        super().run()


setup(cmdclass={"build_py": BuildPyWithWebApp, "sdist": SdistWithWebApp})
