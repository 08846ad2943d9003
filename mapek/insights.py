"""Insights: the pipeline's time and flow of work as the dashboard and the static reports
show them.

Theory of operation
-------------------
The Analyze stage asks "what should change?"; this module answers "what happened?":
descriptive numbers over the pipeline's history, exact rather than sketched (a report
over a month of a pipeline is at most a few hundred thousand rows), each a plain
function from rows to msgspec Structs ready for JSON or a template. No I/O and no
clock: the adapters read the rows (the store's `phases` projection, the Monitor's
observations and case attributes, the cost model of costs.yaml) and pass `now` in, so
the dashboard (adapters/http) and the static reports (adapters/reports) show the same
numbers for the same history. SLO compliance per task and bottlenecks (which branch
decides a join) are mapek.analyze's; they are not derived again here.

The numbers come in two modules over the same rows: this one is time and the flow of
work (how much arrives and completes, how long it takes, who answers how fast, when
cases come in); `mapek.economics` is money and conversion (the funnel from lead to
booked revenue, the cost of people's time, each deal's profitability). It builds on
the `Phase` row and the conventions defined here; nothing here depends on it.

Two kinds of row carry everything:

- a `Phase` is a case's stay in one workflow (a deal has up to four: approval,
  contract, pricing, revenue). `flow` buckets arrivals (entered) and completions
  (left with outcome completed) per workflow; `cycle_times` is the distribution of
  completed stays, entered -> left, against the workflow's SLO target;
  `arrival_patterns` reads arrivals on a local clock (hour of the week, hour, day);
  `mapek.economics.conversion` follows cases from lead to booked revenue, deals by
  segment.
- an `Observation` is one work item (mapek.monitor). `approvers` is each person's
  response time, dispatched -> completed (the time the work was in front of them,
  not the time a dispatch policy held it back); `task_times` is where the time goes
  per task; `mapek.economics.priced_items` values people's time at the rates of a
  cost model, summed per role and workflow and charged to each deal as its cost to
  serve.

Conventions every function keeps, here and in `mapek.economics`: hours are float hours;
percentiles are numpy's linear interpolation over the exact sample (as
`mapek.analyze`); a statistic of an empty sample is None, never 0; open work is counted
(it is right-censored, not absent) but never enters a duration; results are sorted
deterministically so two runs over the same history render identical pages.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable

import msgspec
import numpy as np

from mapek.monitor import Observation, local_clocks, utc_offset

HoursOf = Callable[[str], "float | None"]  # workflow_id -> its SLO target in hours
RoleOfPerson = Callable[[str], "str | None"]  # person -> their own role (roles.yaml)

_HOUR = 3600.0


class Phase(msgspec.Struct, frozen=True):
    """A case's stay in one workflow (the store's phases projection)."""

    case_id: str
    workflow_id: str
    entered_at: float
    left_at: float | None = None
    outcome: str | None = None  # completed | cancelled | failed | None (still in it)


class FlowSeries(msgspec.Struct, frozen=True):
    """Arrivals into and completions out of one workflow, per time bucket."""

    workflow_id: str
    bucket_seconds: float
    starts: list[float]  # epoch seconds, the start of each bucket
    arrivals: list[int]
    completions: list[int]


class CycleTimes(msgspec.Struct, frozen=True):
    """Distribution of time in a workflow (entered -> left, completed stays)."""

    workflow_id: str
    closed: int  # completed stays: the sample of the histogram and percentiles
    open: int
    slo_hours: float | None
    bin_edges_hours: list[float]  # len(counts) + 1
    counts: list[int]
    p50_hours: float | None
    p90_hours: float | None
    p95_hours: float | None
    within_slo: float | None  # share of closed stays within the SLO (None: no SLO)
    cancelled: int = 0  # stays that ended otherwise: not in the distribution
    failed: int = 0
    mean_hours: float | None = None
    open_over_slo: int = 0  # open stays already longer than the SLO at `now`


class ApproverStats(msgspec.Struct, frozen=True):
    """One person's response times (dispatched -> completed) over the tasks they did."""

    person: str
    role: str | None
    completed: int
    open: int
    p50_hours: float | None
    p90_hours: float | None
    p95_hours: float | None
    tasks: dict[str, int]  # task -> completed count
    oldest_open_hours: float | None = None  # dispatched -> now of their oldest open item


