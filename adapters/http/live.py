"""`GET /api/v1/events/stream`: server-sent events that tell the dashboard when to
refresh.

Theory of operation
-------------------
A stream carries no data worth guarding, only "something changed": a `log` event when
the event log grew (its append position, read once a second with one index probe --
the writer's path is not touched and idle servers pay one `max(pos)` per open page per
second) and a `recommendations` event when a recommendation's status changed (the
MAPE-K loop's memory, compared in process). The page fetches what it shows through
the API as usual, so what the stream says never needs authorizing twice. Every event
has the log position as its SSE `id`: a reconnecting EventSource sends it back
(Last-Event-ID) and is told at once if it missed appends. A comment line every 15 s
keeps proxies from closing an idle stream.

A stream ends
- when its client goes (Starlette cancels the response, and with it the generator's
  `sleep`: nothing is left behind, no task of our own was started);
- after `MAX_AGE` (EventSource reconnects after `retry`): a bound on any stream a
  client forgot;
- when the server begins to shut down. uvicorn first waits for every open response to
  finish and only then runs the app's lifespan shutdown, so a stream that waited for
  the lifespan would hold the shutdown forever. The server's SIGTERM/SIGINT handlers
  (uvicorn's, installed before the app starts) are chained once, on the first stream:
  the signal sets a flag the streams read on their next tick, then the server's own
  handler runs as before.

Without `Accept: text/event-stream` (curl's default, an API fuzzer) the answer is the
`hello` event alone and the stream ends: nothing that reads a body to its end hangs.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import AsyncIterator
from types import FrameType
from typing import Any

import anyio
import msgspec
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from .api import api
from .bodies import LiveEvent, RecommendationStatus
from .codec import stamp
from .context import Context, ctx

TICK = 1.0  # seconds between looks at the log; also the shutdown's latency
KEEP_ALIVE = 15.0
MAX_AGE = 600.0
RETRY_MS = 2000  # how soon EventSource reconnects after a stream ends

_encode = msgspec.json.Encoder().encode


class _Shutdown:
    """Set from a signal handler: a plain attribute, since a handler may run between
    any two bytecodes of the event loop's thread (no locks, no loop calls)."""

    closing = False
    chained: dict[int, Any] = {}


def _on_shutdown_signals() -> None:
    if threading.current_thread() is not threading.main_thread():
        return  # signals are the main thread's: a server in a thread has none to chain
    fresh = False
    for sig in (signal.SIGINT, signal.SIGTERM):
        current = signal.getsignal(sig)
        if current is _Shutdown.chained.get(sig) or not callable(current):
            continue

        def on_signal(signum: int, frame: FrameType | None, then: Any = current) -> None:
            _Shutdown.closing = True
            then(signum, frame)

        _Shutdown.chained[sig] = on_signal
        signal.signal(sig, on_signal)
        fresh = True
    if fresh:  # a server's new handlers: a new lifetime, not the last one's shutdown
        _Shutdown.closing = False


def _statuses(c: Context) -> dict[str, tuple[str, str]]:
    loop = c.mapek
    if loop is None:
        return {}
    return {r.id: (r.workflow_id, r.status) for r in list(loop.recommendations.values())}


def _frame(c: Context, kind: str, pos: int, recs: dict[str, tuple[str, str]]) -> bytes:
    data = LiveEvent(kind, pos, stamp(c.runtime.clock.now()),
                     [RecommendationStatus(rid, wf, st) for rid, (wf, st) in sorted(recs.items())])
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (pos, kind.encode(), _encode(data))


async def _events(c: Context, request: Request, follow: bool, pos: int,
                  ) -> AsyncIterator[bytes]:
    statuses = _statuses(c)
    yield b"retry: %d\n\n" % RETRY_MS
    yield _frame(c, "hello", pos, statuses)
    last = request.headers.get("last-event-id", "")
    if last.isdigit() and int(last) < pos:  # appends made while it was reconnecting
        yield _frame(c, "log", pos, {})
    if not follow:
        return
    began = quiet = anyio.current_time()
    while not _Shutdown.closing and anyio.current_time() - began < MAX_AGE:
        await anyio.sleep(TICK)
        try:
            now_pos = await c.store.log_position()
        except Exception:  # the store is closing or gone: the client will reconnect
            return
        if now_pos != pos:
            pos = now_pos
            yield _frame(c, "log", pos, {})
            quiet = anyio.current_time()
        now_statuses = _statuses(c)
        if now_statuses != statuses:
            changed = {rid: v for rid, v in now_statuses.items() if statuses.get(rid) != v}
            statuses = now_statuses
            yield _frame(c, "recommendations", pos, changed)
            quiet = anyio.current_time()
        if anyio.current_time() - quiet >= KEEP_ALIVE:
            yield b": keep-alive\n\n"
            quiet = anyio.current_time()


@api.route("GET", "/events/stream",
           "Server-sent events: `log` when the event log grows, `recommendations` when a "
           "recommendation's status changes, keep-alive comments. Send `Accept: "
           "text/event-stream` to follow; otherwise the `hello` event alone is sent",
           LiveEvent, errors=(), media=("text/event-stream",))
async def event_stream(request: Request) -> Response:
    c = ctx(request)
    c.who(request)
    follow = "text/event-stream" in request.headers.get("accept", "")
    # Read before the answer starts: a store that cannot answer gets the API's 503,
    # not a stream cut after its headers.
    pos = await c.store.log_position()
    if follow:
        _on_shutdown_signals()
    return StreamingResponse(_events(c, request, follow, pos), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache",
                                      # nginx would otherwise buffer the events
                                      "X-Accel-Buffering": "no"})
