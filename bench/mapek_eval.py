"""Does the MAPE-K timing planner find real effects, and only real ones?

    python bench/mapek_eval.py --seeds 30            # the full evaluation (minutes)
    python bench/mapek_eval.py --seeds 3 --json      # what CI runs (tests/mapek)

Theory of operation
-------------------
Each run builds a world whose truth we know: a team in one time zone working 9-5 on
weekdays, and work items (e-signature requests, say) arriving mostly in business
hours. A person's response is a lognormal amount of *working* time, counted through
the calendar from the moment the item is dispatched, so night and weekend work waits
for the next working hour -- responses vary strongly with dispatch time even when
nothing about timing can be improved. Scenarios:

  clear_effect     work dispatched 2pm-4pm is answered in a quarter of the time
                   (customers read those e-mails at once): holding late-morning work
                   until 2pm pays, the planner should find it
  business_hours   no timing effect at all; only business hours and weekends
  always_on        no effect and no calendar: a 24/7 team

History comes from the twin (mapek.twin: the real engine and runtime on a virtual
clock) with the world's true responder; the planner sees only that history. When it
recommends a window, two numbers are compared: its estimate (the twin with the
responder *fitted from history*, on the historical arrivals) and the saving realized
in the twin with the *true* responder on fresh arrivals, both with common random
numbers between the current and the proposed policy.

Reported: recall (clear_effect runs with a recommendation at confidence >= 0.8),
false-positive rate (no-effect runs with one), the estimate's relative error against
the realized saving, and calibration (among recommendations, confidence against the
share whose realized saving beat the practical threshold).

    python bench/mapek_eval.py --planners --seeds 10   # routing, escalation, capacity

`--planners` asks the same of the other planners (mapek.plan) in worlds built as
observations directly (no twin: the truth is arithmetic on the same draws):

  slow_person      three SDRs (9-5 Pacific), one takes twice the working time; the
                   realized saving of routing around them: the same items redone by
                   the other two at their pace
  even_team        the same team, nobody slower
  shift_worker     the same team at one pace, but one SDR takes nine in ten items
                   arriving Friday afternoon or at the weekend (whose wait for Monday
                   makes them slow whoever does them)
  stuck_items      a 24/7 approval: 80 % done in about an hour, 20 % stuck about ten
                   (target 4 h, 98 %): an earlier alert is worth it; realized: the
                   alert's precision on fresh history
  meets_slo        the same without stuck items (the SLO holds)
  always_late      every item takes about six hours (breaches are certain, not
                   predictable: a blanket alert, no escalation)
  saturated        two people working a FIFO queue of legal reviews; realized saving
                   of one more person: the same arrivals and work with three
  no_queue         the same work, nobody waits for anybody
"""

from __future__ import annotations

import argparse
import json
import pathlib
import platform
import sys
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from statistics import NormalDist
from zoneinfo import ZoneInfo

import anyio
import msgspec
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from mapek.monitor import Observation
from mapek.timing import (
    HOUR,
    TaskHistory,
    TimingConfig,
    find_window,
    fitted_responder,
    twin_saving,
)
from mapek.twin import run_task_twin

TZ = "America/Los_Angeles"
START = datetime(2026, 3, 2, tzinfo=ZoneInfo(TZ)).timestamp()  # a Monday, DST ahead
SCENARIOS = ("clear_effect", "business_hours", "always_on")
DETECT = 0.8
_Z = NormalDist()


class World(msgspec.Struct, frozen=True):
    name: str
    median_hours: float = 3.0  # working hours a response takes (lognormal median)
    sigma: float = 0.6
    calendar: bool = True  # False: a 24/7 team
    effect_start: int | None = None  # local hour the fast window opens
    effect_hours: int = 2
    effect_factor: float = 1.0  # response multiplier inside the window

    def has_effect(self) -> bool:
        return self.effect_start is not None and self.effect_factor < 1.0


def world(name: str) -> World:
    if name == "clear_effect":
        return World(name, median_hours=6.0, effect_start=14, effect_factor=0.25)
    if name == "business_hours":
        return World(name, median_hours=6.0)
    if name == "always_on":
        return World(name, median_hours=6.0, calendar=False)
    raise ValueError(name)


