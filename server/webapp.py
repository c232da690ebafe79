"""Serves the browser app (client/web) at /join and its static assets.

The app is built by `npm run build` into client/web/dist. An installed package carries it
as `server/webapp_dist/` (setup.py puts it there); a source checkout serves client/web/dist
(scripts/bootstrap builds it); CIRCLE_WEB_DIR names another directory. A server without a
built app still answers /join with a plain page saying so (and `circle doctor` says why).
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

PACKAGED_DIST = Path(__file__).resolve().parent / "webapp_dist"
"""The app inside an installed package (wheel or sdist install)."""
CHECKOUT_DIST = Path(__file__).resolve().parent.parent / "client" / "web" / "dist"
"""The app in a source checkout (editable install, scripts/serve)."""

_NOT_BUILT = """<!doctype html><meta charset="utf-8"><title>Circle</title>
<p>The Circle browser app is not built on this server. Run <code>scripts/serve</code>,
which builds it, or ask the clinic's administrator.</p>"""


def web_dir(configured: Path | None = None) -> Path:
    """Where the built app is: CIRCLE_WEB_DIR when set, else the packaged app, else the
    checkout's client/web/dist (the last candidate when none has an index.html)."""
    if configured is not None:
        return configured
    for candidate in (PACKAGED_DIST, CHECKOUT_DIST):
        if (candidate / "index.html").is_file():
            return candidate
    return CHECKOUT_DIST

SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; connect-src 'self' ws: wss:; "
        "img-src 'self' data: blob:; media-src 'self' blob:; style-src 'self' 'unsafe-inline'; "
        "object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
    ),
}
"""The join token sits in the URL: no referrer may carry it elsewhere, no cache may keep it,
and no other site may frame the page (clickjacking a patient into leaving, or into sharing
the camera: `frame-ancestors`, and X-Frame-Options for browsers that predate it). Scripts
come from this server only, never inline, so injected markup cannot run."""


def setup_web(app: web.Application, directory: Path | None = None) -> None:
    """/join and /assets from `directory` (default: `web_dir()`)."""
    root = directory or web_dir()
    index = root / "index.html"

    async def join_page(request: web.Request) -> web.StreamResponse:
        if index.is_file():
            return web.FileResponse(index, headers=SECURITY_HEADERS)
        return web.Response(text=_NOT_BUILT, content_type="text/html",
                            headers=SECURITY_HEADERS)

    app.router.add_get("/join", join_page)
    assets = root / "assets"
    if assets.is_dir():
        app.router.add_static("/assets", assets)
