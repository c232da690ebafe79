"""Serves the browser app (client/web) at /join and its static assets.

The app is built by `npm run build` into client/web/dist (scripts/bootstrap does it); a
server without a built app still answers /join with a plain page saying so.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

WEB_DIST = Path(__file__).resolve().parent.parent / "client" / "web" / "dist"

_NOT_BUILT = """<!doctype html><meta charset="utf-8"><title>Circle</title>
<p>The Circle browser app is not built on this server. Run <code>scripts/serve</code>,
which builds it, or ask the clinic's administrator.</p>"""

SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": (
        "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data: blob:; "
        "media-src 'self' blob:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'"
    ),
}
"""The join token sits in the URL: no referrer may carry it elsewhere, no cache may keep it."""


async def join_page(request: web.Request) -> web.StreamResponse:
    index = WEB_DIST / "index.html"
    if index.is_file():
        return web.FileResponse(index, headers=SECURITY_HEADERS)
    return web.Response(text=_NOT_BUILT, content_type="text/html", headers=SECURITY_HEADERS)


def setup_web(app: web.Application) -> None:
    app.router.add_get("/join", join_page)
    assets = WEB_DIST / "assets"
    if assets.is_dir():
        app.router.add_static("/assets", assets)