def _quantiles(hours: np.ndarray) -> tuple[float | None, float | None, float | None]:
    if hours.size == 0:
        return None, None, None
    p50, p90, p95 = np.quantile(hours, [0.5, 0.9, 0.95]).tolist()
    return p50, p90, p95


# ------------------------------------------------------------------ flow
def flow(phases: Iterable[Phase], *, bucket_seconds: float = 86_400.0,
         start: float | None = None, end: float | None = None) -> list[FlowSeries]:
    """One series per workflow, buckets aligned to multiples of `bucket_seconds`.

    Counted are the arrivals (`entered_at`) and completions (`left_at` of a stay whose
    outcome is completed) at a time t with start <= t < end; without `start`/`end` the
    range is the earliest to the latest such time, both included. Buckets cover the
    range from floor(start) to past end, so every workflow's series has the same
    `starts` (a chart can stack them). Workflows are in the order their first case
    entered (the pipeline's order), then by id.
    """
    if bucket_seconds <= 0:
        raise ValueError("bucket_seconds must be > 0")
    rows = list(phases)
    if not rows:
        return []
    entered = np.array([p.entered_at for p in rows], dtype=float)
    left = np.array([p.left_at if p.outcome == "completed" and p.left_at is not None
                     else math.nan for p in rows], dtype=float)
    times = np.concatenate([entered, left[~np.isnan(left)]])
    lo = float(times.min()) if start is None else start
    hi = float(times.max()) if end is None else end
    first = math.floor(lo / bucket_seconds)
    # Without an `end` the latest time is included: its bucket is the last one.
    last = math.floor(hi / bucket_seconds) if end is None else math.ceil(hi / bucket_seconds) - 1
    n = max(last - first + 1, 1)
    starts = [(first + i) * bucket_seconds for i in range(n)]

    def counts(at: np.ndarray) -> list[int]:
        at = at[~np.isnan(at)]
        keep = (at >= lo) & ((at <= hi) if end is None else (at < hi))
        idx = np.floor(at[keep] / bucket_seconds).astype(np.int64) - first
        return np.bincount(idx, minlength=n)[:n].tolist()

    workflow = np.array([p.workflow_id for p in rows])
    order: dict[str, float] = {}
    for p in rows:
        order[p.workflow_id] = min(order.get(p.workflow_id, math.inf), p.entered_at)
    out = []
    for wf in sorted(order, key=lambda w: (order[w], w)):
        mine = workflow == wf
        out.append(FlowSeries(wf, float(bucket_seconds), starts, counts(entered[mine]),
                              counts(left[mine])))
    return out


# ------------------------------------------------------------------ cycle times
def _nice_width(raw: float) -> float:
    """The smallest of 1, 2, 2.5, 5 x 10^k at or above `raw`: bins a reader can name."""
    if raw < 1e-6:  # all but instant: one bin of an hour, and no underflow below
        return 1.0
    base = 10.0 ** math.floor(math.log10(raw))
    for m in (1.0, 2.0, 2.5, 5.0, 10.0):
        if m * base >= raw * (1 - 1e-12):
            return m * base
    return 10.0 * base


def histogram(hours: np.ndarray, bins: int) -> tuple[list[float], list[int]]:
    """At most `bins` bins from 0 of a "nice" width, the largest value inside the last
    (numpy's last bin is closed on the right). A long tail -- the largest value over
    1.5 x the 99th percentile, in 20 values or more -- would squash every other bin
    into the first: then the equal bins stop at the 99th percentile and one last bin
    runs from there to the largest value."""
    bins = max(bins, 1)
    top = float(hours.max()) if hours.size else 0.0
    reach, slots = top, bins
    if hours.size >= 20 and bins >= 3:
        p99 = float(np.quantile(hours, 0.99))
        if p99 > 0 and top > 1.5 * p99:
            reach, slots = p99, bins - 1
    width = _nice_width(reach / slots)
    n = min(max(math.ceil(reach / width - 1e-9), 1), slots)
    edges = [i * width for i in range(n + 1)]
    if hours.size and edges[-1] < top:
        if reach < top and n < bins:
            edges.append(top)  # the tail's bin
        else:  # float rounding: stretch the last edge
            edges[-1] = top
    counts, _ = np.histogram(hours, bins=np.array(edges))
    return edges, counts.tolist()


