"""The outbox over HTTP: what notifications are waiting, delivered or dead, and the
retry of a dead letter.

Rows are shown without their body, payload or any channel URL: the listing is for
seeing what went where and why it failed, and channel settings may be secret.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from adapters.outbox import STATES, NotDead, OutboxRow, UnknownRow, list_rows, retry_row

from .api import Query, api
from .bodies import _Body, _Out
from .codec import iso, parse_int, read_body, respond, stamp
from .context import ctx
from .errors import ApiError, malformed
from .idempotency import idempotent

MAX_ID = 2**63 - 1


class OutboxEntry(_Out):
    id: int
    key: str
    case_id: str
    topic: str
    channel: str  # webhook | slack | email
    target: str  # an e-mail address, or the logical channel name of a webhook
    subject: str
    state: str  # pending | claimed | delivered | dead
    attempts: int  # tries made, the successful one included
    next_at: str  # pending: not tried again before this
    created_at: str
    delivered_at: str | None
    last_error: str | None


class OutboxList(_Out):
    notifications: list[OutboxEntry]
    next_after: int | None  # pass as `after` for the next page; null on the last one


class RetryNotification(_Body):
    pass


def entry(r: OutboxRow) -> OutboxEntry:
    return OutboxEntry(r.id, r.key, r.case_id, r.topic, r.channel, r.target, r.subject,
                       r.state, r.attempts, stamp(r.next_at), stamp(r.created_at),
                       iso(r.delivered_at), r.last_error)


@api.route("GET", "/outbox", "Notifications in the outbox, oldest first (after-id pagination)",
           OutboxList, errors=(400,), query=[
               Query("state", "pending | claimed | delivered | dead (default: all)"),
               Query("limit", "page size, 1..1000 (default 100)", type="integer"),
               Query("after", "next_after of the previous page", type="integer")])
async def list_outbox(request: Request) -> Response:
    c = ctx(request)
    # Notifications carry people's addresses and case details: for those who handle
    # failed work, as the retry route.
    c.require(c.who(request), "retry_incidents")
    q = request.query_params
    state = q.get("state")
    if state is not None and state not in STATES:
        raise malformed("state", f"one of {', '.join(STATES)}")
    limit = parse_int("limit", q.get("limit"), 100, 1, 1000)
    after = parse_int("after", q.get("after"), 0, 0, MAX_ID)
    rows = await list_rows(c.store, state, limit, after)
    return respond(OutboxList([entry(r) for r in rows],
                              rows[-1].id if len(rows) == limit else None))


@api.route("POST", "/outbox/{id}/retry",
           "Send a dead notification again: back to pending, due now, attempts reset to 0",
           OutboxEntry, body=RetryNotification, errors=(400, 403, 404, 409))
@idempotent
async def retry_outbox(request: Request) -> Response:
    """Dead -> pending, due at once, with attempts reset to 0 (the full retry schedule
    again: whoever retries by hand has usually fixed the receiver); last_error keeps
    why it died. Only dead rows: the others are still in the worker's care."""
    c = ctx(request)
    user = c.who(request)
    c.require(user, "retry_incidents")
    await read_body(request, RetryNotification)
    row_id = parse_int("id", request.path_params["id"], 0, 1, MAX_ID)
    try:
        if c.outbox is not None:
            row = await c.outbox.retry(row_id)  # and wakes the worker
        else:
            row = await retry_row(c.store, row_id, c.runtime.clock.now())
    except UnknownRow:
        raise ApiError(404, 2003, f"no notification {row_id} in the outbox",
                       [("id", "unknown")]) from None
    except NotDead as exc:
        raise ApiError(409, 2003, f"notification {row_id} is {exc.row.state}; only dead "
                       "notifications are retried", [("state", exc.row.state)]) from None
    return respond(entry(row))
