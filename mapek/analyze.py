"""Analyze: what the observations of work say, and how sure we may be of it.

Theory of operation
-------------------
The Monitor's observations are turned once into an `ItemFrame`: one numpy column
per field, strings coded as integers, the local dispatch hour and weekday of every
item on its person's clock (`monitor.local_clocks`), and each person's load when
they picked the item up (items they had started and not yet closed -- a sweep over
their sorted start and close times). Every analyzer is then a plain function over
that frame returning msgspec Structs ready for JSON:

- `slo_compliance`: per task with a target, percentiles of enabled -> closed hours,
  the share within target (Wilson interval), open items already over it.
- `bottlenecks`: which branch decides each AND-join's wait. The data define the
  branches: work items of one case and workflow *enabled at the same instant* were
  enabled by one firing, i.e. an AND-split (an XOR or deferred choice enables one
  item, or several of which all but one end cancelled -- such groups are skipped).
  The branch that closes last decided when the join could fire; the gap to the
  second-last close is the wait it alone caused.
- `dispatch_effect`: response (dispatched -> closed) by local dispatch hour and
  weekday/weekend; the best hour against the rest (ratio of geometric means).
- `assignee_effect`: each person's effect on log response hours, controlling for
  dispatch hour (one dummy per hour) and their load at pick-up, against the
  average assignee of the task.
- `breach_risk`: P(T > target | T > elapsed) = S(target) / S(elapsed) from a
  Kaplan-Meier curve of the task (closed items, open and cancelled ones censored).

Intervals and confidences come from `mapek.stats`: confidence is 1 - p of a
permutation test that repeats any selection (best hour, most different person),
and nothing is claimed on fewer than `MIN_SAMPLE` items. The effect analyzers use
the latest `max_items` completions of a task: recent behaviour is what a policy
change acts on, and it bounds the resampling cost. Everything is deterministic for
a given `seed`. Analysis reads history only; it never runs on a request's path.
"""

from __future__ import annotations

import gc
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

import msgspec
import numpy as np
from threadpoolctl import threadpool_limits

from mapek.monitor import Observation, TimeZoneOf, local_clocks
from mapek.stats import (
    CLAIM,
    MIN_SAMPLE,
    Estimate,
    bootstrap_means,
    kaplan_meier,
    percentile_interval,
    permutation_confidence,
    quantile_interval,
    survival_at,
    wild_bootstrap,
    wilson,
)

TargetOf = Callable[[str, str], "float | None"]  # (workflow, task) -> SLO target, hours
RESAMPLES = 400  # per effect: p resolves to 1/401, intervals to a few percent
MAX_ITEMS = 5_000  # latest completions of a task the effect analyzers look at
_MINUTE_H = 1.0 / 60.0  # log hours need a floor: an instant reply counts as a minute