def cycle_times(phases: Iterable[Phase], slo_hours_of: HoursOf, now: float,
                bins: int = 30) -> list[CycleTimes]:
    """Per workflow (sorted by id): the distribution of completed stays, entered ->
    left in hours, as at most `bins` equal-width bins from 0 (sum of counts = closed),
    percentiles, and the share within the workflow's SLO target. Cancelled and failed
    stays are counted apart (their length says how long a case took to be dropped,
    not to go through); open stays are counted, with those already past the target at
    `now`."""
    by_wf: dict[str, list[Phase]] = defaultdict(list)
    for p in phases:
        by_wf[p.workflow_id].append(p)
    out = []
    for wf in sorted(by_wf):
        rows = by_wf[wf]
        done = np.array([(p.left_at - p.entered_at) / _HOUR for p in rows
                         if p.outcome == "completed" and p.left_at is not None], dtype=float)
        still = np.array([(now - p.entered_at) / _HOUR for p in rows if p.left_at is None],
                         dtype=float)
        ended = Counter(p.outcome for p in rows if p.left_at is not None)
        slo = slo_hours_of(wf)
        edges, counts = histogram(done, bins)
        within = (float((done <= slo).mean()) if slo is not None and done.size else None)
        out.append(CycleTimes(
            wf, int(done.size), int(still.size), slo, edges, counts, *_quantiles(done),
            within, ended.get("cancelled", 0), ended.get("failed", 0),
            float(done.mean()) if done.size else None,
            int((still > slo).sum()) if slo is not None else 0))
    return out


# ------------------------------------------------------------------ approvers
def approvers(observations: Iterable[Observation], now: float, *,
              role_of_person: RoleOfPerson | None = None) -> list[ApproverStats]:
    """People only (items with a `by` and a role, or by someone `role_of_person`
    knows), most completions first.

    A person's `role` is their own (`role_of_person`, from roles.yaml) if given -- and
    then only the people it knows count, not a timer that timed an item out -- else
    the role most of their items were offered to (a CFO acting as sales manager shows
    as sales_manager then). Response is dispatched -> completed; cancelled items are
    not a response and are left out; open items are those they started and have not
    closed, with the age of the oldest at `now`.
    """
    done: dict[str, list[float]] = defaultdict(list)
    tasks: dict[str, Counter[str]] = defaultdict(Counter)
    roles: dict[str, Counter[str]] = defaultdict(Counter)
    still: dict[str, list[float]] = defaultdict(list)
    for o in observations:
        who = o.by
        if who is None:
            continue
        role = o.role
        if role_of_person is not None:
            own = role_of_person(who)
            if own is None:
                continue  # a timer or a system completed it: not a person of the directory
            # Imported history names who did the work but not the role it was offered
            # to: one of the directory's people is an approver all the same.
            role = role or own
        elif role is None:
            continue
        roles[who][role] += 1
        if o.closed_at is None:
            still[who].append((now - o.dispatched_at) / _HOUR)
        elif o.outcome == "completed":
            done[who].append((o.closed_at - o.dispatched_at) / _HOUR)
            tasks[who][o.task] += 1
    out = []
    for who in roles:
        role = role_of_person(who) if role_of_person is not None else None
        if role is None:  # no directory: the role their work was offered to
            role = min(roles[who].items(), key=lambda kv: (-kv[1], kv[0]))[0]
        hours = np.array(done[who], dtype=float)
        out.append(ApproverStats(
            who, role, int(hours.size), len(still[who]), *_quantiles(hours),
            dict(sorted(tasks[who].items(), key=lambda kv: (-kv[1], kv[0]))),
            max(still[who]) if still[who] else None))
    out.sort(key=lambda a: (-a.completed, a.person))
    return out


