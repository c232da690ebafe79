"""Where /join's app comes from (server/webapp.py): CIRCLE_WEB_DIR, the package, the checkout."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from server import webapp


def built(directory: Path, marker: str) -> Path:
    (directory / "assets").mkdir(parents=True)
    (directory / "index.html").write_text(f"<!doctype html><title>{marker}</title>"
                                          '<script type="module" src="/assets/app.js"></script>')
    (directory / "assets" / "app.js").write_text(f"console.log({marker!r})")
    return directory


def test_a_configured_directory_wins(tmp_path: Path) -> None:
    assert webapp.web_dir(tmp_path / "elsewhere") == tmp_path / "elsewhere"


def test_the_packaged_app_comes_before_the_checkout(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    packaged = built(tmp_path / "webapp_dist", "packaged")
    checkout = built(tmp_path / "dist", "checkout")
    monkeypatch.setattr(webapp, "PACKAGED_DIST", packaged)
    monkeypatch.setattr(webapp, "CHECKOUT_DIST", checkout)
    assert webapp.web_dir() == packaged
    (packaged / "index.html").unlink()
    assert webapp.web_dir() == checkout, "a source checkout (editable install) serves its own"


async def serve(directory: Path) -> TestClient[web.Request, web.Application]:
    app = web.Application()
    webapp.setup_web(app, directory)
    client = TestClient(TestServer(app))
    await client.start_server()
    return client


async def test_join_and_assets_come_from_the_directory(tmp_path: Path) -> None:
    client = await serve(built(tmp_path / "app", "from-the-dir"))
    try:
        join = await client.get("/join?token=x")
        assert join.status == 200 and "from-the-dir" in await join.text()
        assert join.headers["Cache-Control"] == "no-store"
        asset = await client.get("/assets/app.js")
        assert asset.status == 200
    finally:
        await client.close()


async def test_without_a_built_app_join_says_so(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    client = await serve(tmp_path / "empty")
    try:
        join = await client.get("/join")
        assert join.status == 200
        assert "not built on this server" in await join.text()
        assert join.headers["Referrer-Policy"] == "no-referrer"
    finally:
        await client.close()