def true_responder(w: World, seed: int) -> Callable[[int, float], float]:
    """The world's people: response seconds for arrival i dispatched at `at`."""
    tz = ZoneInfo(TZ)
    u = np.random.default_rng(seed).random(200_000)

    def respond(i: int, at: float) -> float:
        work = w.median_hours * float(np.exp(w.sigma * _Z.inv_cdf(float(u[i] * 0.998 + 0.001))))
        local = datetime.fromtimestamp(at, tz)
        if (w.has_effect() and local.weekday() < 5
                and (local.hour - w.effect_start) % 24 < w.effect_hours):  # type: ignore[operator]
            work *= w.effect_factor
        if not w.calendar:
            return work * HOUR
        return _through_calendar(local, work) - at

    return respond


def _through_calendar(local: datetime, work_hours: float) -> float:
    """The epoch time at which `work_hours` of 9-5 weekday time have passed."""
    tz = local.tzinfo
    t = local
    left = work_hours
    while True:
        day_start = datetime(t.year, t.month, t.day, 9, tzinfo=tz)
        day_end = datetime(t.year, t.month, t.day, 17, tzinfo=tz)
        if t.weekday() < 5 and t < day_end:
            begin = max(t, day_start)
            avail = (day_end - begin).total_seconds() / HOUR
            if left <= avail:
                return begin.timestamp() + left * HOUR
            left -= avail
        nxt = (t + timedelta(days=1)).date()
        t = datetime(nxt.year, nxt.month, nxt.day, 0, tzinfo=tz)


def arrivals(rng: np.random.Generator, n: int, days: int, start: float) -> list[float]:
    """80 % in weekday business hours (8am-6pm local), 20 % any time."""
    tz = ZoneInfo(TZ)
    out: list[float] = []
    base = datetime.fromtimestamp(start, tz)
    while len(out) < n:
        if rng.random() < 0.8:
            day = int(rng.integers(0, days))
            d = (base + timedelta(days=day)).date()
            if d.weekday() >= 5:
                continue
            hour = 8 + rng.random() * 10
            t = datetime(d.year, d.month, d.day, tzinfo=tz).timestamp() + hour * HOUR
        else:
            t = start + rng.random() * days * 86400.0
        out.append(t)
    return sorted(out)


class Run(msgspec.Struct):
    scenario: str
    seed: int
    detected: bool
    confidence: float | None = None
    window: str | None = None
    estimate_hours: float | None = None
    realized_hours: float | None = None
    threshold_hours: float | None = None
    error: float | None = None  # (estimate - realized) / realized
    seconds: float = 0.0


async def evaluate(scenario: str, seed: int, n: int, days: int,
                   cfg: TimingConfig) -> Run:
    t0 = time.perf_counter()
    w = world(scenario)
    rng = np.random.default_rng(seed)
    history_at = arrivals(rng, n, days, START)
    truth = true_responder(w, seed)
    hist = await run_task_twin(history_at, truth)
    now = max(hist.completed_at) + 1.0
    items = [(f"case-{i}", e, d, c) for i, (e, d, c) in
             enumerate(zip(hist.enabled_at, hist.dispatched_at, hist.completed_at,
                           strict=True))]
    history = TaskHistory.from_items("eval", "SendForSignature", TZ, items, now)
    finding = find_window(history, msgspec.structs.replace(cfg, seed=seed))
    if finding is None:
        return Run(scenario, seed, False, seconds=time.perf_counter() - t0)
    est = await twin_saving(run_task_twin, list(history.enabled),
                            fitted_responder(history, seed), finding.window)
    fresh = arrivals(np.random.default_rng(seed + 10_000), n, days, START + 7 * 86400 * 12)
    real = await twin_saving(run_task_twin, fresh, true_responder(w, seed + 20_000),
                             finding.window)
    err = ((est.saving_hours - real.saving_hours) / real.saving_hours
           if real.saving_hours > 0 else None)
    return Run(scenario, seed, finding.confidence >= DETECT, finding.confidence,
               finding.window.describe() + f" (hold at most {finding.window.max_wait_hours:g}h)",
               est.saving_hours, real.saving_hours, finding.threshold_hours, err,
               time.perf_counter() - t0)


