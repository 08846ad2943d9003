"""Liveness, readiness, the OpenAPI document and its docs page (assets served from
the package: no CDN)."""

from __future__ import annotations

import pathlib

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response

from .api import Endpoint, api
from .bodies import Health
from .codec import respond
from .context import ctx
from .errors import error_response

STATIC = pathlib.Path(__file__).parent / "static"


async def health(request: Request) -> Response:
    # Alive means worth keeping: a store whose writer failed writes nothing more until
    # the process restarts, so a supervisor that restarts on a failed liveness check
    # should (readiness, below, also asks the store whether it answers now).
    failed = getattr(ctx(request).store, "failed", None)
    if failed is not None:
        return respond(Health("unavailable", {"store": f"failed until a restart: "
                                                        f"{failed!r}"}), 503)
    return respond(Health("ok"))


async def ready(request: Request) -> Response:
    c = ctx(request)
    try:
        ok = await c.store.ping()
    except Exception as exc:  # an unreachable store is the answer, not an error
        return respond(Health("unavailable", {"store": repr(exc)}), 503)
    failed = getattr(c.store, "failed", None)
    if not ok:
        stalled = getattr(c.store, "writer_stalled_for", lambda: 0.0)()
        why = (f"cannot write: {failed!r}" if failed is not None or not stalled else
               f"the writer has answered nothing for {stalled:.0f} s")
        return respond(Health("unavailable", {"store": why}), 503)
    return respond(Health("ok", {"store": "ok", "mode": c.mode,
                                 "workflows": str(len(c.runtime.workflows()))}))


PUBLIC = [
    Endpoint("GET", "/health", health, "Liveness: 503 once the store failed for good",
             Health, errors=(503,)),
    Endpoint("GET", "/healthz", health, "Liveness (alias of /health)", Health,
             errors=(503,)),
    Endpoint("GET", "/health/ready", ready, "Readiness: the store answers and can write",
             Health, errors=(503,)),
]

_openapi: dict[str, object] = {}


async def openapi(request: Request) -> Response:
    if not _openapi:
        _openapi.update(api.openapi(PUBLIC))
    return JSONResponse(_openapi)


async def docs(request: Request) -> Response:
    return FileResponse(STATIC / "docs.html", media_type="text/html")


_ASSETS = {"docs.js": "text/javascript", "docs.css": "text/css"}


async def docs_asset(request: Request) -> Response:
    name = request.path_params["name"]
    if name not in _ASSETS:
        return error_response(404, 1000, f"no asset {name!r}", [("path", request.url.path)])
    return FileResponse(STATIC / name, media_type=_ASSETS[name])
