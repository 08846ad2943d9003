"""`Idempotency-Key` on every POST: the same key with the same body answers with the
stored response (and does nothing again); the same key with another body is refused
(422, code 1004). Keys are scoped to the person, kept for a day.

Concurrent requests with one key are serialized in this process, so the second
waits for the first's stored answer instead of running the command twice.

The answer is stored after the command has committed, in a second write: a crash in
between loses the answer, not the command. A retry then runs the command again and
meets its effect -- 409 "already completed" or "case exists" (a generated case id is
derived from the key for that reason) -- rather than doing it twice.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Awaitable, Callable

import anyio
from starlette.requests import Request
from starlette.responses import Response

from .codec import raw_body
from .context import ctx
from .errors import HANDLERS, IDEMPOTENCY_REUSED, MALFORMED, ApiError

TTL = 86400.0
MAX_KEY = 200
_locks: dict[str, tuple[anyio.Lock, int]] = {}

Handler = Callable[[Request], Awaitable[Response]]


def idempotent(handler: Handler) -> Handler:
    @functools.wraps(handler)
    async def wrapper(request: Request) -> Response:
        scoped = scoped_key(request)
        if scoped is None:
            return await handler(request)
        request.state.idempotency_key = scoped
        body = await raw_body(request)
        return await answer_once(request, scoped, body, lambda: handler(request))

    return wrapper


def scoped_key(request: Request) -> str | None:
    """The request's Idempotency-Key scoped to its person; None without one."""
    key = request.headers.get("idempotency-key")
    if key is None:
        return None
    if not 0 < len(key) <= MAX_KEY:
        raise ApiError(400, MALFORMED, f"Idempotency-Key must be 1..{MAX_KEY} characters",
                       [("Idempotency-Key", "bad length")])
    return f"{ctx(request).who(request)}\x00{key}"


async def answer_once(request: Request, scoped: str, body: bytes,
                      run: Callable[[], Awaitable[Response]]) -> Response:
    """`run()`'s answer, or the one stored for `scoped` (the same request sent before).

    For a handler that reads its own body (the history import: up to 50 MiB, not the
    wrapper's 1 MiB) and so cannot be wrapped; `body` is what it read.
    """
    c = ctx(request)
    digest = hashlib.sha256(
        f"{request.method} {request.url.path}\x00".encode() + body).hexdigest()
    lock, users = _locks.get(scoped, (anyio.Lock(), 0))
    _locks[scoped] = (lock, users + 1)
    try:
        async with lock:
            now = c.runtime.clock.now()
            stored = await c.store.idempotent_response(scoped, now)
            if stored is not None:
                if stored[0] != digest:
                    raise ApiError(422, IDEMPOTENCY_REUSED, "this Idempotency-Key was "
                                   "used with another request", [("Idempotency-Key",
                                                                  "reused")])
                return Response(stored[2], stored[1], {"Idempotent-Replayed": "true"},
                                media_type="application/json")
            try:
                response = await run()
            except Exception as exc:  # refusals are answers too: store them
                response = await _answer(request, exc)
            if response.status_code < 500:
                await c.store.remember_response(scoped, digest, response.status_code,
                                                bytes(response.body), now + TTL, now)
            return response
    finally:
        lock, users = _locks[scoped]
        if users == 1:
            del _locks[scoped]
        else:
            _locks[scoped] = (lock, users - 1)


async def _answer(request: Request, exc: Exception) -> Response:
    for cls in type(exc).__mro__:
        if cls in HANDLERS:
            return await HANDLERS[cls](request, exc)  # type: ignore[index]
    raise exc
