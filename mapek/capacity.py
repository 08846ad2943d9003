"""Capacity: is a role's work waiting because its people are saturated?

Theory of operation
-------------------
When a role's people have more work than they can take, new work queues behind the
old: the more of the role's items are open when an item is dispatched, the longer it
takes. When they are not, an item takes what it takes whatever else is waiting. So
the question is the slope of response on backlog, for one role across its tasks.

Per completed item of the role (the latest `MAX_ITEMS`, done by someone): its response
(dispatched -> closed, log hours) and the backlog when it was dispatched -- the role's
other items dispatched and not yet closed, per person doing the role's work (one
sorted sweep). Calendar effects are strong and also move the backlog (Monday mornings
find the weekend's work waiting, and night work waits for the morning anyway), so
the model holds one level per local dispatch hour and day type (Mon-Thu, Fri, Sat,
Sun) and one per task, and backlog enters linearly:

    log response = hour x day type + task + beta * backlog per person

beta has a wild-bootstrap 95 % interval, and its confidence is 1 - p of a one-sided
Freedman-Lane permutation test: the model without backlog is fitted, its residuals
are shuffled within each hour x day-type stratum and added back, and beta refitted.
Under work that does not wait, P(confidence >= c) <= 1 - c. Nothing is said below
`min_sample` items, or when the backlog per person averages under `min_backlog`
(nothing queues), or unless beta is claimed (CLAIM) with its interval above zero.

The estimate is one more person doing the role's work at the team's pace: backlog per
person falls from b/k to b/(k+1), and each item's response by the factor
exp(-beta * b (1/k - 1/(k+1))); the saving per item is that share of its observed
response, averaged per workflow, with beta's interval carried through. It is advice
(hiring, or letting a role that acts as this one take part): no policy can add a
person, so the recommendation has no change and nothing to verify.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import msgspec
import numpy as np

from .analyze import MAX_ITEMS, ItemFrame
from .stats import (
    CLAIM,
    Estimate,
    percentile_interval,
    permutation_confidence,
    wild_bootstrap,
)

_MINUTE_H = 1.0 / 60.0
_DAY_TYPE = np.array([0, 0, 0, 0, 1, 2, 3])  # Monday..Sunday -> Mon-Thu, Fri, Sat, Sun


class CapacityConfig(msgspec.Struct, frozen=True):
    min_sample: int = 200
    min_backlog: float = 1.0  # mean waiting items per person: below it nothing queues
    resamples: int = 400
    min_saving_hours: float = 0.25
    min_saving_share: float = 0.05  # of the workflow's mean response for the role
    claim: float = CLAIM
    seed: int = 0


_DEFAULT = CapacityConfig()


class WorkflowSaving(msgspec.Struct, frozen=True):
    workflow_id: str
    tasks: list[str]
    n: int
    mean_hours: float  # dispatched -> closed
    saving_hours: Estimate  # per item, one more person; interval from beta's


class CapacityFinding(msgspec.Struct):
    role: str
    people: int  # who did the role's work in the history analysed
    n: int
    mean_backlog: float  # waiting items per person at dispatch
    per_item: Estimate  # response ratio per extra waiting item per person, exp(beta)
    confidence: float
    by_workflow: list[WorkflowSaving]  # only those whose saving is claimed


def find_capacity(frame: ItemFrame, role: str, activities: Mapping[int, str],
                  cfg: CapacityConfig = _DEFAULT) -> CapacityFinding | None:
    """`activities`: activity code -> role, for the frame's activities with a role."""
    codes = np.array([a for a, r in activities.items() if r == role], np.int64)
    if codes.size == 0:
        return None
    mine = np.isin(frame.activity, codes)
    queue = np.flatnonzero(mine)  # every item of the role: open ones wait too
    fit = queue[frame.completed[queue] & (frame.person[queue] >= 0)]
    fit = fit[np.argsort(frame.closed[fit], kind="stable")][-MAX_ITEMS:]
    n = int(fit.size)
    people = int(np.unique(frame.person[fit]).size)
    if n < cfg.min_sample or people == 0:
        return None
    starts = np.sort(frame.dispatched[queue])
    ends = np.sort(np.where(np.isnan(frame.closed[queue]), np.inf, frame.closed[queue]))
    at = frame.dispatched[fit]
    # Items dispatched by then and not closed by then, the item itself left out.
    backlog = (np.searchsorted(starts, at, "right") - np.searchsorted(ends, at, "right")
               - (frame.closed[fit] > at)).astype(float)
    x = np.maximum(backlog, 0.0) / people
    if float(x.mean()) < cfg.min_backlog:
        return None
    hours = (frame.closed[fit] - at) / 3600.0
    y = np.log(np.maximum(hours, _MINUTE_H))
    stratum_code = _DAY_TYPE[frame.weekday[fit] % 7] * 24 + frame.hour[fit] % 24
    strata, stratum = np.unique(stratum_code, return_inverse=True)
    tasks, task = np.unique(frame.activity[fit], return_inverse=True)
    s, t = int(strata.size), int(tasks.size)
    reduced = np.zeros((n, s + t - 1))
    reduced[np.arange(n), stratum] = 1.0
    if t > 1:
        rows = task > 0
        reduced[np.flatnonzero(rows), s + task[rows] - 1] = 1.0
    design = np.column_stack([x, reduced])
    weights = np.linalg.pinv(design)[0]  # beta of any y: y @ weights
    beta = float(y @ weights)
    if beta <= 0.0:
        return None  # one-sided: more waiting does not make work slower here
    # Freedman-Lane: residuals of the model without backlog, shuffled within strata.
    rng = np.random.default_rng(cfg.seed)
    fitted = reduced @ np.linalg.lstsq(reduced, y, rcond=None)[0]
    resid = y - fitted
    members = [np.flatnonzero(stratum == k) for k in range(s)]
    null = []
    for rows_ in _row_chunks(cfg.resamples, n):
        y_null = np.broadcast_to(fitted, (rows_, n)).copy()
        for m in members:
            if m.size > 1:
                y_null[:, m] += rng.permuted(np.broadcast_to(resid[m], (rows_, m.size)),
                                             axis=1)
            else:
                y_null[:, m] += resid[m]
        null.append(y_null @ weights)
    confidence = float(permutation_confidence(beta, np.concatenate(null))[0])
    if confidence < cfg.claim:
        return None
    _coef, draws = wild_bootstrap(design, y, rng, resamples=cfg.resamples)
    lo, hi = percentile_interval(draws[:, 0])
    if lo <= 0.0:
        return None
    shrink = backlog * (1.0 / people - 1.0 / (people + 1))  # fewer waiting per person

    def saving(b: float, m: np.ndarray) -> float:
        return float(np.mean(hours[m] * (1.0 - np.exp(-b * shrink[m]))))

    flows = frame.workflow[fit]
    by_workflow = []
    for w in np.unique(flows).tolist():
        m = flows == w
        mean = float(hours[m].mean())
        point, low, high = saving(beta, m), saving(lo, m), saving(hi, m)
        if int(m.sum()) < 30 or point < max(cfg.min_saving_hours,
                                            cfg.min_saving_share * mean) or low <= 0.0:
            continue
        names = sorted({frame.activities[a][1] for a in frame.activity[fit][m].tolist()})
        by_workflow.append(WorkflowSaving(frame.workflows[w], names, int(m.sum()), mean,
                                          Estimate(point, low, high, int(m.sum()),
                                                   confidence)))
    if not by_workflow:
        return None
    return CapacityFinding(role, people, n, float(x.mean()),
                           Estimate(math.exp(beta), math.exp(lo), math.exp(hi), n,
                                    confidence), confidence, by_workflow)


def _row_chunks(rows: int, n: int, cells: int = 4_000_000) -> list[int]:
    per = max(1, cells // max(n, 1))
    return [min(per, rows - i) for i in range(0, rows, per)]


__all__ = ["CapacityConfig", "CapacityFinding", "WorkflowSaving", "find_capacity"]