@dataclass(frozen=True, slots=True, eq=False)
class ItemFrame:
    """Observations as columns. Codes index the name lists; -1: no person."""

    now: float
    case: np.ndarray
    case_ids: list[str]
    workflow: np.ndarray
    workflows: list[str]
    activity: np.ndarray  # (workflow, task) code
    activities: list[tuple[str, str]]
    item: np.ndarray
    person: np.ndarray
    people: list[str]
    enabled: np.ndarray
    started: np.ndarray  # nan: never started
    closed: np.ndarray  # nan: still open (right-censored)
    dispatched: np.ndarray  # enabled, or released from a hold
    completed: np.ndarray  # bool
    hour: np.ndarray  # local dispatch hour on the person's clock
    weekday: np.ndarray  # 0 = Monday
    load: np.ndarray  # the person's items in progress at pick-up
    acv: np.ndarray  # the case's deal ACV, nan if unknown
    members: list[np.ndarray]  # item indices per activity code

    @property
    def n(self) -> int:
        return int(self.enabled.size)

    @classmethod
    def from_observations(cls, observations: Iterable[Observation], now: float,
                          time_zone_of: TimeZoneOf | None = None,
                          attributes: Mapping[str, Mapping[str, Any]] | None = None,
                          ) -> ItemFrame:
        # Columns through C-level maps (attrgetter) with the cyclic GC paused: over
        # 600 000 objects the collector's passes would cost more than the reading.
        obs = list(observations)
        collecting = gc.isenabled()
        gc.disable()
        try:
            return cls._build(obs, now, time_zone_of or (lambda _p: "UTC"), attributes or {})
        finally:
            if collecting:
                gc.enable()

    @classmethod
    def _build(cls, obs: list[Observation], now: float, zone_of: TimeZoneOf,
               attrs: Mapping[str, Mapping[str, Any]]) -> ItemFrame:
        def column(name: str) -> list[Any]:
            return list(map(attrgetter(name), obs))

        def codes(name: str) -> tuple[np.ndarray, list[Any]]:
            values = column(name)
            names = list(dict.fromkeys(values))
            code = {v: i for i, v in enumerate(names)}
            return np.fromiter(map(code.__getitem__, values), np.int32, len(values)), names

        def floats(name: str) -> np.ndarray:  # None reads as nan
            return np.array(column(name), dtype=float).reshape(-1)

        case, case_ids = codes("case_id")
        workflow, flow_names = codes("workflow_id")
        task, task_names = codes("task")
        person, who = codes("by")
        enabled, started, closed = floats("enabled_at"), floats("started_at"), floats("closed_at")
        held = floats("held_until")
        outcome, outcomes = codes("outcome")
        completed = outcome == (outcomes.index("completed") if "completed" in outcomes else -2)
        item = np.array(column("item"), dtype=np.int64).reshape(-1)
        names = [p for p in who if p is not None]
        if None in who:  # nobody: -1, people: 0..
            nobody = who.index(None)
            person = np.where(person == nobody, -1, person - (person > nobody))
        acv = np.array([_number(attrs.get(c, {}).get("deal_acv")) for c in case_ids],
                       dtype=float)[case] if attrs else np.full(case.size, math.nan)

        # (workflow, task) pairs coded densely: a task name may recur across workflows
        width = max(len(task_names), 1)
        pairs, activity = np.unique(workflow.astype(np.int64) * width + task,
                                    return_inverse=True)
        activities = [(flow_names[p // width], task_names[p % width]) for p in pairs.tolist()]
        dispatched = np.where(held > enabled, held, enabled)  # nan > x is False

        zones = sorted({zone_of(p) for p in [None, *names]})
        zone_code = np.array([zones.index(zone_of(p)) for p in [*names, None]], np.int32)
        hour, weekday = local_clocks(dispatched, zone_code[person], zones)  # -1: None
        order = np.argsort(activity, kind="stable")
        bounds = np.searchsorted(activity[order], np.arange(len(activities) + 1))
        return cls(now, case, case_ids, workflow, flow_names,
                   activity.astype(np.int32), activities, item, person, names,
                   enabled, started, closed, dispatched, completed, hour, weekday,
                   _load_at_pickup(person, started, closed), acv,
                   [order[bounds[i]:bounds[i + 1]] for i in range(len(activities))])

    def of(self, workflow: str, task: str) -> np.ndarray:
        try:
            return self.members[self.activities.index((workflow, task))]
        except ValueError:
            return np.zeros(0, np.int64)


def _number(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def _load_at_pickup(person: np.ndarray, started: np.ndarray, closed: np.ndarray,
                    ) -> np.ndarray:
    """Per item, the person's other items in progress (started, not closed) when they
    picked it up. An item completed straight from enabled is picked up and closed in
    one instant: it loads nobody. One sorted sweep for all people at once: times are
    offset by person so each person's span is its own segment of one sorted axis."""
    load = np.zeros(person.size, np.int32)
    has = person >= 0
    if not has.any():
        return load
    closed_or_inf = np.where(np.isnan(closed), np.inf, closed)
    pick = np.where(np.isnan(started), closed_or_inf, started)
    ok = has & np.isfinite(pick)
    if not ok.any():
        return load
    fin = ok & np.isfinite(closed_or_inf)
    lo = float(pick[ok].min())
    span = float(max(pick[ok].max(), closed_or_inf[fin].max(initial=lo))) - lo + 1.0
    who = person[ok]
    at = who * span + (pick[ok] - lo)
    order = np.argsort(at, kind="stable")
    start_key = at[order]  # sorted queries make the searches below cache-friendly
    close_key = np.sort(person[fin] * span + (closed_or_inf[fin] - lo))
    bases = np.arange(int(person.max()) + 1) * span
    began, ended = np.empty(at.size, np.int64), np.empty(at.size, np.int64)
    began[order] = np.searchsorted(start_key, start_key, "right")
    ended[order] = np.searchsorted(close_key, start_key, "right")
    began -= np.searchsorted(start_key, bases, "left")[who]
    ended -= np.searchsorted(close_key, bases, "left")[who]
    self_open = closed_or_inf[ok] > pick[ok]  # the item itself is in progress
    load[ok] = began - ended - self_open
    return load


# ------------------------------------------------------------------ results
class DataStamp(msgspec.Struct, frozen=True):
    observations: int
    latest: float  # the newest time in the history; a change means re-analyze


class TaskSlo(msgspec.Struct, frozen=True):
    workflow: str
    task: str
    target_hours: float
    closed: int
    open: int
    p50_hours: float | None
    p90_hours: float | None
    p95_hours: float | None
    compliance: Estimate | None  # share of closed items within target
    open_over_target: int


class JoinTask(msgspec.Struct, frozen=True):
    task: str
    decided: int  # times it closed last
    share: Estimate  # decided / n; confidence: 1 - p against exchangeable branches
    extra_wait_hours: Estimate | None  # median last - second-last close when it decided


class JoinWait(msgspec.Struct, frozen=True):
    workflow: str
    tasks: list[str]
    n: int  # joins observed with every branch completed
    wait_hours: Estimate | None  # median enabled -> last close
    by_task: list[JoinTask]
    bottleneck: str | None  # claimed only at n >= MIN_SAMPLE and confidence >= CLAIM


class SliceResponse(msgspec.Struct, frozen=True):
    key: str  # "09" (local hour) or "weekday" / "weekend"
    n: int
    median_hours: Estimate


class DispatchEffect(msgspec.Struct, frozen=True):
    workflow: str
    task: str
    n: int
    by_hour: list[SliceResponse]
    by_day: list[SliceResponse]
    best_hour: int | None
    effect: Estimate | None  # best hour / rest, ratio of geometric mean response
    hours_saved: float | None  # median rest - median best hour
    claimed: bool


class PersonEffect(msgspec.Struct, frozen=True):
    person: str
    n: int
    median_hours: float
    mean_load: float
    effect: Estimate | None  # response ratio vs the average assignee, same hour & load
    extra_hours: float | None  # (ratio - 1) x the task's median response
    claimed: bool


class AssigneeEffect(msgspec.Struct, frozen=True):
    workflow: str
    task: str
    n: int
    load_factor: float  # response ratio per extra item in progress
    people: list[PersonEffect]


class BreachRisk(msgspec.Struct, frozen=True):
    case_id: str
    workflow: str
    task: str
    item: int
    person: str | None
    elapsed_hours: float
    target_hours: float
    probability: float  # P(T > target | T > elapsed)
    n: int  # items of the task the survival curve rests on


class Analysis(msgspec.Struct, frozen=True):
    stamp: DataStamp
    now: float
    slo: list[TaskSlo]
    bottlenecks: list[JoinWait]
    dispatch: list[DispatchEffect]
    assignees: list[AssigneeEffect]
    breach_risk: list[BreachRisk]


# ------------------------------------------------------------------ analyzers
def _quantiles(hours: np.ndarray) -> tuple[float | None, float | None, float | None]:
    if hours.size == 0:
        return None, None, None
    p50, p90, p95 = np.quantile(hours, [0.5, 0.9, 0.95]).tolist()
    return p50, p90, p95


def slo_compliance(frame: ItemFrame, target_of: TargetOf, now: float) -> list[TaskSlo]:
    """Per task with a target: enabled -> closed percentiles of completed items, the
    share within target (Wilson), and how many open items are past it already."""
    out = []
    for a, (wf, task) in enumerate(frame.activities):
        target = target_of(wf, task)
        if target is None:
            continue
        idx = frame.members[a]
        done = idx[frame.completed[idx]]
        still = idx[np.isnan(frame.closed[idx])]
        hours = (frame.closed[done] - frame.enabled[done]) / 3600.0
        elapsed = (now - frame.enabled[still]) / 3600.0
        out.append(TaskSlo(wf, task, float(target), int(done.size), int(still.size),
                           *_quantiles(hours), wilson(int((hours <= target).sum()), done.size),
                           int((elapsed > target).sum())))
    return out


def bottlenecks(frame: ItemFrame, *, seed: int = 0, resamples: int = 2000,
                ) -> list[JoinWait]:
    """Per set of branches enabled together: how often each closed last (a share, its
    confidence against exchangeable branches by Monte Carlo with the max over
    branches), the wait it alone caused, and the claimed bottleneck if any. Joins with
    a branch still open or cancelled are left out (not a completed AND-join)."""
    rng = np.random.default_rng(seed)
    order = np.lexsort((frame.closed, frame.enabled, frame.workflow, frame.case))
    c, w, e = frame.case[order], frame.workflow[order], frame.enabled[order]
    new = np.ones(order.size, bool)
    new[1:] = (c[1:] != c[:-1]) | (w[1:] != w[:-1]) | (e[1:] != e[:-1])
    starts = np.flatnonzero(new)
    sizes = np.diff(np.append(starts, order.size))
    done = frame.completed[order]
    all_done = np.add.reduceat(done.astype(np.int64), starts) == sizes
    keep = (sizes >= 2) & all_done
    starts, sizes = starts[keep], sizes[keep]
    if starts.size == 0:
        return []
    # A group's branch set, as a sum of random 64-bit tags (wrapping) per activity.
    tags = np.random.default_rng(0x5EED).integers(0, 2**63, len(frame.activities),
                                                  dtype=np.uint64)
    act = frame.activity[order]
    seg_starts = np.flatnonzero(new)
    sig = np.add.reduceat(tags[act], seg_starts)[keep]
    last, second = order[starts + sizes - 1], order[starts + sizes - 2]  # closed sorted
    extra = (frame.closed[last] - frame.closed[second]) / 3600.0
    wait = (frame.closed[last] - frame.enabled[last]) / 3600.0
    out = []
    for s in np.unique(sig).tolist():
        m = sig == s
        first = int(np.flatnonzero(m)[0])
        members = act[starts[first]:starts[first] + sizes[first]]
        branches = sorted(set(members.tolist()))
        if len(branches) < 2:  # instances of one task, not branches
            continue
        n = int(m.sum())
        decider = frame.activity[last[m]]
        counts = np.array([(decider == b).sum() for b in branches])
        null = rng.multinomial(n, [1.0 / len(branches)] * len(branches), resamples).max(axis=1)
        conf = permutation_confidence(counts, null)
        rows = []
        for b, k, cf in zip(branches, counts.tolist(), conf.tolist(), strict=True):
            share = wilson(k, n)
            assert share is not None
            rows.append(JoinTask(frame.activities[b][1], k,
                                 msgspec.structs.replace(share, confidence=cf),
                                 quantile_interval(extra[m][decider == b], 0.5,
                                                   minimum=MIN_SAMPLE)))
        rows.sort(key=lambda r: -r.decided)
        top = rows[0]
        claimed = n >= MIN_SAMPLE and (top.share.confidence or 0.0) >= CLAIM
        out.append(JoinWait(frame.workflows[int(frame.workflow[last[m][0]])],
                            [frame.activities[b][1] for b in branches], n,
                            quantile_interval(wait[m], 0.5, minimum=MIN_SAMPLE), rows,
                            top.task if claimed else None))
    out.sort(key=lambda j: -j.n)
    return out


def _response(frame: ItemFrame, workflow: str, task: str, max_items: int) -> np.ndarray:
    """The latest completed items of a task done by someone, oldest first."""
    idx = frame.of(workflow, task)
    idx = idx[frame.completed[idx] & (frame.person[idx] >= 0)]
    idx = idx[np.argsort(frame.closed[idx], kind="stable")]
    return idx[-max_items:]


def _log_hours(frame: ItemFrame, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    hours = (frame.closed[idx] - frame.dispatched[idx]) / 3600.0
    return hours, np.log(np.maximum(hours, _MINUTE_H))


def dispatch_effect(frame: ItemFrame, workflow: str, task: str, *, seed: int = 0,
                    resamples: int = RESAMPLES, max_items: int = MAX_ITEMS,
                    ) -> DispatchEffect | None:
    """Response by local dispatch hour and weekday/weekend, and the best hour (with
    at least MIN_SAMPLE items) against all the others: a ratio of geometric means,
    bootstrap interval, permutation confidence with the choice of the best hour
    repeated under every shuffle of the hour labels. Descriptive, not a policy."""
    idx = _response(frame, workflow, task, max_items)
    n = int(idx.size)
    if n < MIN_SAMPLE:
        return None
    rng = np.random.default_rng(seed)
    hours, y = _log_hours(frame, idx)
    hour = frame.hour[idx].astype(np.int64)

    def slice_(key: str, m: np.ndarray) -> SliceResponse:
        est = quantile_interval(hours[m], 0.5)
        assert est is not None
        return SliceResponse(key, int(m.sum()), est)

    by_hour = [slice_(f"{h:02d}", hour == h) for h in np.unique(hour).tolist()]
    weekend = frame.weekday[idx] >= 5
    by_day = [slice_(k, m) for k, m in (("weekday", ~weekend), ("weekend", weekend))
              if m.any()]
    counts = np.bincount(hour, minlength=24)
    eligible = counts >= MIN_SAMPLE
    if eligible.sum() < 2:
        return DispatchEffect(workflow, task, n, by_hour, by_day, None, None, None, False)

    def gap(sums: np.ndarray) -> np.ndarray:
        """rest mean - best eligible hour mean, per row of per-hour sums."""
        means = np.where(eligible, sums / np.maximum(counts, 1), np.inf)
        best = means.argmin(axis=-1)
        best_sum = np.take_along_axis(sums, best[..., None], -1)[..., 0]
        return (sums.sum(axis=-1) - best_sum) / (n - counts[best]) - means.min(axis=-1)

    sums = np.bincount(hour, y, 24)
    best = int(np.where(eligible, sums / np.maximum(counts, 1), np.inf).argmin())
    observed = float(gap(sums[None, :])[0])
    null = []
    for rows in _row_chunks(resamples, n):
        shuffled = rng.permuted(np.broadcast_to(hour, (rows, n)), axis=1)
        flat = (np.arange(rows)[:, None] * 24 + shuffled).ravel()
        null.append(gap(np.bincount(flat, np.tile(y, rows), rows * 24).reshape(rows, 24)))
    confidence = float(permutation_confidence(observed, np.concatenate(null))[0])
    in_best = hour == best
    diff = bootstrap_means(y[in_best], rng, resamples) - bootstrap_means(y[~in_best], rng,
                                                                           resamples)
    lo, hi = percentile_interval(diff)
    effect = Estimate(math.exp(-observed), math.exp(lo), math.exp(hi), n, confidence)
    saved = float(np.median(hours[~in_best]) - np.median(hours[in_best]))
    return DispatchEffect(workflow, task, n, by_hour, by_day, best, effect, saved,
                          confidence >= CLAIM)


def _row_chunks(rows: int, n: int, cells: int = 4_000_000) -> list[int]:
    per = max(1, cells // max(n, 1))
    return [min(per, rows - i) for i in range(0, rows, per)]


def assignee_effect(frame: ItemFrame, workflow: str, task: str, *, seed: int = 0,
                    resamples: int = RESAMPLES, max_items: int = MAX_ITEMS,
                    ) -> AssigneeEffect | None:
    """Each person's response ratio against the task's average assignee at the same
    dispatch hour and load (least squares on log hours: a dummy per person and per
    hour, load linear), wild-bootstrap interval, Freedman-Lane permutation
    confidence. None with fewer than MIN_SAMPLE items or fewer than two people."""
    idx = _response(frame, workflow, task, max_items)
    n = int(idx.size)
    if n < MIN_SAMPLE:
        return None
    with _one_blas_thread():
        return _assignee_effect(frame, workflow, task, idx, seed, resamples)


def _one_blas_thread() -> Any:
    """The products here are (400 x 5 000) by (5 000 x 30): a BLAS thread pool only
    fights the web server and the other analyses for the cores (5x slower on a shared
    two-core machine than one thread). Analysis is background work: one thread."""
    return threadpool_limits(limits=1, user_api="blas")


def _assignee_effect(frame: ItemFrame, workflow: str, task: str, idx: np.ndarray,
                     seed: int, resamples: int) -> AssigneeEffect | None:
    n = int(idx.size)
    who, person = np.unique(frame.person[idx], return_inverse=True)
    if who.size < 2:
        return None
    rng = np.random.default_rng(seed)
    hours, y = _log_hours(frame, idx)
    hour_codes, hour = np.unique(frame.hour[idx], return_inverse=True)
    load = frame.load[idx].astype(float)
    groups, strata = int(who.size), int(hour_codes.size)
    per = np.bincount(person, minlength=groups)

    def effects(coef: np.ndarray, weight: np.ndarray) -> np.ndarray:
        """Each person's coefficient against the weighted average assignee's."""
        avg = (coef * weight).sum(axis=1, keepdims=True) / weight.sum(axis=1, keepdims=True)
        return coef - avg

    # Design: one dummy per person (no intercept), per dispatch hour but the first,
    # and the load; the bootstrap is over items (wild: signs of residuals).
    x = np.zeros((n, groups + strata))
    x[np.arange(n), person] = 1.0
    x[np.arange(n), groups + hour] = 1.0
    x[:, groups] = load  # the first hour's column is the reference: reused for load
    coef, draws = wild_bootstrap(x, y, rng, resamples=resamples)
    weight = per[None, :].astype(float)
    observed = effects(coef[None, :groups], weight)[0]
    boot_eff = effects(draws[:, :groups], weight)
    load_coef = coef[groups]
    # Permutation (Freedman-Lane): the model without people (hours + load) is fitted,
    # its residuals are shuffled within each dispatch-hour stratum and added back, and
    # the full model is refitted. Who works when and at what load stays as observed,
    # so a person who is busy at slow hours is not mistaken for a slow person. The
    # statistic is the max standardized effect over the people with enough items:
    # the selection of the most different person is repeated in every row.
    ok = per >= MIN_SAMPLE
    scale = np.sqrt(per)
    reduced = np.column_stack([np.ones(n), x[:, groups:]])
    fitted = reduced @ np.linalg.lstsq(reduced, y, rcond=None)[0]
    resid = y - fitted
    solve = np.linalg.pinv(x).T  # y (rows x n) @ solve -> coefficients (rows x k)
    by_hour = [np.flatnonzero(hour == s) for s in range(strata)]
    null = []
    for rows in _row_chunks(resamples, n):
        y_null = np.broadcast_to(fitted, (rows, n)).copy()
        for members in by_hour:
            y_null[:, members] += rng.permuted(
                np.broadcast_to(resid[members], (rows, members.size)), axis=1)
        c = (y_null @ solve)[:, :groups]
        e = np.abs(effects(c, np.broadcast_to(weight, c.shape))) * scale
        null.append(np.where(ok, e, 0.0).max(axis=1))
    conf = permutation_confidence(np.abs(observed) * scale, np.concatenate(null))
    median = float(np.median(hours))
    people = []
    for g in range(groups):
        mine = person == g
        est = None
        if ok[g]:
            lo, hi = percentile_interval(boot_eff[:, g])
            est = Estimate(math.exp(observed[g]), math.exp(lo), math.exp(hi), int(per[g]),
                           float(conf[g]))
        people.append(PersonEffect(
            frame.people[int(who[g])], int(per[g]), float(np.median(hours[mine])),
            float(load[mine].mean()), est,
            None if est is None else median * (est.value - 1.0),
            est is not None and (est.confidence or 0.0) >= CLAIM))
    people.sort(key=lambda p: -(p.effect.value if p.effect else 0.0))
    return AssigneeEffect(workflow, task, n, math.exp(float(load_coef)), people)


def breach_risk(frame: ItemFrame, target_of: TargetOf, now: float, *,
                limit: int | None = None) -> list[BreachRisk]:
    """Open items under their target, most at risk first: S(target) / S(elapsed) from
    the task's Kaplan-Meier curve (tasks with fewer than MIN_SAMPLE completions are
    skipped; items already over target are breaches, not risks)."""
    out = []
    for a, (wf, task) in enumerate(frame.activities):
        target = target_of(wf, task)
        idx = frame.members[a]
        if target is None or idx.size == 0:
            continue
        is_open = np.isnan(frame.closed[idx])
        done = frame.completed[idx]
        if done.sum() < MIN_SAMPLE or not is_open.any():
            continue
        end = np.where(is_open, now, frame.closed[idx])
        curve = kaplan_meier((end - frame.enabled[idx]) / 3600.0, done)
        still = idx[is_open]
        elapsed = (now - frame.enabled[still]) / 3600.0
        at_risk = elapsed < target  # already over target: counted by slo_compliance
        still, elapsed = still[at_risk], elapsed[at_risk]
        s_now = survival_at(curve, elapsed)
        s_target = survival_at(curve, float(target))[0]
        # Beyond every completion seen so far the curve says nothing: assume the worst.
        p = np.where(s_now > 0, s_target / np.where(s_now > 0, s_now, 1.0), 1.0)
        for i, el, pr in zip(still.tolist(), elapsed.tolist(), p.tolist(), strict=True):
            who = int(frame.person[i])
            out.append(BreachRisk(frame.case_ids[int(frame.case[i])], wf, task,
                                  int(frame.item[i]), frame.people[who] if who >= 0 else None,
                                  el, float(target), min(1.0, pr), curve.n))
    out.sort(key=lambda r: (-r.probability, -r.elapsed_hours))
    return out if limit is None else out[:limit]


def analyze(observations: Iterable[Observation], target_of: TargetOf, now: float,
            time_zone_of: TimeZoneOf | None = None, *,
            attributes: Mapping[str, Mapping[str, Any]] | None = None, seed: int = 0,
            breach_limit: int | None = 500) -> Analysis:
    """Every analyzer over one frame; the stamp tells a caller whether history moved."""
    with _one_blas_thread():
        return _analyze(observations, target_of, now, time_zone_of, attributes, seed,
                        breach_limit)


def _analyze(observations: Iterable[Observation], target_of: TargetOf, now: float,
             time_zone_of: TimeZoneOf | None,
             attributes: Mapping[str, Mapping[str, Any]] | None, seed: int,
             breach_limit: int | None) -> Analysis:
    frame = ItemFrame.from_observations(observations, now, time_zone_of, attributes)
    latest = float(np.nanmax(np.concatenate([frame.enabled, frame.closed, frame.started,
                                             frame.dispatched]))) if frame.n else 0.0
    dispatch, assignees = [], []
    for wf, task in frame.activities:
        if (d := dispatch_effect(frame, wf, task, seed=seed)) is not None:
            dispatch.append(d)
        if (p := assignee_effect(frame, wf, task, seed=seed)) is not None:
            assignees.append(p)
    return Analysis(DataStamp(frame.n, latest), now,
                    slo_compliance(frame, target_of, now), bottlenecks(frame, seed=seed),
                    dispatch, assignees,
                    breach_risk(frame, target_of, now, limit=breach_limit))
