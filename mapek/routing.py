"""Routing: give less of a task's work to the people who are slow at it, where an
assignment decides who does it.

Theory of operation
-------------------
The runtime offers a human task to its role; the one place it chooses a person is an
assignment task (`assign_least_loaded`), and that choice decides who works *later*
tasks of the role: the SDR a lead is assigned to owns the deal and works its SDR tasks
(justifying a discount, recording the signature). `assignment_points` reads that link
off the registered nets: a human task is decided by the (single) assignment task of
its role that precedes it -- in its own workflow, one it is reachable from; in another
workflow, the assignment of the case's owner. A routing change for a task therefore
names that assignment (`Change.assigned_at`), and `PolicyBook.rule` hands it to the
assignment. A task nobody assigns (the first SDR tasks of a lead, picked from the
role's worklist by whoever is free) gets advice, not a policy: no change could act.

Who is slow comes from `analyze.assignee_effect`: each person's response ratio
against the task's average assignee at the same dispatch hour and workload (least
squares on log hours), a wild-bootstrap 95 % interval and a Freedman-Lane permutation
confidence with the choice of the most different person repeated in every shuffle.
The hour of dispatch is not all that makes work comparable (Friday-evening work waits
for Monday whoever does it), so a candidate must also pass a second permutation test:
slower than the others at the same local hour *and* day type, who-did-what shuffled
within each such slot, the slowest person chosen again in every shuffle. A person is
avoided when both confidences reach CLAIM (0.95) and the ratio's interval lies at or
above `min_ratio` (15 % slower): a calibrated test still says "real" for one
task in twenty where nobody differs, and most of those are small differences; asking
the interval to clear a practical size leaves almost none (bench/mapek_eval.py
--planners measures the rate). Preferring a fast person is not proposed: it would pile all the work
on one person, a workload the history never shows them at.

The saving is counterfactual arithmetic, per item of the task: the share of the work
the avoided people had, times how many more hours their items took than the people
kept took for work dispatched at the same time of the week -- least squares on hours
with a level per local hour x day type, so a person who works late is not blamed for
the night, and a slot only one side worked compares nothing (with less than half of
the avoided work in slots the others also worked, nothing is claimed: what the others
would do on that shift is not in the history). It is a difference of mean hours, the
measure verification uses after apply. The people kept are charged for the extra
work: their mean load at pick-up grows by 1 / (1 - s) for an avoided share s, and each
item in progress costs the task's fitted load factor (never counted as a speed-up).
The 95 % interval is a wild bootstrap. Claimed only when the point clears a practical
minimum (a quarter hour, or 5 % of the mean) and the interval's low end is above zero;
the confidence shown is the smallest permutation confidence (of either test) among the
avoided -- a calibrated probability: with no real difference between people,
P(confidence >= c) <= 1 - c.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import msgspec
import numpy as np

from engine import Net
from engine.net import AUTOMATIC, HUMAN

from .analyze import MAX_ITEMS, ItemFrame, assignee_effect
from .stats import (
    CLAIM,
    MIN_SAMPLE,
    Estimate,
    percentile_interval,
    permutation_confidence,
    wild_bootstrap,
)

ASSIGN_ACTION = "assign_least_loaded"
_DAY_TYPE = np.array([0, 0, 0, 0, 1, 2, 3])  # Monday..Sunday -> Mon-Thu, Fri, Sat, Sun
_MINUTE_H = 1.0 / 60.0  # log hours need a floor: an instant reply counts as a minute


class RoutingConfig(msgspec.Struct, frozen=True):
    min_saving_hours: float = 0.25
    min_saving_share: float = 0.05  # of the task's mean hours
    min_ratio: float = 1.15  # the interval's low end: at least this much slower
    claim: float = CLAIM
    resamples: int = 400  # bootstrap of the saving
    min_common: float = 0.5  # avoided items in time slots the people kept also worked
    seed: int = 0


_DEFAULT = RoutingConfig()


class Avoided(msgspec.Struct, frozen=True):
    person: str
    n: int
    share: float  # of the task's items
    ratio: Estimate  # response ratio vs the average assignee, same hour and load
    mean_hours: float  # enabled -> closed, their items


class RoutingFinding(msgspec.Struct):
    workflow_id: str
    task: str
    role: str | None
    assigned_at: str | None  # "workflow/Task"; None: nothing assigns it (advice)
    avoided: list[Avoided]
    n: int  # items analysed (the latest completions done by someone)
    people: int
    mean_hours: float  # enabled -> closed, all items
    kept_mean_hours: float  # the people kept, their own items
    load_factor: float
    load_penalty_hours: float  # what the extra work costs the people kept, per item
    saving_hours: float
    saving_interval: tuple[float, float]  # 95 %, wild bootstrap
    common_share: float  # the avoided items dispatched when the people kept also worked
    threshold_hours: float
    confidence: float


# ------------------------------------------------------------ assignment points
def assignment_points(nets: Iterable[Net]) -> dict[tuple[str, str], str]:
    """(workflow, human task) -> "workflow/AssignTask" whose choice decides its performer."""
    latest: dict[str, Net] = {}
    for net in nets:
        if net.workflow_id not in latest or net.version > latest[net.workflow_id].version:
            latest[net.workflow_id] = net
    assigners: dict[str, list[tuple[Net, int]]] = {}
    for net in latest.values():
        for t in net.tasks:
            role = t.params.get("role") if t.kind == AUTOMATIC else None
            if t.action == ASSIGN_ACTION and isinstance(role, str) and role:
                assigners.setdefault(role, []).append((net, t.idx))
    out: dict[tuple[str, str], str] = {}
    for net in latest.values():
        for t in net.tasks:
            if t.kind != HUMAN or t.role is None:
                continue
            points = [(n, a) for n, a in assigners.get(t.role, ())
                      if n.workflow_id != net.workflow_id or _reachable(net, a, t.idx)]
            if len(points) == 1:  # two candidates: which one decides is not known
                n, a = points[0]
                out[(net.workflow_id, t.id)] = f"{n.workflow_id}/{n.tasks[a].id}"
    return out


def _reachable(net: Net, source: int, target: int) -> bool:
    """Can task `target` be enabled after task `source` fires (within one net)?"""
    takers: dict[int, list[int]] = {}
    for t in net.tasks:
        for c in t.preset:
            takers.setdefault(c, []).append(t.idx)
    seen, todo = {source}, [source]
    while todo:
        for c in net.tasks[todo.pop()].postset:
            for u in takers.get(c, ()):
                if u == target:
                    return True
                if u not in seen:
                    seen.add(u)
                    todo.append(u)
    return False


class AssignmentMap:
    """`assignment_points` over the runtime's current nets, recomputed when a workflow
    gets a new version."""

    def __init__(self, nets: Callable[[], Iterable[Net]]) -> None:
        self._nets = nets
        self._key: tuple[tuple[str, int], ...] | None = None
        self._points: dict[tuple[str, str], str] = {}

    def __call__(self, workflow_id: str, task: str) -> str | None:
        nets = list(self._nets())
        key = tuple(sorted((n.workflow_id, n.version) for n in nets))
        if key != self._key:
            self._points, self._key = assignment_points(nets), key
        return self._points.get((workflow_id, task))


# --------------------------------------------------------------------- finding
def find_routing(frame: ItemFrame, workflow_id: str, task: str, assigned_at: str | None,
                 role: str | None = None, cfg: RoutingConfig = _DEFAULT,
                 ) -> RoutingFinding | None:
    """Whom to route a task's work away from, with the saving per item; None when no
    person is confidently and sizeably slower than the rest."""
    done = frame.of(workflow_id, task)
    counts = np.bincount(frame.person[done[frame.completed[done]]] + 1)[1:]
    if counts.size == 0 or counts.max() < MIN_SAMPLE or counts.sum() - counts.max() < MIN_SAMPLE:
        return None  # nobody with enough items to judge, or nobody else to compare with
    eff = assignee_effect(frame, workflow_id, task, seed=cfg.seed)
    if eff is None:
        return None
    slow = [p for p in eff.people if p.claimed and p.effect is not None
            and p.effect.low >= cfg.min_ratio and (p.effect.confidence or 0.0) >= cfg.claim]
    if not slow:
        return None
    idx = frame.of(workflow_id, task)  # the items assignee_effect looked at
    idx = idx[frame.completed[idx] & (frame.person[idx] >= 0)]
    idx = idx[np.argsort(frame.closed[idx], kind="stable")][-MAX_ITEMS:]
    hours = (frame.closed[idx] - frame.enabled[idx]) / 3600.0
    names = np.array([frame.people[p] for p in frame.person[idx].tolist()], dtype=object)
    stratum = _DAY_TYPE[frame.weekday[idx] % 7] * 24 + frame.hour[idx] % 24
    # The hour alone does not make work comparable: Friday-evening work waits for
    # Monday. Each candidate must also be slower than the others at the same hour *and
    # day type*, by a permutation test of its own.
    rng = np.random.default_rng(cfg.seed)
    slot_conf = _slot_confidence(np.log(np.maximum(hours, _MINUTE_H)), stratum,
                                 frame.person[idx], [frame.people.index(p.person)
                                                     for p in slow], rng, cfg.resamples)
    slow = [p for p, c in zip(slow, slot_conf, strict=True) if c >= cfg.claim]
    if not slow:
        return None
    confidence = {p.person: min(p.effect.confidence or 0.0, c)
                  for p, c in zip(slow, slot_conf, strict=True)}
    out = {p.person for p in slow}
    kept = np.array([w not in out for w in names.tolist()], bool)
    if int(kept.sum()) < MIN_SAMPLE:
        return None  # too few items left with the others to say how they would do
    n = int(idx.size)
    shares = {p.person: p.n / n for p in eff.people}
    mean_of = {p.person: float(hours[names == p.person].mean()) for p in slow}
    s_out = sum(shares[p.person] for p in slow)
    kept_mean = float(hours[kept].mean())
    kept_load = float(sum(p.mean_load * p.n for p in eff.people if p.person not in out)
                      / max(sum(p.n for p in eff.people if p.person not in out), 1))
    delta = kept_load * s_out / (1.0 - s_out) * max(math.log(eff.load_factor), 0.0)
    penalty = (1.0 - s_out) * kept_mean * (math.exp(delta) - 1.0)

    # Each avoided person's excess hours over the people kept, for work dispatched at
    # the same time of the week (least squares on hours: a level per local hour x day
    # type, a column per avoided person, the kept as the reference). A slot only one
    # side worked compares nothing: a person who works the weekend shift is not slower
    # for the weekend's wait -- and what the others would do on that shift is unknown,
    # so too little common ground claims nothing.
    slots, slot = np.unique(stratum, return_inverse=True)
    kept_in = np.bincount(slot[kept], minlength=slots.size) > 0
    common = float(kept_in[slot[~kept]].mean())
    if common < cfg.min_common:
        return None
    x = np.zeros((n, slots.size + len(slow)))
    x[np.arange(n), slot] = 1.0
    for j, p in enumerate(slow):
        x[names == p.person, slots.size + j] = 1.0
    coef, draws = wild_bootstrap(x, hours, rng, resamples=cfg.resamples)
    weights = np.array([shares[p.person] for p in slow])
    point = float(coef[slots.size:] @ weights) - penalty
    low, high = percentile_interval(draws[:, slots.size:] @ weights - penalty)
    mean = float(hours.mean())
    threshold = max(cfg.min_saving_hours, cfg.min_saving_share * mean)
    if point < threshold or low <= 0.0:
        return None
    avoided = [Avoided(p.person, p.n, shares[p.person], p.effect, mean_of[p.person])
               for p in slow if p.effect is not None]
    return RoutingFinding(
        workflow_id, task, role, assigned_at, avoided, n, len(eff.people), mean,
        kept_mean, eff.load_factor, penalty, point, (low, high), common, threshold,
        min(confidence.values()))


def _slot_confidence(y: np.ndarray, slot: np.ndarray, person: np.ndarray,
                     candidates: list[int], rng: np.random.Generator, resamples: int,
                     ) -> list[float]:
    """1 - p that each candidate is slower than the others at the same time of the week:
    the sum of the candidate's log hours above their slot's mean, standardized, against
    the same statistic with who-did-what shuffled within every slot -- the largest over
    all people in each shuffle, so choosing the slowest is paid for. Slots one person
    worked alone add nothing (their items sit at their slot's mean)."""
    codes, who = np.unique(person, return_inverse=True)
    n = y.size
    mean = np.bincount(slot, y) / np.maximum(np.bincount(slot), 1)
    centred = y - mean[slot]
    size = np.sqrt(np.maximum(np.bincount(who, minlength=codes.size), 1))

    def stat(labels: np.ndarray) -> np.ndarray:
        return np.bincount(labels, centred, minlength=codes.size) / size

    observed = stat(who)
    base = np.lexsort((np.arange(n), slot))  # rows in slot order
    null = np.empty(resamples)
    for r in range(resamples):
        shuffled = np.empty(n, np.int64)
        shuffled[base] = who[np.lexsort((rng.random(n), slot))]  # within each slot
        null[r] = stat(shuffled).max()
    mine = [int(np.searchsorted(codes, c)) for c in candidates]
    return permutation_confidence(observed[mine], null).tolist()


def person_name(person: str) -> str:
    """'david.park@acme.com' -> 'David Park': a person as a sales manager reads them."""
    local = person.split("@", 1)[0]
    return " ".join(w.capitalize() for w in local.replace("_", ".").split(".") if w) or person


__all__ = ["ASSIGN_ACTION", "AssignmentMap", "Avoided", "RoutingConfig", "RoutingFinding",
           "assignment_points", "find_routing", "person_name"]
