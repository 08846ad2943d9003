"""The server's clock: read it, and -- only when the server runs on a virtual clock
(`caseloop serve --virtual-clock START`, for demos, simulations and end-to-end tests)
-- move it forward.

Advancing walks from deadline to deadline: each due timer fires at its own time and
the runtime settles (automatic tasks run, hand-overs happen) before the next one, so
the events read as they would have in real time.

Moving the clock passes every case's deadlines at once (timeouts route around
approvals, escalations fire), so it needs the `advance_clock` permission (roles.yaml;
the local operator of open mode, who drives demos and tests, has every permission).
One advance moves at most MAX_ADVANCE and never past LATEST: every answer writes times
as dates, and a clock past what a date can hold (year 9999) made every one of them
fail, for good.
"""

from __future__ import annotations

import datetime as dt

from starlette.requests import Request
from starlette.responses import Response

from actors import VirtualClock
from engine import parse_duration
from engine.spec import MAX_DURATION, DurationTooLong

from .api import api
from .bodies import AdvanceClock, ClockView
from .codec import parse_time, read_body, respond, stamp
from .context import ctx
from .errors import MALFORMED, ApiError, malformed
from .idempotency import idempotent

MAX_STEPS = 100_000  # deadlines passed in one advance; beyond that something loops
ADVANCE_PERMISSION = "advance_clock"
MAX_ADVANCE = MAX_DURATION  # a century: more than any demo or simulation needs
# Deadlines are set from the clock (a timer of weeks or years ahead) and written as
# dates too: a millennium of headroom below the year 9999.
LATEST = dt.datetime(9000, 1, 1, tzinfo=dt.UTC).timestamp()


@api.route("GET", "/clock", "The server's time, and whether it is virtual", ClockView,
           errors=())
async def show_clock(request: Request) -> Response:
    c = ctx(request)
    c.who(request)
    clock = c.runtime.clock
    return respond(ClockView(stamp(clock.now()), isinstance(clock, VirtualClock)))


@api.route("POST", "/clock/advance",
           "Move a virtual clock forward (serve --virtual-clock only): by a duration or "
           "to a time, at most a century ahead; due timers fire in order (permission "
           "advance_clock)", ClockView, body=AdvanceClock, errors=(400, 403, 404, 409, 422))
@idempotent
async def advance_clock(request: Request) -> Response:
    c = ctx(request)
    c.require(c.who(request), ADVANCE_PERMISSION)
    clock, rt = c.runtime.clock, c.runtime
    if not isinstance(clock, VirtualClock):
        # The code of a path this server does not serve (errors.on_http_exception).
        raise ApiError(404, MALFORMED, "this server runs on the system clock; start it "
                       "with --virtual-clock to move time", [("clock", "not virtual")])
    body = await read_body(request, AdvanceClock)
    if (body.by is None) == (body.to is None):
        raise malformed("by", "give exactly one of `by` (a duration) or `to` (a time)")
    if body.by is not None:
        try:
            target = clock.now() + parse_duration(body.by)
        except DurationTooLong:  # well-formed, too far: as MAX_ADVANCE below
            raise _too_far("by") from None
        except ValueError as exc:
            raise malformed("by", str(exc)) from None
    else:
        target = parse_time("to", body.to)  # type: ignore[assignment]
        if target < clock.now():  # type: ignore[operator]
            raise ApiError(409, 2003, "a clock does not go backwards", [("to", "in the past")])
    field = "by" if body.by is not None else "to"
    if target - clock.now() > MAX_ADVANCE:  # type: ignore[operator]
        raise _too_far(field)
    if target > LATEST:  # type: ignore[operator]
        raise ApiError(422, MALFORMED, f"{field}: a virtual clock stops at {stamp(LATEST)}",
                       [(field, f"past {stamp(LATEST)}")])
    await rt.wait_idle()
    for _ in range(MAX_STEPS):
        nxt = clock.next_deadline()
        if nxt is None or nxt > target:  # type: ignore[operator]
            break
        clock.advance_to(max(nxt, clock.now()))
        await rt.wait_idle()
    clock.advance_to(target)  # type: ignore[arg-type]
    await rt.wait_idle()
    return respond(ClockView(stamp(clock.now()), True))


def _too_far(field: str) -> ApiError:
    return ApiError(422, MALFORMED, f"{field}: at most a century ahead at once",
                    [(field, "more than 100 years ahead")])
