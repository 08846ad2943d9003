"""What the dashboard draws: arrivals and completions over time, cycle-time
distributions against the SLO, approvers' response percentiles, open work by stage,
and the people one may act as.

The numbers are `mapek.insights` over rows read here: the store's phases projection
(`store.query`) and the Monitor's observations (`catch_up()` first). For 100 000 cases
that is some 300 000 phases: about a second of reading and two of folding. So

- the phases are read in pages of `PAGE` rows in key order (keyset), each a short
  query: the store's one reading connection serves other requests between pages
  instead of waiting a second behind this one;
- the folding runs in a worker thread, never on the event loop;
- a result is kept until the event log moves (or a minute passes: open work ages with
  the clock even when nothing is written), and, however busy the log, for at least
  `FRESH` times what it cost to compute: a dashboard refreshing on every live event
  then costs one `max(pos)` per request, and folding a large history can take at most
  a tenth of the server's time.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
import anyio.to_thread
from starlette.requests import Request
from starlette.responses import Response

from mapek.insights import (
    ApproverStats,
    CycleTimes,
    FlowSeries,
    Phase,
    approvers,
    cycle_times,
    flow,
)

from .api import Query, api
from .bodies import People, PersonView, StageCount, Stages, _Out
from .codec import parse_int, respond
from .context import Context, ctx
from .errors import malformed
from .workflows import resolve

T = TypeVar("T")
BUCKETS = {"hour": 3_600.0, "day": 86_400.0, "week": 7 * 86_400.0}
AGE_SECONDS = 60.0  # a kept result is recomputed at least this often (open work ages)
FRESH = 10.0  # a result is kept at least this many times its computing time
PAGE = 10_000  # phases per query

_PHASES = "SELECT case_id, workflow_id, entered_at, left_at, outcome FROM phases"
_NEXT_PAGE = " ORDER BY case_id, workflow_id LIMIT ?"  # the primary key's order
# Driven by work_items (open work only: small) with the case's open phase found by its
# key; CROSS JOIN keeps SQLite from scanning every phase ever recorded instead.
_STAGES = ("SELECT p.workflow_id, w.task, w.kind, count(*), count(DISTINCT w.case_id)"
           " FROM work_items w CROSS JOIN phases p"
           " ON p.case_id = w.case_id AND p.left_at IS NULL"
           " GROUP BY p.workflow_id, w.task, w.kind")


class FlowReport(_Out):
    bucket_seconds: float
    workflows: list[FlowSeries]  # every series has the same bucket starts


class CycleTimeReport(_Out):
    workflows: list[CycleTimes]
    # workflow -> share of stays that must be within the target, % (slos.yaml's
    # compliance_target; the Structs above carry the target only)
    slo_goals: dict[str, float]


class ApproverReport(_Out):
    workflow_id: str | None  # None: every workflow
    approvers: list[ApproverStats]


class _Kept:
    """Results by question, each with the stamp it was computed at; one computation
    per question at a time (a burst of refreshes waits for it rather than repeating).
    At most `LIMIT` questions are kept: their parameters come from clients."""

    LIMIT = 64

    def __init__(self) -> None:
        # key -> (stamp, value, computed at (monotonic), seconds it took)
        self.results: dict[tuple[Any, ...], tuple[tuple[Any, ...], Any, float, float]] = {}
        self.locks: dict[tuple[Any, ...], anyio.Lock] = {}

    async def get(self, key: tuple[Any, ...], stamp: tuple[Any, ...],
                  compute: Callable[[], Awaitable[T]]) -> T:
        lock = self.locks.setdefault(key, anyio.Lock())
        async with lock:
            kept = self.results.get(key)
            now = time.monotonic()
            if kept is not None and (kept[0] == stamp or now - kept[2] < FRESH * kept[3]):
                return kept[1]  # type: ignore[no-any-return]
            value = await compute()
            self.results[key] = (stamp, value, now, time.monotonic() - now)
            while len(self.results) > self.LIMIT:  # the oldest question first
                oldest = next(iter(self.results))
                del self.results[oldest]
                self.locks.pop(oldest, None)
            return value


def _kept(request: Request) -> _Kept:
    state = request.app.state
    kept = getattr(state, "insights_kept", None)
    if kept is None:
        kept = state.insights_kept = _Kept()
    return kept


async def _stamp(c: Context) -> tuple[int, int]:
    return await c.store.log_position(), int(time.time() // AGE_SECONDS)


def _workflow(c: Context, request: Request) -> str | None:
    wid = request.query_params.get("workflow")
    return None if wid is None else resolve(c, wid, "workflow")


async def _phases(c: Context, wid: str | None, since: float | None) -> list[Any]:
    where, args = ["(case_id, workflow_id) > (?, ?)"], []
    if wid is not None:
        where.append("workflow_id = ?")
        args.append(wid)
    if since is not None:  # a stay that began or ended in the range
        where.append("(entered_at >= ? OR left_at >= ?)")
        args += [since, since]
    sql = _PHASES + " WHERE " + " AND ".join(where) + _NEXT_PAGE
    out: list[Any] = []
    after: tuple[str, str] = ("", "")
    while True:
        page = await c.store.query(sql, (*after, *args, PAGE))
        out += page
        if len(page) < PAGE:
            return out
        after = (page[-1][0], page[-1][1])


def _to_phases(rows: list[Any]) -> list[Phase]:
    return [Phase(r[0], r[1], r[2], r[3], r[4]) for r in rows]


def _slo_hours(c: Context) -> Callable[[str], float | None]:
    def hours(workflow_id: str) -> float | None:
        t = c.slas.target(workflow_id, None) if c.slas is not None else None
        return None if t is None else t.target / 3600.0
    return hours


def _goals(c: Context, workflows: list[str]) -> dict[str, float]:
    out = {}
    for wid in workflows:
        slo = c.slas.slo(wid, None) if c.slas is not None else None
        if slo is not None:
            out[wid] = round(100.0 * slo.compliance_target, 1)
    return out


@api.route("GET", "/insights/flow",
           "Arrivals into and completions out of each workflow per hour, day or week",
           FlowReport, errors=(400, 404), query=[
               Query("bucket", "hour | day | week (default day)"),
               Query("days", "only the last N days, 1..3660 (default: all history)",
                     type="integer"),
               Query("workflow", "one workflow (default: all)")])
async def flow_report(request: Request) -> Response:
    c = ctx(request)
    c.who(request)
    q = request.query_params
    bucket = q.get("bucket", "day")
    if bucket not in BUCKETS:
        raise malformed("bucket", "one of hour, day, week")
    days = q.get("days")
    span = None if days is None else parse_int("days", days, 0, 1, 3660) * 86_400.0
    wid = _workflow(c, request)
    now = c.runtime.clock.now()

    async def compute() -> FlowReport:
        since = None if span is None else now - span
        rows = await _phases(c, wid, since)
        series = await anyio.to_thread.run_sync(
            lambda: flow(_to_phases(rows), bucket_seconds=BUCKETS[bucket], start=since))
        return FlowReport(BUCKETS[bucket], series)

    report = await _kept(request).get(("flow", bucket, span, wid), await _stamp(c), compute)
    return respond(report)


@api.route("GET", "/insights/cycle-times",
           "Time cases spend in each workflow: histogram, percentiles, share within the "
           "workflow's SLO target", CycleTimeReport, errors=(400, 404), query=[
               Query("workflow", "one workflow (default: all)"),
               Query("bins", "at most this many histogram bins, 5..200 (default 30)",
                     type="integer")])
async def cycle_time_report(request: Request) -> Response:
    c = ctx(request)
    c.who(request)
    bins = parse_int("bins", request.query_params.get("bins"), 30, 5, 200)
    wid = _workflow(c, request)
    slo_hours, now = _slo_hours(c), c.runtime.clock.now()

    async def compute() -> CycleTimeReport:
        rows = await _phases(c, wid, None)
        found = await anyio.to_thread.run_sync(
            lambda: cycle_times(_to_phases(rows), slo_hours, now, bins))
        return CycleTimeReport(found, _goals(c, [w.workflow_id for w in found]))

    report = await _kept(request).get(("cycle", bins, wid), await _stamp(c), compute)
    return respond(report)


@api.route("GET", "/insights/approvers",
           "Each person's response times (dispatched -> completed): p50, p90, p95, "
           "completed and open work", ApproverReport, errors=(400, 404),
           query=[Query("workflow", "one workflow (default: all)")])
async def approver_report(request: Request) -> Response:
    c = ctx(request)
    c.who(request)
    wid = _workflow(c, request)
    m = c.monitor
    if m is None:
        return respond(ApproverReport(wid, []))
    await m.catch_up()
    now = c.runtime.clock.now()
    stamp = (*m.stamp(), len(m.open), int(time.time() // AGE_SECONDS))

    def role_of(person: str) -> str | None:
        p = c.directory.person(person)
        return p.role if p is not None else None

    async def compute() -> ApproverReport:
        # Copies taken on the event loop: the Monitor appends to these lists meanwhile.
        obs = m.closed[:] + list(m.open.values())

        def run() -> list[ApproverStats]:
            mine = obs if wid is None else [o for o in obs if o.workflow_id == wid]
            return approvers(mine, now, role_of_person=role_of)

        return ApproverReport(wid, await anyio.to_thread.run_sync(run))

    report = await _kept(request).get(("approvers", wid), stamp, compute)
    return respond(report)


@api.route("GET", "/insights/stages",
           "Open work by workflow and task: where the active cases are waiting", Stages,
           errors=())
async def stages(request: Request) -> Response:
    c = ctx(request)
    c.who(request)
    rows = await c.store.query(_STAGES)
    out = [StageCount(wid, task, kind, n, cases) for wid, task, kind, n, cases in rows]
    out.sort(key=lambda s: (s.workflow_id, -s.items, s.task))
    return respond(Stages(out))


@api.route("GET", "/people",
           "The people of roles.yaml (whom the today panel and open mode's "
           "X-Caseloop-User may name), and whom this request acts as", People, errors=())
async def people(request: Request) -> Response:
    c = ctx(request)
    you = c.who(request)
    d = c.directory
    out = []
    for person, p in sorted(d.people.items()):
        perms = sorted({perm for r in d.roles_of(person) if r in d.roles
                        for perm in d.roles[r].permissions})
        out.append(PersonView(person, p.name, p.role, p.team, p.time_zone, perms))
    return respond(People(c.mode, you, out))
