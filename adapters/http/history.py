"""Work history in and out over HTTP: a CSV event log imported into a workflow's
history for the MAPE-K loop, and the workflow's history exported as XES or CSV.

Theory of operation
-------------------
Import shapes what the MAPE-K loop learns and so what it recommends: it needs the
permission of those who apply its recommendations, `manage_policies` (roles.yaml; the
local operator of open mode has every permission). The request is authenticated, authorized and its
workflow resolved before its body is read; then the body must be `text/csv` (415
otherwise) of at most MAX_HISTORY bytes (413). Parsing runs on a worker thread (a
large file is a second of CPU the event loop should not wait on), the items are
written in one transaction, and the Monitor absorbs them at once, so the next
metrics request sees them. A file with any problem is refused whole: 422, code 1002,
each problem located as "line N: column".

`Idempotency-Key` works as on every POST, by the same code and under the same per-key
lock (adapters/http/idempotency.py: answer_once), here without that wrapper's 1 MiB
cap: a retried upload must not import a file twice, nor two sent at once.

Export reads what the store holds (adapters/history_export.py) and streams it.
"""

from __future__ import annotations

import re

import anyio
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from adapters.history import HistoryInvalid, absorb_imported, parse_history, write_history
from adapters.history_export import FORMATS, MEDIA, gather, write_csv, write_xes
from mapek.monitor import Monitor

from .api import Query, api
from .bodies import _Out
from .codec import capped_body, respond
from .context import Context, ctx
from .errors import MALFORMED, ApiError, malformed
from .idempotency import answer_once, scoped_key
from .workflows import resolve

IMPORT_PERMISSION = "manage_policies"
MAX_HISTORY = 50 << 20  # 50 MiB: about 500,000 rows of a typical export
CSV_MEDIA = ("text/csv", "application/csv")
INVALID_DATA = 1002  # the engine's DataInvalid code: invalid data, located


class HistoryImported(_Out):
    workflow_id: str
    import_id: int  # the rows of imported_items this file wrote carry it
    created: bool  # false: the same history was imported before, as import_id (200)
    rows: int  # event rows read (blank lines not counted)
    items: int  # work items the rows were paired into
    cases: int
    # Of the items: new to the workflow; imported before and completed or filled in by
    # this file; imported before as they are (overlapping exports): not written again.
    added: int = 0
    updated: int = 0
    duplicates: int = 0


@api.route("POST", "/workflows/{workflow_id}/history/import",
           "Import work history from a CSV event log (Content-Type: text/csv; columns "
           "case_id, task, event, timestamp, optional resource, any other column a case "
           "attribute); all or nothing, problems located by line",
           HistoryImported, status=201, also=(200,), errors=(400, 403, 404, 413, 415, 422))
async def import_history(request: Request) -> Response:
    c = ctx(request)
    user = c.who(request)
    c.require(user, IMPORT_PERMISSION)
    wid = resolve(c, request.path_params["workflow_id"])
    scoped = scoped_key(request)  # a bad key is refused before the body is read
    _require_csv(request)
    body = await _csv_body(request)
    if scoped is None:
        return await _import(c, wid, body)
    return await answer_once(request, scoped, body, lambda: _import(c, wid, body))


async def _import(c: Context, wid: str, body: bytes) -> Response:
    try:
        history = await anyio.to_thread.run_sync(parse_history, body)
    except HistoryInvalid as exc:
        raise ApiError(422, INVALID_DATA, exc.message, exc.problems) from None
    async with c.imports:
        done = await write_history(c.store, wid, history)
        if c.monitor is not None and done.updated:  # items it had changed: all again
            c.monitor.forget_imported(wid)
            await absorb_imported(c.monitor, c.store, workflow_id=wid)
        elif c.monitor is not None and done.created:
            await absorb_imported(c.monitor, c.store, import_id=done.import_id)
    return respond(HistoryImported(wid, done.import_id, done.created, history.rows,
                                   len(history.items), history.cases, done.added,
                                   done.updated, done.duplicates),
                   201 if done.created else 200)


def _require_csv(request: Request) -> None:
    media, _, params = request.headers.get("content-type", "").partition(";")
    charset = re.search(r"charset\s*=\s*\"?([^\";\s]+)", params, re.I)
    if media.strip().lower() not in CSV_MEDIA:
        raise ApiError(415, MALFORMED, f"send the event log as text/csv, not "
                       f"{media.strip() or 'no Content-Type'}",
                       [("Content-Type", "must be text/csv")])
    if charset and charset[1].lower() not in ("utf-8", "utf8"):
        raise ApiError(415, MALFORMED, f"the event log must be UTF-8, not {charset[1]}",
                       [("Content-Type", "charset must be utf-8")])


async def _csv_body(request: Request) -> bytes:
    """The body, refused (413) as soon as it is known to pass MAX_HISTORY."""
    too_large = ApiError(413, MALFORMED, f"the event log is larger than {MAX_HISTORY} bytes;"
                         " split it into several imports", [("body", "too large")])
    return await capped_body(request, MAX_HISTORY, too_large)


@api.route("GET", "/workflows/{workflow_id}/history/export",
           "A workflow's work history -- its cases run here and imported ones -- as an "
           "XES log (IEEE 1849, for process-mining tools) or a CSV event log",
           str, query=[Query("format", "xes (default) | csv")], errors=(400, 404),
           media=(MEDIA["xes"], MEDIA["csv"]))
async def export_history(request: Request) -> Response:
    c = ctx(request)
    c.who(request)
    wid = resolve(c, request.path_params["workflow_id"])
    fmt = request.query_params.get("format", "xes")
    if fmt not in FORMATS:
        raise malformed("format", f"{fmt!r}: one of {', '.join(FORMATS)}")
    traces = await gather(c.store, c.monitor or Monitor(c.store), wid)
    chunks = write_xes(traces, wid) if fmt == "xes" else write_csv(traces)
    name = re.sub(r"[^A-Za-z0-9._-]", "_", wid)
    # A sync generator: Starlette draws it on a worker thread, chunk by chunk.
    return StreamingResponse(chunks, media_type=MEDIA[fmt], headers={
        "Content-Disposition": f'attachment; filename="{name}.{fmt}"'})