# ------------------------------------------------------------------ the planners
PLANNER_SCENARIOS = ("slow_person", "even_team", "shift_worker", "stuck_items", "meets_slo",
                     "always_late", "saturated", "no_queue")
PLANNER_OF = {"slow_person": "routing_optimization", "even_team": "routing_optimization",
              "shift_worker": "routing_optimization",
              "stuck_items": "escalation", "meets_slo": "escalation",
              "always_late": "escalation", "saturated": "capacity", "no_queue": "capacity"}
WITH_EFFECT = {"slow_person", "stuck_items", "saturated"}
SDRS = ("david.park@acme.com", "emily.garcia@acme.com", "sarah.chen@acme.com")
SLOW = SDRS[0]
ASSIGNED_AT = "lead-qualification/AssignToSDR"


def slow_person_world(seed: int, factor: float = 2.0, n: int = 900, shift: bool = False,
                      ) -> tuple[list[Observation], float]:
    """Three SDRs share "JustifyDiscount" at random; SLOW takes `factor` times the
    working time (shift: SLOW also takes 90 % of the Friday-afternoon and weekend work).
    -> (observations, the mean hours saved had SLOW's items gone to the others at
    their pace, same draws)."""
    rng = np.random.default_rng(seed)
    tz = ZoneInfo(TZ)
    now_h, moved_h, obs = [], [], []
    for i, t in enumerate(arrivals(rng, n, 56, START)):
        local = datetime.fromtimestamp(t, tz)
        late = local.weekday() >= 5 or (local.weekday() == 4 and local.hour >= 14)
        who = SDRS[int(rng.integers(0, 3))]
        if shift:
            who = SLOW if late and rng.random() < 0.9 else SDRS[1 + int(rng.integers(0, 2))]
        work = 2.0 * float(np.exp(0.6 * rng.standard_normal()))
        done = _through_calendar(local, work * (factor if who == SLOW else 1.0))
        now_h.append((done - t) / HOUR)
        moved_h.append((_through_calendar(local, work) - t) / HOUR if who == SLOW
                       else now_h[-1])
        obs.append(Observation(f"d{seed}-{i}", "pricing-exception", "JustifyDiscount", 1, t,
                               None, done, "completed", by=who, role="sdr"))
    return obs, float(np.mean(now_h) - np.mean(moved_h))


def approval_world(seed: int, stuck: float, typical_hours: float = 1.0,
                   n: int = 1200) -> list[Observation]:
    """A 24/7 manager approval: lognormal around `typical_hours`, a `stuck` share around
    ten hours."""
    rng = np.random.default_rng(seed)
    at = np.sort(START + rng.random(n) * 56 * 86400.0)
    obs = []
    for i, t in enumerate(at.tolist()):
        median = 10.0 if rng.random() < stuck else typical_hours
        h = median * float(np.exp(0.5 * rng.standard_normal()))
        obs.append(Observation(f"a{seed}-{i}", "deal-approval-gate", "SendToSalesManager",
                               1, t, None, t + h * HOUR, "completed",
                               by="marcus.thompson@acme.com", role="sales_manager"))
    return obs


APPROVAL_SLO = (4.0, 24.0, 0.98)  # target, alert, compliance (slos.yaml's manager row)