# ------------------------------------------------------------------ where time goes
class TaskTime(msgspec.Struct, frozen=True):
    """One task's work items: how many, how long (enabled -> closed), how many waiting."""

    workflow_id: str
    task: str
    role: str | None
    completed: int
    open: int
    total_hours: float  # of completed items: the pipeline time this task took
    p50_hours: float | None
    p90_hours: float | None
    oldest_open_hours: float | None


def task_times(observations: Iterable[Observation], now: float) -> list[TaskTime]:
    """Per (workflow, task), most total hours first: where the pipeline's time goes and
    where work waits now (open items, the oldest's age). Cancelled items are neither."""
    done: dict[tuple[str, str], list[float]] = defaultdict(list)
    still: dict[tuple[str, str], list[float]] = defaultdict(list)
    role: dict[tuple[str, str], str | None] = {}
    for o in observations:
        key = (o.workflow_id, o.task)
        role.setdefault(key, o.role)
        if o.closed_at is None:
            still[key].append((now - o.enabled_at) / _HOUR)
        elif o.outcome == "completed":
            done[key].append((o.closed_at - o.enabled_at) / _HOUR)
    out = []
    for key in role:
        hours = np.array(done[key], dtype=float)
        p50, p90, _ = _quantiles(hours)
        out.append(TaskTime(key[0], key[1], role[key], int(hours.size), len(still[key]),
                            float(hours.sum()), p50, p90,
                            max(still[key]) if still[key] else None))
    out.sort(key=lambda t: (-t.total_hours, -t.open, t.workflow_id, t.task))
    return out


# ------------------------------------------------------------------ arrivals
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


class ArrivalPattern(msgspec.Struct, frozen=True):
    """When cases come into one workflow, on the clock of `time_zone`."""

    workflow_id: str
    time_zone: str
    arrivals: int
    by_hour_of_week: list[int]  # 168: Monday 00:00-01:00 first
    by_hour: list[int]  # 24
    by_weekday: list[int]  # 7, Monday first
    days: int  # calendar days from the first arrival's to the last's, both counted
    per_day: float | None  # mean arrivals per calendar day
    peak_hour: int | None  # the local hour with most arrivals
    office_share: float | None  # share arriving Monday-Friday, 09:00-17:00 local


def arrival_patterns(phases: Iterable[Phase], time_zone: str = "UTC", *,
                     start: float | None = None, end: float | None = None,
                     office: tuple[int, int] = (9, 17)) -> list[ArrivalPattern]:
    """Per workflow (in the order of `flow`): arrivals (`entered_at`, start <= t < end)
    by local hour of the week, hour of the day and weekday. Every arrival is in each
    breakdown exactly once, so each sums to `arrivals`."""
    by_wf: dict[str, list[float]] = defaultdict(list)
    first: dict[str, float] = {}
    for p in phases:
        first[p.workflow_id] = min(first.get(p.workflow_id, math.inf), p.entered_at)
        if (start is None or p.entered_at >= start) and (end is None or p.entered_at < end):
            by_wf[p.workflow_id].append(p.entered_at)
    out = []
    for wf in sorted(first, key=lambda w: (first[w], w)):
        at = np.array(by_wf[wf], dtype=float)
        hour, weekday = local_clocks(at, np.zeros(at.size, np.int32), [time_zone])
        week = np.bincount(weekday.astype(np.int64) * 24 + hour, minlength=168)
        by_hour = week.reshape(7, 24).sum(axis=0)
        by_day = week.reshape(7, 24).sum(axis=1)
        days = 0
        if at.size:  # local calendar days: an evening arrival is on that evening's day
            lo, hi = float(at.min()), float(at.max())
            days = int((hi + utc_offset(time_zone, hi)) // 86_400.0
                       - (lo + utc_offset(time_zone, lo)) // 86_400.0) + 1
        office_hours = week.reshape(7, 24)[:5, office[0]:office[1]].sum()
        out.append(ArrivalPattern(
            wf, time_zone, int(at.size), week.tolist(), by_hour.tolist(), by_day.tolist(),
            days, at.size / days if days else None,
            int(by_hour.argmax()) if at.size else None,
            float(office_hours / at.size) if at.size else None))
    return out
