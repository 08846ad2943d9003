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
    args = p.parse_args(argv)
    out = anyio.run(main_async, args)
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(json.dumps(out["summary"], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
