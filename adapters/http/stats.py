"""The pipeline at a glance: cases by workflow and state, and the conversion from
lead to deal to booked revenue.

Counts come from the phases projection (a deal is counted in every workflow it passed
through); conversion from the monitor's observations of the tasks that mark each
step: AssignToSDR (a qualified lead), AllApprovalsComplete (an approved deal),
BookRevenue (revenue booked).
"""

from __future__ import annotations

import math

from starlette.requests import Request
from starlette.responses import Response

from .api import api
from .bodies import Conversion, Stats, WorkflowCounts
from .codec import respond
from .context import Context, ctx

LEADS, DEALS, REVENUE = "lead-qualification", "deal-approval-gate", "revenue-recognition"


def _percent(part: int, whole: int) -> float | None:
    return round(100.0 * part / whole, 1) if whole else None


async def case_counts(c: Context) -> dict[str, dict[str, int]]:
    """Cases by workflow and state (active, completed, ...), every registered workflow
    present: the phases projection, so a deal counts in each workflow it passed through
    (also `GET /metrics`' caseloop_cases)."""
    rows = await c.store.query(
        "SELECT workflow_id, coalesce(outcome, 'active'), count(*) FROM phases"
        " GROUP BY workflow_id, coalesce(outcome, 'active')")
    counts: dict[str, dict[str, int]] = {n.workflow_id: {} for n in c.runtime.workflows()}
    for wid, state, n in rows:
        counts.setdefault(wid, {})[state] = n
    return counts


def _amount(value: object) -> float:
    """An ACV to add up: imported history carries whatever the other system wrote
    ("n/a", "$120,000"), and one such case must not turn the overview into a 500 for
    everyone; what is no finite number counts 0, as in mapek.economics."""
    try:
        x = float(value or 0)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return 0.0
    return x if math.isfinite(x) else 0.0


@api.route("GET", "/stats", "Cases by workflow and state; lead -> deal -> booked", Stats,
           errors=())
async def stats(request: Request) -> Response:
    c = ctx(request)
    c.who(request)
    counts = await case_counts(c)
    per = [WorkflowCounts(wid, s.get("active", 0), s.get("completed", 0),
                          s.get("cancelled", 0), s.get("failed", 0))
           for wid, s in sorted(counts.items())]
    m = c.monitor
    assert m is not None
    await m.catch_up()
    leads = sum(counts.get(LEADS, {}).values())
    deals = sum(counts.get(DEALS, {}).values())
    booked = m.cases_completing(REVENUE, "BookRevenue")
    acv = sum((_amount(m.attributes.get(cid, {}).get("deal_acv")) for cid in booked), 0.0)
    return respond(Stats(per, Conversion(
        leads=leads, leads_qualified=m.completions(LEADS, "AssignToSDR"), deals=deals,
        deals_approved=m.completions(DEALS, "AllApprovalsComplete"),
        deals_booked=len(booked), booked_acv=acv,
        lead_to_deal_percent=_percent(deals, leads),
        deal_to_booked_percent=_percent(len(booked), deals))))
