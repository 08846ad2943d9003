"""A person's day: their open work items by deadline, those at risk, those breached.

Deadlines come from the same place as the SLA timers (slos.yaml targets on top of when
the item was offered) and from the task's own timer, so the panel and the breach
notifications never disagree about what is late.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from adapters.people import OPERATOR

from .api import Query, api
from .bodies import Today, TodayItem
from .codec import iso, respond, stamp
from .context import ctx
from .errors import malformed
from .work import open_work

# Open items ranked by deadline. All of a person's work must be ranked (the store's
# default 500 were the oldest: a newer item on a short SLO could miss the panel); a
# person with more than this many open items is told the panel is cut.
TODAY_LIMIT = 10_000


@api.route("GET", "/today", "A person's open work by deadline, at risk, and breached",
           Today, errors=(400, 403),
           query=[Query("user", "the person (default: whoever asks)")])
async def today(request: Request) -> Response:
    c = ctx(request)
    asker = c.who(request)
    user = request.query_params.get("user") or asker
    if user == OPERATOR:  # open mode's local operator has no work of their own
        raise malformed("user", "whose day? name the person: ?user=... (or the "
                        "X-Caseloop-User header)")
    if c.directory.person(user) is None:
        raise malformed("user", f"unknown person {user!r} (specs/roles.yaml)")
    c.directory.require_sees_work(asker, user)
    now = c.runtime.clock.now()
    # What their worklist offers them: work beyond their authority is not their day.
    rows, truncated = await open_work(c, user, sorted(c.directory.roles_of(user)), now,
                                      TODAY_LIMIT)
    items = []
    for r, wid in rows:
        sla = c.slas.target(wid, r.task) if c.slas is not None else None
        target_at = r.enabled_at + sla.target if sla else None
        alert_at = r.enabled_at + sla.alert if sla else None
        deadline = min((t for t in (target_at, r.due) if t is not None), default=None)
        status = ("breached" if alert_at is not None and now >= alert_at else
                  "at_risk" if target_at is not None and now >= target_at else "on_track")
        items.append((deadline if deadline is not None else float("inf"), r.enabled_at,
                      TodayItem(r.case_id, wid, r.item, r.task, r.state, r.assignee,
                                stamp(r.enabled_at), iso(deadline), iso(alert_at), status)))
    items.sort(key=lambda x: (x[0], x[1]))
    views = [v for _, _, v in items]
    return respond(Today(user, stamp(now), views,
                         [v for v in views if v.status == "at_risk"],
                         [v for v in views if v.status == "breached"],
                         truncated))