def queue_world(seed: int, people: int = 2, queue: bool = True, n: int = 1400,
                ) -> tuple[list[Observation], float]:
    """Legal reviews arriving mostly in business hours (about an hour of work each).
    queue: `people` work them first come, first served; else nobody waits. -> (obs,
    mean hours saved with one more person on the same arrivals and work)."""
    rng = np.random.default_rng(seed)
    at = arrivals(rng, n, 56, START)
    work = np.exp(0.5 * rng.standard_normal(len(at))) * HOUR
    pick = rng.integers(0, people, len(at))

    def serve(k: int) -> tuple[list[float], list[float], list[int]]:
        free = [START] * k
        starts, dones, who = [], [], []
        for t, w, p in zip(at, work.tolist(), pick.tolist(), strict=True):
            j = int(np.argmin(free)) if queue else p
            s = max(t, free[j]) if queue else t
            free[j] = s + w
            starts.append(s)
            dones.append(s + w)
            who.append(j)
        return starts, dones, who

    starts, dones, who = serve(people)
    obs = [Observation(f"q{seed}-{i}", "deal-approval-gate", "SendToLegal", 1, t, s, d,
                       "completed", by=f"legal{j}@acme.com", role="legal_counsel")
           for i, (t, s, d, j) in enumerate(zip(at, starts, dones, who, strict=True))]
    _, more, _ = serve(people + 1)
    return obs, float(np.mean(np.subtract(dones, at)) - np.mean(np.subtract(more, at))) / HOUR


class PlannerRun(msgspec.Struct):
    scenario: str
    seed: int
    planner: str
    detected: bool
    confidence: float | None = None
    estimate: float | None = None  # hours saved per item; escalation: alert precision
    realized: float | None = None  # the same, from the truth
    error: float | None = None  # (estimate - realized) / realized
    seconds: float = 0.0


def evaluate_planner(scenario: str, seed: int) -> PlannerRun:
    from mapek.escalation import SloTerms
    from mapek.plan import plan_effects

    t0 = time.perf_counter()
    realized: float | None = None
    kw: dict[str, object] = {}
    if scenario in ("slow_person", "even_team", "shift_worker"):
        obs, realized = slow_person_world(seed, 2.0 if scenario == "slow_person" else 1.0,
                                          shift=scenario == "shift_worker")
        kw["assigned_at"] = lambda wf, task: ASSIGNED_AT
    elif scenario in ("saturated", "no_queue"):
        obs, realized = queue_world(seed, queue=scenario == "saturated")
    else:
        stuck, typical = {"stuck_items": (0.2, 1.0), "meets_slo": (0.0, 1.0),
                          "always_late": (0.0, 6.0)}[scenario]
        obs = approval_world(seed, stuck, typical)
        kw["slo_of"] = lambda wf, task: SloTerms(*APPROVAL_SLO)
        kw["escalate_to"] = lambda role: "director"
    now = max(o.closed_at or 0.0 for o in obs) + HOUR
    planner = PLANNER_OF[scenario]
    found = [p for p in plan_effects(obs, now, zone_of=lambda p: TZ, **kw)  # type: ignore[arg-type]
             if p.type == planner]
    seconds = time.perf_counter() - t0
    if not found:
        return PlannerRun(scenario, seed, planner, False, seconds=seconds)
    best = max(found, key=lambda p: p.confidence)
    estimate = best.estimated_improvement_hours
    if planner == "escalation":  # the alert's precision, against fresh history
        estimate = float(best.evidence["precision"])
        fresh = approval_world(seed + 10_000, *{"stuck_items": (0.2, 1.0), "meets_slo": (
            0.0, 1.0), "always_late": (0.0, 6.0)}[scenario])
        hours = np.array([((o.closed_at or 0.0) - o.enabled_at) / HOUR for o in fresh])
        flagged = hours > float(best.evidence["after_hours"])
        realized = float((hours[flagged] > APPROVAL_SLO[0]).mean()) if flagged.any() else 0.0
    err = ((estimate - realized) / realized if estimate is not None and realized
           else None)
    return PlannerRun(scenario, seed, planner, best.confidence >= DETECT, best.confidence,
                      estimate, realized, err, seconds)


def summarize_planners(runs: list[PlannerRun]) -> dict[str, object]:
    out: dict[str, object] = {}
    for planner in sorted({r.planner for r in runs}):
        mine = [r for r in runs if r.planner == planner]
        effect = [r for r in mine if r.scenario in WITH_EFFECT]
        null = [r for r in mine if r.scenario not in WITH_EFFECT]
        errors = [abs(r.error) for r in effect if r.detected and r.error is not None]
        out[planner] = {
            "runs": len(mine),
            "recall": sum(r.detected for r in effect) / len(effect) if effect else None,
            "false_positive_rate": (sum(r.detected for r in null) / len(null)
                                    if null else None),
            "estimate_mean_abs_error": float(np.mean(errors)) if errors else None,
            "seconds_per_run": float(np.mean([r.seconds for r in mine])),
        }
    return out


