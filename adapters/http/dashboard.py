"""The dashboard: `/` is its page, `/static/...` the package's static files (the
dashboard's modules and styles, the vendored Chart.js). Plain files, no build step,
nothing from a CDN.

The files are public, as /docs is; what the pages show comes from the API, which asks
for the user's identity as for any client. The page forbids everything that is not
this server's own script, style and connection (Content-Security-Policy): data from
cases is written into the page as text, and even a mistake there could not load or run
anything from elsewhere.
"""

from __future__ import annotations

import os

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from .health import STATIC

PAGE = STATIC / "dashboard" / "index.html"
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'"),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    # A new release's modules must not meet an old page from the cache.
    "Cache-Control": "no-cache",
}


class _Revalidated(StaticFiles):
    """Static files asked after again on every use (a 304 when unchanged): an upgraded
    package's modules must not meet an old page from a browser's heuristic cache."""

    def file_response(self, full_path: str | os.PathLike[str], stat_result: os.stat_result,
                      scope: Scope, status_code: int = 200) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers["Cache-Control"] = "no-cache"
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response


async def index(request: Request) -> Response:
    return FileResponse(PAGE, media_type="text/html", headers=SECURITY_HEADERS)


def routes() -> list[BaseRoute]:
    return [Route("/", index),
            Mount("/static", app=_Revalidated(directory=STATIC), name="static")]