def summarize(runs: list[Run]) -> dict[str, object]:
    effect = [r for r in runs if world(r.scenario).has_effect()]
    null = [r for r in runs if not world(r.scenario).has_effect()]
    found = [r for r in effect if r.detected and r.error is not None]
    errors = [abs(r.error) for r in found]  # type: ignore[arg-type]
    recs = [r for r in runs if r.confidence is not None]
    bins: dict[str, list[int]] = {}
    for r in recs:
        lo = min(int(r.confidence * 10), 9) / 10  # type: ignore[operator]
        good = r.realized_hours is not None and r.realized_hours > (r.threshold_hours or 0)
        bins.setdefault(f"{lo:.1f}-{lo + 0.1:.1f}", []).append(int(good))
    return {
        "runs": len(runs),
        "recall": sum(r.detected for r in effect) / len(effect) if effect else None,
        "false_positive_rate": sum(r.detected for r in null) / len(null) if null else None,
        "estimate_within_25pct": (sum(e <= 0.25 for e in errors) / len(errors)
                                  if errors else None),
        "estimate_mean_abs_error": float(np.mean(errors)) if errors else None,
        "calibration": {k: {"n": len(v), "realized_share": sum(v) / len(v)}
                        for k, v in sorted(bins.items())},
        "seconds_per_run": float(np.mean([r.seconds for r in runs])) if runs else None,
    }


def planners_main(args: argparse.Namespace) -> dict[str, object]:
    runs = []
    for scenario in args.planner_scenarios:
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            r = evaluate_planner(scenario, seed)
            runs.append(r)
            if not args.json:
                print(f"{scenario:12s} seed {seed:3d}  detected={r.detected!s:5s} "
                      f"conf={r.confidence if r.confidence is not None else '-'!s:.6s} "
                      f"est={r.estimate or 0:6.2f} real={r.realized or 0:6.2f}", flush=True)
    return {"summary": summarize_planners(runs),
            "runs": [msgspec.to_builtins(r) for r in runs],
            "machine": f"{platform.processor() or platform.machine()}, "
                       f"{platform.python_implementation()} {platform.python_version()}"}


async def main_async(args: argparse.Namespace) -> dict[str, object]:
    cfg = TimingConfig(bootstrap=args.bootstrap)
    runs: list[Run] = []
    for scenario in args.scenarios:
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            r = await evaluate(scenario, seed, args.items, args.days, cfg)
            runs.append(r)
            if not args.json:
                print(f"{scenario:15s} seed {seed:3d}  detected={r.detected!s:5s} "
                      f"conf={r.confidence if r.confidence is not None else '-'!s:.6s} "
                      f"est={r.estimate_hours or 0:6.2f}h real={r.realized_hours or 0:6.2f}h "
                      f"{r.window or ''}", flush=True)
    return {"summary": summarize(runs), "runs": [msgspec.to_builtins(r) for r in runs],
            "machine": f"{platform.processor() or platform.machine()}, "
                       f"{platform.python_implementation()} {platform.python_version()}"}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, default=30)
    p.add_argument("--first-seed", type=int, default=1)
    p.add_argument("--items", type=int, default=1600, help="work items of history per run")
    p.add_argument("--days", type=int, default=56)
    p.add_argument("--bootstrap", type=int, default=300)
    p.add_argument("--scenarios", nargs="+", default=list(SCENARIOS), choices=SCENARIOS)
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.add_argument("--planners", action="store_true",
                   help="evaluate the routing, escalation and capacity planners instead")
    p.add_argument("--planner-scenarios", nargs="+", default=list(PLANNER_SCENARIOS),
                   choices=PLANNER_SCENARIOS)
    args = p.parse_args(argv)
    out = planners_main(args) if args.planners else anyio.run(main_async, args)
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(json.dumps(out["summary"], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
